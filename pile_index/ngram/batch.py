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
a damaged file gives the same FormatError. The queries are cut into blocks, one per thread of the index's
pool (the calling thread runs one); a call shares nothing but the read-only index, so concurrent calls from
API worker threads are safe.

The kernel is compiled per process (``cache=False``): numba's on-disk cache of a function does not notice a
change in the functions it calls from other modules (here the index's search), and a stale search must never
answer a count. Compiling takes a few seconds once per process.
"""

from __future__ import annotations

import re
from concurrent.futures import Future
from itertools import chain
from operator import attrgetter
from collections.abc import Sequence
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ..errors import ConfigError, LimitError, QueryError
from .index import MAX_TOKEN_ID, POOL_THREADS, NgramIndex, _pool, _Shard, query_tokens
from .search import (BAD_POINTER, _cmp, _finish_known, _finish_window, _lower_step, _sample_cmp, _window_of,
                     sa_at)

_IDS_LINE = re.compile(r"[0-9 ]+(,[0-9 ]+)*")  # a queries-file line of token ids; any other line is text
GROUP = 32  # queries searched in lockstep: enough misses in flight to cover a memory latency, few enough for L1
MIN_BLOCK = 4096  # queries per thread at least: below this one thread answers (a hand-off costs ~50 us)


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Hint the CPU to fetch the cache line holding ``arr[idx]`` (LLVM's prefetch; never faults, no value)."""
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        i = context.cast(builder, args[1], sig.args[1], types.intp)
        ptr = builder.gep(ary.data, [i])
        if not getattr(ptr.type, "is_opaque", False):
            ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        name = "llvm.prefetch.p0" if getattr(ptr.type, "is_opaque", False) else "llvm.prefetch.p0i8"
        fn = cgutils.get_or_insert_function(builder.module, fnty, name)
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])  # read, keep in all cache levels, data
        return context.get_dummy_value()

    return types.void(arr, idx), codegen


@numba.njit(cache=False, nogil=True, inline="always")
def _prefetch_row(words, n, row):
    """Prefetch the suffix pointer of ``row`` (5 bytes may straddle two lines)."""
    if words.itemsize == 1:
        _prefetch(words, 5 * row)
        _prefetch(words, 5 * row + 4)
    else:
        _prefetch(words, row)


@numba.njit(cache=False, nogil=True, inline="always")
def _prefetch_suffix(tokens, words, n, p, m):
    """Prefetch what comparing the suffix at ``p`` with an m-token pattern reads: its tokens (the first 32)
    and the bitmap byte of the positions after it."""
    _prefetch(tokens, p)
    _prefetch(tokens, min(p + min(m, 32) - 1, n - 1))
    if words.itemsize == 1:
        _prefetch(words, 5 * n + ((p + 1) >> 3))
    else:
        _prefetch(words, n + ((p + 1) >> 5))


@numba.njit(cache=False, nogil=True, inline="always")
def _big_endian(x, lane_bits):
    """A little-endian word of 64 // lane_bits tokens with its lanes reversed: the first token most significant,
    so that words compare as their tokens do lexicographically."""
    x = (x >> np.uint64(32)) | (x << np.uint64(32))
    if lane_bits <= 16:
        x = ((x >> np.uint64(16)) & np.uint64(0x0000FFFF0000FFFF)) | ((x & np.uint64(0x0000FFFF0000FFFF)) << np.uint64(16))
    if lane_bits == 8:
        x = ((x >> np.uint64(8)) & np.uint64(0x00FF00FF00FF00FF)) | ((x & np.uint64(0x00FF00FF00FF00FF)) << np.uint64(8))
    return x


