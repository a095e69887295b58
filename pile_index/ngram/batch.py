"""Batch counts: many n-grams counted in one call, in a parallel numba loop that releases the GIL.

``count_many(index, queries)`` answers exactly what ``index.count(q)`` answers for each query, in the order
given. The queries are packed into one flat int64 array (with offsets) and sorted on their first two tokens,
then by a hash of the whole query, so neighbouring queries probe the same suffix-array rows and token pages
(they stay in cache) and a query equal to its sorted neighbour reuses its answer instead of searching again. The sorted list is cut into chunks;
chunks run in parallel (``numba.prange``, ``nogil``), each query of a chunk searches every shard with the
index's own search kernel (``index._range``: the same damage checks as a single count). A kernel damage
report is turned into the shard's FormatError, as a single count does.

The kernel is compiled per process (``cache=False``): numba's on-disk cache of a function does not notice a
change in the functions it calls from other modules (here the index's search), and a stale search must never
answer a count. Compiling takes a few seconds once per process.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numba
import numpy as np

from ..errors import ConfigError, LimitError, QueryError
from .index import MAX_TOKEN_ID, NgramIndex, _range, query_tokens

_IDS_LINE = re.compile(r"[0-9 ]+(,[0-9 ]+)*")  # a queries-file line of token ids; any other line is text
CHUNK = 256  # queries per parallel work item: long enough that neighbours share cache, short enough to balance


@numba.njit(cache=False, nogil=True, parallel=True)
def _count_sorted(tokens, words, flat, starts, order, chunk, lo_out, hi_out):
    """For each query q (flat[starts[q]:starts[q+1]]), in chunks of the sorted ``order``: its row range
    [lo_out[q], hi_out[q]) in this shard, or the search's damage report (lo_out[q] < 0, hi_out[q] = row)."""
    n_q = order.shape[0]
    n_chunks = (n_q + chunk - 1) // chunk
    for c in numba.prange(n_chunks):
        a = c * chunk
        b = min(a + chunk, n_q)
        prev = -1
        for j in range(a, b):
            q = order[j]
            s, e = starts[q], starts[q + 1]
            same = False
            if prev >= 0 and starts[prev + 1] - starts[prev] == e - s:
                ps = starts[prev]
                same = True
                for k in range(e - s):
                    if flat[ps + k] != flat[s + k]:
                        same = False
                        break
            if same:
                lo_out[q] = lo_out[prev]
                hi_out[q] = hi_out[prev]
            else:
                lo, hi = _range(tokens, words, flat[s:e])
                lo_out[q] = lo
                hi_out[q] = hi
            prev = q


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


@numba.njit(cache=True, nogil=True)
def _sort_keys(flat, starts, prefix, digest):
    """prefix[q]: the query's first two tokens (+1, so a missing second token sorts first) in one int64;
    digest[q]: a 64-bit polynomial hash of all its tokens and its length (equal queries, equal digests)."""
    for q in range(starts.shape[0] - 1):
        s, e = starts[q], starts[q + 1]
        second = flat[s + 1] + 1 if e - s > 1 else 0
        prefix[q] = ((flat[s] + 1) << 32) | second
        h = np.uint64(1469598103934665603)
        for k in range(s, e):
            h = (h ^ np.uint64(flat[k])) * np.uint64(1099511628211)
        digest[q] = h ^ np.uint64(e - s)


def sort_order(flat: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The queries' indices sorted on their first two tokens (a one-token query before its extensions), then
    by a hash of the whole query, so similar queries are neighbours and equal ones adjacent. (A full
    lexicographic sort of 16-token keys took 610 ms for 200k queries, more than their search.)"""
    n = starts.size - 1
    if n <= 1:
        return np.arange(n, dtype=np.int64)
    prefix = np.empty(n, dtype=np.int64)
    digest = np.empty(n, dtype=np.uint64)
    _sort_keys(flat, starts, prefix, digest)
    return np.lexsort((digest, prefix)).astype(np.int64)


def count_many(index: NgramIndex, queries: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """Exact counts (int64 array, order kept) of every query, each equal to ``index.count(query)``."""
    flat, starts = pack_queries(queries)
    n_q = starts.size - 1
    counts = np.zeros(n_q, dtype=np.int64)
    if n_q == 0:
        return counts
    order = sort_order(flat, starts)
    lo = np.empty(n_q, dtype=np.int64)
    hi = np.empty(n_q, dtype=np.int64)
    for shard in index.shards:
        _count_sorted(shard.tokens, shard.words, flat, starts, order, CHUNK, lo, hi)
        bad = np.flatnonzero(lo < 0)
        if bad.size:
            raise shard.damaged(int(lo[bad[0]]), int(hi[bad[0]]))
        counts += hi - lo
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
