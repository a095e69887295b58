"""Batch counts: many n-grams counted in one call, in a parallel numba loop that releases the GIL.

``count_many(index, queries)`` answers exactly what ``index.count(q)`` answers for each query, in the order
given. The queries are packed into one flat int64 array (with offsets; lists of ints and lists of arrays in a
few C-level passes) and sorted lexicographically (a numeric sort on their first tokens packed into a uint64,
then a merge sort of the ties), so neighbouring queries probe the same sample rows, suffix-array rows and
token pages, and a query equal to its sorted neighbour reuses its answer. The sorted list is cut into
chunks; chunks run in parallel (``numba.prange``, ``nogil``); each query searches every shard through the
shard's in-RAM sample (``search._range_sampled_within``: the same damage checks as a single count), inside
the bounds its sorted predecessor's answer gives (its rows when the predecessor is a prefix of it, else the
rows after them). A kernel damage report is turned into the shard's FormatError, as a single count does.

The kernel is compiled per process (``cache=False``): numba's on-disk cache of a function does not notice a
change in the functions it calls from other modules (here the index's search), and a stale search must never
answer a count. Compiling takes a few seconds once per process.
"""

from __future__ import annotations

import re
from itertools import chain
from operator import attrgetter
from collections.abc import Sequence
from typing import Any

import numba
import numpy as np

from ..errors import ConfigError, LimitError, QueryError
from .index import MAX_TOKEN_ID, NgramIndex, query_tokens
from .search import _range_sampled_within

_IDS_LINE = re.compile(r"[0-9 ]+(,[0-9 ]+)*")  # a queries-file line of token ids; any other line is text
CHUNK = 256  # queries per parallel work item: long enough that neighbours share cache, short enough to balance


@numba.njit(cache=False, nogil=True, parallel=True)
def _count_sorted(tokens, words, stoks, slen, every, flat, starts, order, chunk, lo_out, hi_out):
    """For each query q (flat[starts[q]:starts[q+1]]), in chunks of the lexicographically sorted ``order``: its
    row range [lo_out[q], hi_out[q]) in this shard, or the search's damage report (lo_out[q] < 0, hi_out[q] =
    row). Each query's search is bounded by its sorted predecessor p's answer: when p is a prefix of q, q's
    rows lie inside p's; otherwise p < q and they differ, so q's rows start at or after p's end."""
    n = tokens.shape[0]
    n_q = order.shape[0]
    n_chunks = (n_q + chunk - 1) // chunk
    for c in numba.prange(n_chunks):
        a = c * chunk
        b = min(a + chunk, n_q)
        prev = -1
        for j in range(a, b):
            q = order[j]
            s, e = starts[q], starts[q + 1]
            blo, bhi = np.int64(0), np.int64(n)
            same = False
            if prev >= 0 and lo_out[prev] >= 0:
                ps, pe = starts[prev], starts[prev + 1]
                m = min(pe - ps, e - s)
                k = 0
                while k < m and flat[ps + k] == flat[s + k]:
                    k += 1
                if k == pe - ps:  # prev is a prefix of q (or q itself)
                    if k == e - s:
                        same = True
                    blo, bhi = lo_out[prev], hi_out[prev]
                else:
                    blo = hi_out[prev]
            if same:
                lo_out[q] = lo_out[prev]
                hi_out[q] = hi_out[prev]
            else:
                lo, hi = _range_sampled_within(tokens, words, stoks, slen, every, flat[s:e], blo, bhi)
                lo_out[q] = lo
                hi_out[q] = hi
            prev = q


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


@numba.njit(cache=True, nogil=True, inline="always")
def _lex_le(flat, starts, x, y):
    """Whether query x sorts at or before query y (token by token; a prefix before its extensions)."""
    sx, ex, sy, ey = starts[x], starts[x + 1], starts[y], starts[y + 1]
    m = min(ex - sx, ey - sy)
    for k in range(m):
        a, b = flat[sx + k], flat[sy + k]
        if a != b:
            return a < b
    return ex - sx <= ey - sy


@numba.njit(cache=True, nogil=True)
def _lead_keys(flat, starts, bits, width, key):
    """key[q]: the query's first ``width`` tokens, each + 1 (0: the query has ended) in ``bits`` bits, as one
    uint64: keys in numeric order are the queries in lexicographic order of those tokens."""
    for q in range(starts.shape[0] - 1):
        s, e = starts[q], starts[q + 1]
        h = np.uint64(0)
        for k in range(width):
            t = np.uint64(flat[s + k] + 1) if s + k < e else np.uint64(0)
            h = (h << np.uint64(bits)) | t
        key[q] = h


@numba.njit(cache=True, nogil=True)
def _refine(flat, starts, order, key):
    """``order`` (sorted on ``key``) merge-sorted in place to full lexicographic order inside each run of
    equal keys (the only queries the key leaves unordered)."""
    n = order.shape[0]
    buf = np.empty_like(order)
    a = 0
    while a < n:
        b = a + 1
        while b < n and key[order[b]] == key[order[a]]:
            b += 1
        width = 1
        src, dst = order, buf
        swaps = 0
        while width < b - a:
            for x in range(a, b, 2 * width):
                mid = min(x + width, b)
                y = min(x + 2 * width, b)
                i, j, k = x, mid, x
                while i < mid and j < y:
                    if _lex_le(flat, starts, src[i], src[j]):
                        dst[k] = src[i]
                        i += 1
                    else:
                        dst[k] = src[j]
                        j += 1
                    k += 1
                while i < mid:
                    dst[k] = src[i]
                    i += 1
                    k += 1
                while j < y:
                    dst[k] = src[j]
                    j += 1
                    k += 1
            src, dst = dst, src
            swaps += 1
            width *= 2
        if swaps & 1:  # the sorted run is in buf
            order[a:b] = buf[a:b]
        a = b


def sort_order(flat: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The queries' indices in lexicographic order of their tokens (a query before its extensions, equal
    queries adjacent): neighbours probe the same rows and pages, and each bounds the next one's search.
    One numeric sort on the first few tokens packed into a uint64 (4 of a 16-bit vocabulary), then a merge
    sort of the ties only (a full lexicographic sort of 16-token keys took 610 ms for 200k queries)."""
    n = starts.size - 1
    if n <= 1:
        return np.arange(n, dtype=np.int64)
    bits = (int(flat.max()) + 1).bit_length()  # token + 1, and 0 for "the query has ended"
    width = max(1, 64 // bits)
    key = np.empty(n, dtype=np.uint64)
    _lead_keys(flat, starts, np.int64(bits), np.int64(width), key)
    order = np.argsort(key, kind="stable").astype(np.int64)
    _refine(flat, starts, order, key)
    return order


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
        _count_sorted(shard.tokens, shard.words, shard.stoks, shard.slen, shard.every, flat, starts, order,
                      CHUNK, lo, hi)
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
