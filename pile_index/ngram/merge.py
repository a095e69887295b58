"""Suffix arrays larger than RAM: parts sorted in RAM by SA-IS, then merged on disk, k runs at a time.

The order (format 3). Suffixes are compared inside their items: token by token up to the end of the shorter
one's item, a suffix that ends first sorts first, and two suffixes equal up to the ends of both items sort
by store position. This is a total order that depends on nothing but the store, so a shard sorted in one
part, or in many parts merged in any tree, is the same bytes. A part is sorted by SA-IS over
``T = (t+s ..) 1 (t+s ..) 2 ... P 0`` with ``s = P + 1`` for its ``P`` items: each item ends with its own
separator, smaller than every token and increasing with position, which gives exactly that order. (Format
2's one shared separator broke such ties by the tokens of the following items, which no merge of parts can
reproduce without reading arbitrarily far; counts and sets of positions are the same in both orders, only
the order among occurrences whose whole item remainders are equal differs.)

Runs on disk are 5-byte little-endian shard-local token positions (:mod:`.layout`). The merge kernel holds
one buffer of each input run and a binary heap of their heads; the Python driver refills a buffer when the
kernel asks and writes the output buffer when it is full, so the merge's memory is its buffers, the shard's
item starts (8 bytes an item) and the token pages it touches (given back to the page cache when the
process's RSS passes the budget). Each run's next rows are decoded a batch at a time with their item ends
and a key (their first 8 tokens, for 2-byte ids, packed big-endian into two integers), so the token reads
overlap and the heap compares integers, reading tokens only on equal keys; the kernels compile without
reference counting (``_nrt=False``: a call or a row view that counts references costs two atomic operations,
which was most of a row's cost when a row took ~250 ns; it takes ~73 ns now). The last pass can be cut by
:func:`split_runs` into merges of consecutive rows that run on threads, each writing its own range of the
shard file. Comparisons read tokens through a memmap and are bounded by item length
(a document duplicated ``d`` times costs ``O(d * len^2)`` token comparisons, as in any suffix merge).

Memory model (measured; see README "n-gram index"): a part of ``n`` tokens and ``P`` items needs
``PART_BYTES_PER_TOKEN * n + PART_BYTES_PER_ITEM * P`` bytes while it is sorted.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import numba
import numpy as np

from ..atomic import atomic_open
from ..errors import FormatError
from ..format.store import TokenStore
from ..prefetch import prefetch
from .layout import ShardSpec, item_starts, sample_rows, shard_token_start
from .suffix_array import _INT32_MAX_SYMBOLS, suffix_array_remade

PART_BYTES_PER_TOKEN = 10  # SA-IS measured at 9.4 B/token (T and SA int32, the reduced string)
PART_BYTES_PER_ITEM = 44  # its separator symbol (~11 B), SA-IS bucket arrays (3 x int64) and its item start
MAX_FAN_IN = 64  # runs merged at once (one open file and one buffer each)
MAX_BUFFER_ROWS = 1 << 20  # 5 MB of pointers per run buffer: large sequential reads, few kernel calls
READBACK_BYTES = 64 << 20  # a parallel merge's later pieces are hashed this many bytes at a time
BATCH_ROWS = 1024  # rows of a run decoded ahead with their keys (40 B each): their token reads overlap


# ----------------------------------------------------------------------------------------------------------
# 5-byte pointers
# ----------------------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _get5r(bufs, r, i):
    """Row i of buffer r of a 2-D array of 5-byte buffers (no row view: a view costs two atomic reference
    counts, which the merge cannot afford per row)."""
    b = 5 * i
    return (np.int64(bufs[r, b]) | (np.int64(bufs[r, b + 1]) << 8) | (np.int64(bufs[r, b + 2]) << 16)
            | (np.int64(bufs[r, b + 3]) << 24) | (np.int64(bufs[r, b + 4]) << 32))


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _put5(buf, i, v):
    b = 5 * i
    for k in range(5):
        buf[b + k] = np.uint8((v >> (8 * k)) & 0xFF)


def decode5(raw: np.ndarray) -> np.ndarray:
    """5-byte little-endian pointers -> int64."""
    r = raw.reshape(-1, 5).astype(np.int64)
    return r[:, 0] | (r[:, 1] << 8) | (r[:, 2] << 16) | (r[:, 3] << 24) | (r[:, 4] << 32)


# ----------------------------------------------------------------------------------------------------------
# Parts: SA-IS in RAM
# ----------------------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _augment_items(tokens, starts, shift, out):
    """out = t + shift for each token, separator j + 1 after item j, 0 at the end (see the module docstring)."""
    k = 0
    for it in range(starts.shape[0] - 1):
        for p in range(starts[it], starts[it + 1]):
            out[k] = np.int64(tokens[p]) + shift
            k += 1
        out[k] = it + 1
        k += 1
    out[k] = 0


@numba.njit(cache=True, nogil=True)
def _part_positions(T, SA, shift, n_skip, out):
    """Overwrite T with each augmented position's token position (-1 at a separator, a value below ``shift``),
    then write SA[n_skip:] as token positions to out[: len(SA) - n_skip]: ``out[i - n_skip] = T[SA[i]]``
    (``out`` may be SA itself: each row is read before it is overwritten)."""
    seps = 0
    for q in range(T.shape[0]):
        if T[q] < shift:
            seps += 1
            T[q] = -1
        else:
            T[q] = q - seps
    for i in range(n_skip, SA.shape[0]):
        out[i - n_skip] = T[SA[i]]


@numba.njit(cache=True, nogil=True, _nrt=False)
def _encode5(positions, lo, hi, base, out):
    """out = positions[lo:hi] + base as 5-byte little-endian rows."""
    for i in range(lo, hi):
        _put5(out, i - lo, np.int64(positions[i]) + base)


class SortedPart:
    """A part's sorted suffixes: part-local token positions (``positions[:n]``, int32 or int64) and the
    shard-local position of the part's first token (``base``); :func:`chunks_of` writes them as 5-byte rows."""

    def __init__(self, positions: np.ndarray, n: int, base: int):
        self.positions, self.n, self.base = positions, n, base


