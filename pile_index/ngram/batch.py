"""Batch counts: many n-grams counted in one call, their binary searches interleaved so that their memory
misses overlap, in threads that release the GIL.

``count_many(index, queries)`` answers exactly what ``index.count(q)`` answers for each query, in the order
given. A single count is a chain of dependent memory misses (a sample row, then in the shard's window a
suffix pointer, then the tokens it points to, eight levels deep): ~3.5 us, almost all of it waiting. Here the
queries are packed into one flat int64 array (with offsets; lists of ints and lists of arrays in a few
C-level passes) and searched ``GROUP`` at a time in lockstep: each level of every query's search first
prefetches what the next step reads (the sample row; the suffix pointer; the tokens and bitmap byte it
points to), then the next pass over the group uses it, so the group's misses are in flight together instead
of one after another (the classic way to speed up many independent binary searches).

The searches are the single count's (``search._range_sampled``): the same sample window
(``search._window_of``; the sample rows are compared 4 tokens at a time as big-endian 64-bit words, with the
same semantics as ``search._sample_cmp``), the same first search step (``search._lower_step``) and the same
end-of-match search and damage checks around the answer (``search._finish_window`` / ``_finish_known``), so
a damaged file gives the same FormatError. The queries are cut into blocks of at least ``MIN_BLOCK``, shared out
to the calling thread and the core's pool (``pile_index.pool.run_blocks``); a call shares nothing but the read-only index, so concurrent calls from
API worker threads are safe.

The kernel (``search._count_block``) lives with the search it shares, in one file, so numba's on-disk cache,
which is keyed on the defining file only, can never keep a batch kernel compiled against an older search.
"""

from __future__ import annotations

import re
from itertools import chain
from operator import attrgetter
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, LimitError, QueryError
from ..pool import run_blocks
from .index import MAX_TOKEN_ID, NgramIndex, _Shard, query_tokens
from .search import _count_block

_IDS_LINE = re.compile(r"[0-9 ]+(,[0-9 ]+)*")  # a queries-file line of token ids; any other line is text
MIN_BLOCK = 4096  # queries per thread at least: below this one thread answers (a hand-off costs ~50 us)