@numba.njit(cache=False, nogil=True, inline="always")
def _row_cmp(stoks, slen, skeys, masks, lane_bits, lanes, j, pat, qk, m):
    """Sample row j against pat[:m], exactly as :func:`.search._sample_cmp`: with ``lane_bits`` (> 0) on the
    row's tokens read as 64-bit words (``skeys``, the same bytes) against the query's words ``qk``, the lanes
    past the row's item end or past m masked (an item that ends first sorts first)."""
    if lane_bits == 0:
        return _sample_cmp(stoks, slen, j, pat, m)
    kept = min(np.int64(slen[j]), m)
    nw = skeys.shape[1]
    if kept == nw * lanes:  # the common case: every lane of the row and of the query holds a token
        for w in range(nw):
            r = _big_endian(skeys[j, w], lane_bits)
            if r != qk[w]:
                return -1 if r < qk[w] else 1
        return 0
    for w in range(nw):
        k = min(max(kept - w * lanes, 0), lanes)
        mask = masks[k]
        r = _big_endian(skeys[j, w], lane_bits) & mask
        q = qk[w] & mask
        if r != q:
            return -1 if r < q else 1
        if k < lanes:
            break
    return -1 if kept < m else 0


@numba.njit(cache=False, nogil=True, error_model="numpy")
def _count_block(tokens, words, stoks, slen, skeys, masks, lane_bits, every, absent, flat, starts, q0, q1,
                 counts, damage):
    """counts[q] += this shard's count of each query q in [q0, q1) (flat[starts[q]:starts[q+1]]); 1 with
    damage = (code, row, q) at the first damage report (as a single count's search gives), else 0. ``absent``
    (empty, or one flag per query) marks queries holding a token the shard's dtype cannot hold."""
    n = tokens.shape[0]
    ns = slen.shape[0]
    width = stoks.shape[1]
    nw = max(skeys.shape[1], 1)
    lanes = 64 // lane_bits if lane_bits > 0 else 1
    lane_log = 3 if lanes == 8 else (2 if lanes == 4 else (1 if lanes == 2 else 0))
    qk = np.zeros((GROUP, nw), dtype=np.uint64)
    qs = np.empty(GROUP, dtype=np.int64)
    base = np.empty(GROUP, dtype=np.int64)
    lo = np.empty(GROUP, dtype=np.int64)
    hi = np.empty(GROUP, dtype=np.int64)
    upper = np.empty(GROUP, dtype=np.int64)
    mhi = np.empty(GROUP, dtype=np.int64)
    whi = np.empty(GROUP, dtype=np.int64)
    ptr = np.empty(GROUP, dtype=np.int64)
    known = np.zeros(GROUP, dtype=np.bool_)
    for g0 in range(q0, q1, GROUP):
        k = 0
        for q in range(g0, min(g0 + GROUP, q1)):
            if absent.shape[0] == 0 or not absent[q]:
                qs[k] = q
                k += 1
        # 1. The sample: the first row >= pat' (branch-free lower bound, the same number of steps for every
        # query: Khuong and Morin's layout paper), then the first row > pat' by galloping from it.
        for i in range(k):
            s = starts[qs[i]]
            m = min(starts[qs[i] + 1] - s, width)
            if lane_bits > 0:
                for w in range(nw):
                    qk[i, w] = 0
                for t in range(m):
                    shift = np.uint64((lanes - 1 - (t & (lanes - 1))) * lane_bits)
                    qk[i, t >> lane_log] |= np.uint64(flat[s + t]) << shift
            base[i] = 0
        size = ns
        while size > 1:
            half = size >> 1
            nxt = (size - half) >> 1
            for i in range(k):
                s = starts[qs[i]]
                e = starts[qs[i] + 1]
                j = base[i] + half
                if _row_cmp(stoks, slen, skeys, masks, lane_bits, lanes, j, flat[s:e], qk[i], min(e - s, width)) < 0:
                    base[i] = j
                if lane_bits > 0:
                    _prefetch(skeys, (base[i] + nxt) * nw)
                else:
                    _prefetch(stoks, (base[i] + nxt) * width)
                _prefetch(slen, base[i] + nxt)
            size -= half
        for i in range(k):
            q = qs[i]
            s, e = starts[q], starts[q + 1]
            pat = flat[s:e]
            m = min(e - s, width)
            if ns == 0:
                wlo, mlo, mh, wh = np.int64(0), np.int64(n), np.int64(0), np.int64(n)
            else:
                a = base[i]
                if _row_cmp(stoks, slen, skeys, masks, lane_bits, lanes, a, pat, qk[i], m) < 0:
                    a += 1
                b = a
                if a < ns and _row_cmp(stoks, slen, skeys, masks, lane_bits, lanes, a, pat, qk[i], m) <= 0:
                    step = 1
                    prev = a
                    while True:
                        j = a + step
                        if j >= ns:
                            h = ns
                            break
                        if _row_cmp(stoks, slen, skeys, masks, lane_bits, lanes, j, pat, qk[i], m) > 0:
                            h = j
                            break
                        prev = j
                        step <<= 1
                    b = prev + 1
                    while b < h:
                        j = (b + h) >> 1
                        if _row_cmp(stoks, slen, skeys, masks, lane_bits, lanes, j, pat, qk[i], m) <= 0:
                            b = j + 1
                        else:
                            h = j
                wlo, mlo, mh, wh = _window_of(ns, every, n, a, b, m == e - s)
            known[i] = mlo < mh
            lo[i] = wlo
            hi[i] = mlo if known[i] else wh
            upper[i] = hi[i]
            mhi[i] = mh
            whi[i] = wh
            if lo[i] < hi[i]:
                _prefetch_row(words, n, (lo[i] + hi[i]) >> 1)
        # 2. The first row >= pat inside each window, a level of every query per round: one pass reads the
        # pointers (prefetched) and prefetches their tokens, the next compares and prefetches the next pointer.
        while True:
            busy = False
            for i in range(k):
                if lo[i] < hi[i]:
                    mid = (lo[i] + hi[i]) >> 1
                    p = sa_at(words, n, mid)
                    if p >= n:
                        damage[0], damage[1], damage[2] = BAD_POINTER, mid, qs[i]
                        return 1
                    ptr[i] = p
                    _prefetch_suffix(tokens, words, n, p, starts[qs[i] + 1] - starts[qs[i]])
                    busy = True
            if not busy:
                break
            for i in range(k):
                if lo[i] < hi[i]:
                    mid = (lo[i] + hi[i]) >> 1
                    c = _cmp(tokens, words, ptr[i], flat[starts[qs[i]]:starts[qs[i] + 1]])
                    lo[i], hi[i], upper[i], code = _lower_step(c, mid, lo[i], hi[i], upper[i], known[i])
                    if code != 0:
                        damage[0], damage[1], damage[2] = code, mid, qs[i]
                        return 1
                    if lo[i] < hi[i]:
                        _prefetch_row(words, n, (lo[i] + hi[i]) >> 1)
        # 3. The rows the end-of-match search and the checks read first (two before the start, two after):
        # their pointers are in cache now; prefetch their tokens, then finish each query as a count does.
        for i in range(k):
            m = starts[qs[i] + 1] - starts[qs[i]]
            for row in (lo[i] - 2, lo[i] + 1, lo[i] + 2):
                if 0 <= row < n:
                    p = sa_at(words, n, row)
                    if p < n:
                        _prefetch_suffix(tokens, words, n, p, m)
        for i in range(k):
            q = qs[i]
            pat = flat[starts[q]:starts[q + 1]]
            if known[i]:
                r0, r1 = _finish_known(tokens, words, pat, lo[i], mhi[i], whi[i])
            else:
                r0, r1 = _finish_window(tokens, words, pat, lo[i], upper[i])
            if r0 < 0:
                damage[0], damage[1], damage[2] = r0, r1, q
                return 1
            counts[q] += r1 - r0
    return 0


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

    n_blocks = max(1, min(POOL_THREADS, n_q // MIN_BLOCK))
    cuts = [n_q * b // n_blocks for b in range(n_blocks + 1)]
    futures: list[Future] = [_pool().submit(block, a, b) for a, b in zip(cuts[1:-1], cuts[2:])]
    found = [block(cuts[0], cuts[1])] + [f.result() for f in futures]
    for hit in found:
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