def read_tokens(store: TokenStore, spec: ShardSpec, lo: int, count: int) -> np.ndarray:
    """Shard-local tokens [lo, lo + count), read from the ``.bin`` into RAM (no mapping left behind)."""
    part = store.parts[spec.part]
    start = shard_token_start(store, spec) + lo
    with open(part.bin_path, "rb") as f:
        f.seek(start * part.dtype.itemsize)
        out = np.fromfile(f, dtype=part.dtype, count=count)
    if out.size != count:
        raise FormatError(f"{part.bin_path}: expected {count:,} tokens at token {start:,}, read {out.size:,}; "
                          f"the file is shorter than its .idx says")
    return out


def part_suffix_array(store: TokenStore, spec: ShardSpec, item_lo: int, item_hi: int) -> SortedPart:
    """The sorted suffixes of the shard's items [item_lo, item_hi). ``T`` is made from the ``.bin`` twice
    (:func:`.suffix_array.suffix_array_remade`), so the peak is ``PART_BYTES_PER_TOKEN`` a token."""
    starts_all = item_starts(store, spec, item_lo, item_hi)
    base = int(starts_all[0])
    starts = starts_all - base
    n = int(starts[-1])
    n_items = item_hi - item_lo
    dtype = store.parts[spec.part].dtype
    used = None
    if dtype.itemsize <= 2 and dtype.kind == "u":
        top = 1 << (8 * dtype.itemsize)  # the whole id range: 65,536 buckets cost nothing, a read to find the max does
    else:  # large or signed vocabularies: rank the symbols that occur so the buckets stay small
        used = np.unique(read_tokens(store, spec, base, n))
        if used.size and int(used[0]) < 0:
            raise FormatError(f"shard {spec.as_dict()}: negative token id {int(used[0]):,}; expected ids >= 0")
        top = int(used.size)
    shift = n_items + 1
    K = shift + top
    n_aug = n + n_items + 1
    sym = np.int32 if max(n_aug, K) < _INT32_MAX_SYMBOLS else np.int64

    def make_T() -> np.ndarray:
        tokens = read_tokens(store, spec, base, n)
        if used is not None:
            tokens = np.searchsorted(used, tokens).astype(np.int32)  # dense ranks: order kept, whatever the ids
        T = np.empty(n_aug, dtype=sym)
        _augment_items(tokens, starts, shift, T)
        return T

    SA, T = suffix_array_remade(make_T, K)
    _part_positions(T, SA, shift, n_items + 1, SA)
    return SortedPart(SA, n, base)