def _pack_plain(queries: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(flat, starts) of a list of non-empty lists (or tuples) of Python ints, or of 1-D integer arrays, in a
    few C-level passes (a loop over 200k queries cost more than their counts); None for anything else (the
    per-query path then accepts it or names the query at fault)."""
    if not isinstance(queries, (list, tuple)) or not queries:
        return None
    try:
        lengths = np.fromiter(map(len, queries), dtype=np.int64, count=len(queries))
    except TypeError:
        return None
    if int(lengths.min()) == 0:
        return None
    kinds = set(map(type, queries))
    if kinds <= {list, tuple}:
        values = list(chain.from_iterable(queries))
        if set(map(type, values)) != {int}:  # bool, float, str, numpy scalars: the per-query checks
            return None
        try:
            flat = np.array(values, dtype=np.int64)
        except OverflowError:
            return None
    elif kinds == {np.ndarray}:
        dtypes = set(map(attrgetter("dtype"), queries))
        if any(d.kind not in "iu" or (d.kind == "u" and d.itemsize == 8) for d in dtypes):
            return None
        if any(q.ndim != 1 for q in queries):
            return None
        flat = np.concatenate(queries, dtype=np.int64, casting="safe")
    else:
        return None
    starts = np.zeros(len(queries) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    return flat, starts


def pack_queries(queries: Sequence[Sequence[int]] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flat int64 tokens, int64 offsets of len(queries) + 1): queries as one array; a 2-D integer array is one
    query per row. Every query must be a non-empty sequence of integer token ids in 0..MAX_TOKEN_ID - 1."""
    if isinstance(queries, np.ndarray) and queries.ndim == 2:
        if queries.dtype.kind not in "iu":
            raise QueryError(f"queries: a 2-D array of {queries.dtype} values; expected integer token ids")
        if queries.shape[1] == 0 and queries.shape[0]:
            raise QueryError("queries: an empty n-gram has no count; pass at least one token per query")
        flat = np.ascontiguousarray(queries, dtype=np.int64).reshape(-1)
        starts = np.arange(queries.shape[0] + 1, dtype=np.int64) * queries.shape[1]
    elif (fast := _pack_plain(queries)) is not None:
        flat, starts = fast
    else:
        if isinstance(queries, (str, bytes)) or not isinstance(queries, (Sequence, np.ndarray)):
            raise QueryError(f"queries: expected a list of n-grams (lists of token ids); got {type(queries).__name__}")
        parts = []
        lengths = np.empty(len(queries), dtype=np.int64)
        for i, q in enumerate(queries):
            if isinstance(q, (str, bytes)):
                raise QueryError(f"queries[{i:,}] is a string; expected a list of integer token ids")
            try:
                a = np.asarray(q)
            except (TypeError, ValueError) as e:
                raise QueryError(f"queries[{i:,}]: expected a list of integer token ids ({e})") from e
            if a.ndim != 1 or (a.size and a.dtype.kind not in "iu") or a.dtype == np.bool_:
                raise QueryError(f"queries[{i:,}] is {str(q)[:40]!r}; expected a list of integer token ids")
            if a.size == 0:
                raise QueryError(f"queries[{i:,}] is empty; an empty n-gram has no count: pass at least one token")
            parts.append(a.astype(np.int64))
            lengths[i] = a.size
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        starts = np.zeros(len(queries) + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
    if flat.size and (flat.min() < 0 or flat.max() >= MAX_TOKEN_ID):
        bad = int(flat[(flat < 0) | (flat >= MAX_TOKEN_ID)][0])
        raise QueryError(f"token id {bad:,} is out of range; token ids are 0..{MAX_TOKEN_ID - 1:,}")
    return flat, starts


def _sample_words(shard: _Shard) -> tuple[np.ndarray, np.ndarray, int]:
    """(skeys, masks, lane_bits) for the kernel: the shard's sample rows as 64-bit words (a view of the same
    bytes) with the masks that keep their first k lanes, or (empty, masks, 0) where rows are not whole words
    (no sample, or a width and dtype that do not fill them): the kernel then compares token by token."""
    st = shard.stoks
    bits = 8 * st.dtype.itemsize
    row_bytes = st.shape[1] * st.dtype.itemsize
    if st.shape[0] == 0 or bits > 32 or row_bytes % 8 or not st.flags.c_contiguous or not st.flags.aligned:
        return np.zeros((0, 1), dtype=np.uint64), np.zeros(1, dtype=np.uint64), 0
    lanes = 64 // bits
    masks = np.array([0] + [((1 << (bits * k)) - 1) << (64 - bits * k) for k in range(1, lanes + 1)],
                     dtype=np.uint64)
    return st.view(np.uint64), masks, bits


def count_many(index: NgramIndex, queries: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """Exact counts (int64 array, order kept) of every query, each equal to ``index.count(query)``."""
    flat, starts = pack_queries(queries)
    n_q = starts.size - 1
    counts = np.zeros(n_q, dtype=np.int64)
    if n_q == 0:
        return counts
    top = int(flat.max())
    runs = []
    for shard in index.shards:
        dtype = shard.tokens.dtype
        absent = np.zeros(0, dtype=np.bool_)
        if top > np.iinfo(dtype).max:  # a query token the dtype cannot hold: no occurrence in this shard
            absent = np.maximum.reduceat(flat, starts[:-1]) > np.iinfo(dtype).max
        skeys, masks, lane_bits = _sample_words(shard)
        runs.append((shard, (shard.tokens, shard.words, shard.stoks, shard.slen, skeys, masks, np.int64(lane_bits),
                             shard.every, absent)))

    def block(q0: int, q1: int) -> tuple[_Shard, np.ndarray] | None:
        damage = np.zeros(3, dtype=np.int64)
        for shard, args in runs:
            if _count_block(*args, flat, starts, np.int64(q0), np.int64(q1), counts, damage):
                return shard, damage
        return None

    for hit in run_blocks(block, n_q, MIN_BLOCK):
        if hit is not None:
            shard, (code, row, _) = hit
            raise shard.damaged(int(code), int(row))
    return counts


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read().splitlines()
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no such queries file; pass a file with one query per line") from e
    except UnicodeDecodeError as e:
        raise QueryError(f"{path}: byte {e.start:,} is not valid UTF-8; the queries file must be UTF-8 text") from e


def has_text_lines(path: str) -> bool:
    """Whether any line of the queries file is text (so reading it needs a tokenizer)."""
    return any(line.strip() and not _IDS_LINE.fullmatch(line) for line in _read_lines(path))


def read_queries_file(path: str, tokenizer: Any = None, max_tokens: int | None = None,
                      max_text_chars: int | None = None, max_queries: int | None = None) -> list[np.ndarray]:
    """The queries of a file, one per line: comma-separated token ids (``12092,13,309``) or text (encoded with
    ``tokenizer``). A line is ids when it is ASCII digits and commas only; blank lines are errors (each line is
    one answer, in order). Each query is checked as a single one is (:func:`~.index.query_tokens`)."""
    lines = _read_lines(path)
    if max_queries is not None and len(lines) > max_queries:
        raise LimitError(f"{path}: {len(lines):,} queries; the limit is max_queries_per_request={max_queries:,}",
                         "max_queries_per_request")
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            raise QueryError(f"{path}:{i}: an empty line; every line is one query (ids like 1,2,3 or text)")
        try:
            if _IDS_LINE.fullmatch(line):
                out.append(query_tokens(tokens=line, max_tokens=max_tokens))
            else:
                out.append(query_tokens(text=line, tokenizer=tokenizer, max_tokens=max_tokens,
                                        max_text_chars=max_text_chars))
        except LimitError as e:
            raise LimitError(f"{path}:{i}: {e}", e.setting) from e
        except (QueryError, ConfigError) as e:
            raise type(e)(f"{path}:{i}: {e}") from e
    return out