# ----------------------------------------------------------------------------------------------------------
# The k-way merge kernel
# ----------------------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _less(tokens, p, ep, q, eq, k0):
    """Whether the suffix at p (its item ends at ep) sorts before the one at q (ending at eq), given that
    their first k0 tokens are equal."""
    la = ep - p
    lb = eq - q
    m = min(la, lb)
    for k in range(k0, m):
        x = tokens[p + k]
        y = tokens[q + k]
        if x != y:
            return x < y
    if la != lb:
        return la < lb
    return p < q


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _before(tokens, r, s, hpos, hend, hkey, hlen, W):
    """Whether run r's head sorts before run s's: their keys (first W tokens packed big-endian into two
    uint64 words) decide unless they are equal or one item ends inside the key; then the tokens do."""
    if hlen[r] == hlen[s]:
        a = hkey[r, 0]
        b = hkey[s, 0]
        if a != b:
            return a < b
        a = hkey[r, 1]
        b = hkey[s, 1]
        if a != b:
            return a < b
        if hlen[r] < W:  # both items end inside the key with equal remainders: store position decides
            return hpos[r] < hpos[s]
        return _less(tokens, hpos[r], hend[r], hpos[s], hend[s], W)
    return _less(tokens, hpos[r], hend[r], hpos[s], hend[s], 0)


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _sift(tokens, heap, size, hpos, hend, hkey, hlen, W, i):
    """Restore the heap property below slot i."""
    while True:
        c = 2 * i + 1
        if c >= size:
            return
        r = heap[c]
        if c + 1 < size:
            s = heap[c + 1]
            if _before(tokens, s, r, hpos, hend, hkey, hlen, W):
                c += 1
                r = s
        t = heap[i]
        if _before(tokens, r, t, hpos, hend, hkey, hlen, W):
            heap[c] = t
            heap[i] = r
            i = c
        else:
            return


def item_table(starts: np.ndarray) -> tuple[np.ndarray, int]:
    """(first, S): ``first[b]`` is the item holding position ``b << S`` (S: about the mean item length), so
    :func:`_item_end` finds an item in a step or two where a binary search over all items takes ~17
    mispredicted branches (measured 63-81 ns a row at 10k items)."""
    n_items = starts.size - 1
    n = int(starts[-1])
    S = max(0, int(np.log2(max(1, n // max(1, n_items)))))
    first = np.searchsorted(starts, np.arange(((max(n, 1) - 1) >> S) + 2, dtype=np.int64) << S, side="right") - 1
    return np.minimum(first, max(0, n_items - 1)).astype(np.int64), S


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _item_end(starts, first, S, p):
    """The end of the item holding position p (see :func:`item_table`)."""
    b = p >> S
    i = first[b]
    hi = first[b + 1]
    if hi - i <= 8:
        while starts[i + 1] <= p:
            i += 1
    else:
        i += np.searchsorted(starts[i + 1 : hi + 1], p, side="right")
    return starts[i + 1]


@numba.njit(cache=True, nogil=True, _nrt=False)
def _row_less(tokens, starts, first, S, p, q):
    """Whether the suffix at p sorts before the one at q."""
    return _less(tokens, p, _item_end(starts, first, S, p), q, _item_end(starts, first, S, q), 0)


@numba.njit(cache=True, nogil=True, _nrt=False)
def _fill_batch(tokens, starts, first, S, bufs, buf_len, buf_pos, r, bat, bkey, bcnt, bcur, W, bits):
    """Decode run r's next rows (up to a batch) with their item ends and keys. The rows are independent: a
    first pass decodes every position and prefetches its tokens, so the key reads of the second pass hit the
    cache (a 4-way merge went from ~107 to ~73 ns a row; a read on the merge's critical path costs ~100 ns)."""
    m = min(bat.shape[1], buf_len[r] - buf_pos[r])
    half = W // 2
    for j in range(m):  # positions first, each one's tokens prefetched: the reads below then hit the cache
        p = _get5r(bufs, r, buf_pos[r] + j)
        bat[r, j, 0] = p
        prefetch(tokens, p)
    for j in range(m):
        p = bat[r, j, 0]
        e = _item_end(starts, first, S, p)
        ln = min(e - p, W)
        bat[r, j, 1] = e
        bat[r, j, 2] = ln
        if ln == W:  # the common case, without a branch per token
            for w in range(2):
                q = p + w * half
                key = np.uint64(tokens[q])
                for k in range(1, half):
                    key = (key << bits) | np.uint64(tokens[q + k])
                bkey[r, j, w] = key
        else:
            for w in range(2):
                key = np.uint64(0)
                for k in range(w * half, (w + 1) * half):
                    v = np.uint64(tokens[p + k]) if k < ln else np.uint64(0)
                    key = v if k == w * half else (key << bits) | v
                bkey[r, j, w] = key
    buf_pos[r] += m
    bcnt[r] = m
    bcur[r] = 0


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _has_next(buf_len, buf_pos, bcnt, bcur, r):
    return bcur[r] < bcnt[r] or buf_pos[r] < buf_len[r]


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _load_head(tokens, starts, first, S, bufs, buf_len, buf_pos, r, hpos, hend, hkey, hlen, bat, bkey, bcnt, bcur,
               W, bits):
    """Run r's next row becomes its head (a row of its batch, the batch refilled from its buffer when done)."""
    if bcur[r] == bcnt[r]:
        _fill_batch(tokens, starts, first, S, bufs, buf_len, buf_pos, r, bat, bkey, bcnt, bcur, W, bits)
    j = bcur[r]
    bcur[r] = j + 1
    hpos[r] = bat[r, j, 0]
    hend[r] = bat[r, j, 1]
    hlen[r] = bat[r, j, 2]
    hkey[r, 0] = bkey[r, j, 0]
    hkey[r, 1] = bkey[r, j, 1]


@numba.njit(cache=True, nogil=True, _nrt=False)
def _merge_init(tokens, starts, first, S, bufs, buf_len, buf_pos, heap, state, hpos, hend, hkey, hlen, bat, bkey,
                bcnt, bcur, W, bits):
    size = 0
    for r in range(bufs.shape[0]):
        if _has_next(buf_len, buf_pos, bcnt, bcur, r):
            _load_head(tokens, starts, first, S, bufs, buf_len, buf_pos, r, hpos, hend, hkey, hlen, bat, bkey, bcnt,
                       bcur, W, bits)
            heap[size] = r
            size += 1
    state[0] = size
    for i in range(size // 2 - 1, -1, -1):
        _sift(tokens, heap, size, hpos, hend, hkey, hlen, W, i)


@numba.njit(cache=True, nogil=True, _nrt=False)
def _merge(tokens, starts, first, S, bufs, buf_len, buf_pos, eof, heap, state, hpos, hend, hkey, hlen, bat, bkey,
           bcnt, bcur, W, bits, pending, out):
    """Merge into ``out`` (5-byte rows) until it is full (returns (rows, -1)), the runs are done (rows, -2), or
    run r's buffer must be refilled first (rows, r; call again with pending = r after refilling)."""
    size = state[0]
    cap = out.shape[0] // 5
    k = 0
    if pending >= 0:  # the top's run was refilled (or found empty): put its next head in place
        r = heap[0]
        if _has_next(buf_len, buf_pos, bcnt, bcur, r):
            _load_head(tokens, starts, first, S, bufs, buf_len, buf_pos, r, hpos, hend, hkey, hlen, bat, bkey, bcnt,
                       bcur, W, bits)
        else:
            size -= 1
            heap[0] = heap[size]
        _sift(tokens, heap, size, hpos, hend, hkey, hlen, W, 0)
    while True:
        if size == 0:
            state[0] = 0
            return k, -2
        if k == cap:
            state[0] = size
            return k, -1
        r = heap[0]
        _put5(out, k, hpos[r])
        k += 1
        if _has_next(buf_len, buf_pos, bcnt, bcur, r):
            _load_head(tokens, starts, first, S, bufs, buf_len, buf_pos, r, hpos, hend, hkey, hlen, bat, bkey, bcnt,
                       bcur, W, bits)
            _sift(tokens, heap, size, hpos, hend, hkey, hlen, W, 0)
        elif eof[r]:
            size -= 1
            heap[0] = heap[size]
            _sift(tokens, heap, size, hpos, hend, hkey, hlen, W, 0)
        else:
            state[0] = size
            return k, r


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * mmap.PAGESIZE
    except (OSError, ValueError, IndexError):
        return 0


def _give_back(tokens: np.ndarray) -> None:
    """Unmap the token pages this process touched (they stay in the page cache): RSS back under the budget."""
    mm = getattr(tokens, "_mmap", None)
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if mm is not None and advice is not None:
        try:
            mm.madvise(advice)
        except (OSError, ValueError):
            pass


def merge_runs(tokens: np.ndarray, starts: np.ndarray, runs: list[Path], buffer_rows: int,
               rss_limit: int, ranges: list[tuple[int, int]] | None = None) -> Iterator[np.ndarray]:
    """Chunks (5-byte rows) of the merge of the sorted runs ``runs`` (files of 5-byte shard-local positions),
    or of rows [lo, hi) of each run with ``ranges`` (one piece of a merge cut by :func:`split_runs`)."""
    F = len(runs)
    for path in runs:
        if os.path.getsize(path) % 5:
            raise FormatError(f"{path}: {os.path.getsize(path):,} bytes, not a whole number of 5-byte pointers; "
                              f"delete the folder's build/ files and build again")
    left = np.array([hi - lo for lo, hi in ranges] if ranges is not None else
                    [os.path.getsize(p) // 5 for p in runs], dtype=np.int64)
    bufs = np.empty((F, 5 * buffer_rows), dtype=np.uint8)
    buf_len = np.zeros(F, dtype=np.int64)
    buf_pos = np.zeros(F, dtype=np.int64)
    eof = np.zeros(F, dtype=np.bool_)
    heap = np.zeros(F, dtype=np.int64)
    state = np.zeros(1, dtype=np.int64)
    hpos = np.zeros(F, dtype=np.int64)
    hend = np.zeros(F, dtype=np.int64)
    hkey = np.zeros((F, 2), dtype=np.uint64)
    hlen = np.zeros(F, dtype=np.int64)
    per_word = max(1, 8 // tokens.dtype.itemsize)
    W, bits = 2 * per_word, np.uint64(8 * tokens.dtype.itemsize)  # uint16 tokens: 8 tokens in the key
    batch = min(BATCH_ROWS, buffer_rows)
    first, S = item_table(starts)
    bat = np.zeros((F, batch, 3), dtype=np.int64)  # position, item end, tokens in the key
    bkey = np.zeros((F, batch, 2), dtype=np.uint64)
    bcnt = np.zeros(F, dtype=np.int64)
    bcur = np.zeros(F, dtype=np.int64)
    out = np.empty(5 * buffer_rows, dtype=np.uint8)
    files: list[IO[bytes]] = []
    try:
        for r, path in enumerate(runs):
            files.append(open(path, "rb"))
            if ranges is not None:
                files[r].seek(5 * ranges[r][0])

        def refill(r: int) -> None:
            want = min(bufs.shape[1], 5 * int(left[r]))
            got = files[r].readinto(memoryview(bufs[r])[:want])
            if got != want:
                raise FormatError(f"{runs[r]}: {got:,} bytes read where {want:,} were expected; delete the folder's "
                                  f"build/ files and build again")
            buf_len[r], buf_pos[r] = got // 5, 0
            left[r] -= got // 5
            eof[r] = left[r] == 0

        for r in range(F):
            refill(r)
        _merge_init(tokens, starts, first, S, bufs, buf_len, buf_pos, heap, state, hpos, hend, hkey, hlen, bat, bkey,
                    bcnt, bcur, W, bits)
        pending = -1
        while True:
            k, code = _merge(tokens, starts, first, S, bufs, buf_len, buf_pos, eof, heap, state, hpos, hend, hkey, hlen,
                             bat, bkey, bcnt, bcur, W, bits, pending, out)
            pending = -1
            if k:
                yield out[: 5 * k]
            if code == -2:
                return
            if code >= 0:
                refill(int(code))
                pending = int(code)
            elif rss_limit and _rss_bytes() > rss_limit:
                _give_back(tokens)
    finally:
        for f in files:
            f.close()


# ----------------------------------------------------------------------------------------------------------
# Writers
# ----------------------------------------------------------------------------------------------------------


def write_run(path: Path, chunks: Iterator[np.ndarray]) -> int:
    """Write the chunks to ``path`` atomically; return the rows written."""
    rows = 0
    with atomic_open(path, "wb") as f:
        for c in chunks:
            f.write(memoryview(c))
            rows += c.size // 5
    return rows


def boundary_bitmap(starts: np.ndarray, n: int) -> np.ndarray:
    """Format 3's bitmap: bit p of byte p // 8 for every item start p and for n."""
    bits = np.zeros((n >> 3) + 1, dtype=np.uint8)
    pos = np.append(starts, n)
    np.bitwise_or.at(bits, pos >> 3, (np.uint8(1) << (pos & 7).astype(np.uint8)))
    return bits


@numba.njit(cache=True, nogil=True)
def _fill_sample(block, block_lo, positions, order, lo_i, hi_i, starts, stoks, slen):
    """Sample rows order[lo_i:hi_i] (their positions lie in the block [block_lo, block_lo + len(block) - w))."""
    w = stoks.shape[1]
    for t in range(lo_i, hi_i):
        j = order[t]
        p = positions[j]
        end = starts[np.searchsorted(starts, p, side="right")]
        ln = min(w, end - p)
        slen[j] = ln
        for k in range(ln):
            stoks[j, k] = block[p - block_lo + k]


def build_sample(store: TokenStore, spec: ShardSpec, starts: np.ndarray, positions: np.ndarray, width: int,
                 block_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(stoks, slen) for sample rows at ``positions``: the store's tokens read once, in blocks, in order."""
    ns = positions.size
    stoks = np.zeros((ns, width), dtype=store.dtype)
    slen = np.zeros(ns, dtype=np.uint8)
    order = np.argsort(positions, kind="stable")
    sorted_pos = positions[order]
    n = spec.n_tokens
    block_tokens = max(block_tokens, 1)
    for lo in range(0, n, block_tokens):
        hi = min(n, lo + block_tokens)
        a, b = np.searchsorted(sorted_pos, [lo, hi])
        if a == b:
            continue
        block = read_tokens(store, spec, lo, min(n, hi + width) - lo)
        _fill_sample(block, lo, positions, order, int(a), int(b), starts, stoks, slen)
    return stoks, slen


def split_runs(tokens: np.ndarray, starts: np.ndarray, runs: list[Path], pieces: int) -> list[list[tuple[int, int]]]:
    """Cut a merge of ``runs`` into ``pieces`` merges of consecutive output rows: splitters are evenly spaced
    rows of the longest run, and each run is cut where the splitter would go (a binary search of its rows).
    Returns, per piece, the rows [lo, hi) of each run it merges."""
    sizes = [os.path.getsize(p) // 5 for p in runs]
    first, S = item_table(starts)
    fds = [os.open(p, os.O_RDONLY) for p in runs]
    try:
        def row(r: int, i: int) -> int:
            return int(decode5(np.frombuffer(os.pread(fds[r], 5, 5 * i), dtype=np.uint8))[0])

        longest = int(np.argmax(sizes))
        cuts = [[0] * len(runs)]
        for j in range(1, pieces):
            x = row(longest, j * sizes[longest] // pieces)
            cut = []
            for r in range(len(runs)):
                lo, hi = cuts[-1][r], sizes[r]  # the cuts only grow: search above the last one
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if _row_less(tokens, starts, first, S, row(r, mid), x):
                        lo = mid + 1
                    else:
                        hi = mid
                cut.append(lo)
            cuts.append(cut)
        cuts.append(sizes)
    finally:
        for fd in fds:
            os.close(fd)
    return [[(cuts[j][r], cuts[j + 1][r]) for r in range(len(runs))] for j in range(pieces)]


def write_shard(path: Path, sample_path: Path, store: TokenStore, spec: ShardSpec,
                pieces: list[tuple[int, Iterator[np.ndarray]]], every: int, width: int,
                block_tokens: int) -> dict[str, str]:
    """Write a format-3 shard from its sorted 5-byte rows, then its sample; return the files' digests.
    ``pieces``: (first row, chunks) of consecutive parts of the rows, written at once on threads (the first
    hashed as it is written, the others read back from the page cache after)."""
    n = spec.n_tokens
    starts = item_starts(store, spec)
    h = hashlib.sha256()
    with atomic_open(path, "wb") as f:
        fd = f.fileno()

        def write_piece(j: int) -> tuple[int, list[np.ndarray]]:
            row0, chunks = pieces[j]
            picks = []
            rows = row0
            for c in chunks:
                k = c.size // 5
                first = (-rows) % every  # the first row of this chunk that is a multiple of every
                if first < k:
                    picks.append(decode5(c.reshape(-1, 5)[first::every].reshape(-1)))
                _pwrite_all(fd, c, 5 * rows)
                if j == 0:
                    h.update(memoryview(c))
                rows += k
            return rows - row0, picks

        if len(pieces) == 1:
            done = [write_piece(0)]
        else:
            with ThreadPoolExecutor(max_workers=len(pieces), thread_name_prefix="ngram-merge") as pool:
                done = [fut.result() for fut in [pool.submit(write_piece, j) for j in range(len(pieces))]]
        rows = sum(d[0] for d in done)
        if rows != n or any(pieces[j][0] + done[j][0] != (pieces[j + 1][0] if j + 1 < len(pieces) else n)
                            for j in range(len(pieces))):
            raise FormatError(f"{path}: the merge produced {rows:,} rows for a shard of {n:,} tokens; delete the "
                              f"index folder's build/ files and build again")
        for j in range(1, len(pieces)):  # the later pieces' bytes, in order, for the digest
            for off in range(5 * pieces[j][0], 5 * (pieces[j][0] + done[j][0]), READBACK_BYTES):
                h.update(os.pread(fd, min(READBACK_BYTES, 5 * (pieces[j][0] + done[j][0]) - off), off))
        bits = boundary_bitmap(starts, n)
        _pwrite_all(fd, bits, 5 * n)
        h.update(memoryview(bits))
    picks = [a for d in done for a in d[1]]
    positions = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
    if positions.size != sample_rows(n, every):
        raise FormatError(f"{path}: {positions.size:,} sample rows, expected {sample_rows(n, every):,}")
    stoks, slen = build_sample(store, spec, starts, positions, width, block_tokens)
    hs = hashlib.sha256()
    with atomic_open(sample_path, "wb") as f:
        for a in (stoks, slen):
            f.write(memoryview(np.ascontiguousarray(a).reshape(-1).view(np.uint8)))
            hs.update(memoryview(np.ascontiguousarray(a).reshape(-1).view(np.uint8)))
    return {"sa_sha256": h.hexdigest(), "sample_sha256": hs.hexdigest()}


def _pwrite_all(fd: int, a: np.ndarray, offset: int) -> None:
    view = memoryview(a).cast("B")
    while view:
        k = os.pwrite(fd, view, offset)
        view, offset = view[k:], offset + k


def chunks_of(part: SortedPart, rows: int) -> Iterator[np.ndarray]:
    """A part's rows as 5-byte chunks of at most ``rows`` rows (for the writers; each chunk a new array)."""
    for s in range(0, part.n, rows):
        e = min(part.n, s + rows)
        out = np.empty(5 * (e - s), dtype=np.uint8)
        _encode5(part.positions, s, e, part.base, out)
        yield out


def remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
