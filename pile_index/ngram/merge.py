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
process's RSS passes the budget). Comparisons read tokens through a memmap and are bounded by item length
(a document duplicated ``d`` times costs ``O(d * len^2)`` token comparisons, as in any suffix merge).

Memory model (measured; see README "n-gram index"): a part of ``n`` tokens and ``P`` items needs
``PART_BYTES_PER_TOKEN * n + PART_BYTES_PER_ITEM * P`` bytes while it is sorted.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numba
import numpy as np

from ..atomic import atomic_open
from ..errors import FormatError
from ..format.store import TokenStore
from .layout import ShardSpec, item_starts, sample_rows, shard_token_start
from .suffix_array import _INT32_MAX_SYMBOLS, suffix_array

PART_BYTES_PER_TOKEN = 24  # SA-IS measured at ~22 B/token (T, SA, types, names, reduced problem) + 5 B output
PART_BYTES_PER_ITEM = 32  # one separator symbol per item: SA-IS bucket arrays (3 x int64) and its item start
MAX_FAN_IN = 64  # runs merged at once (one open file and one buffer each)
MAX_BUFFER_ROWS = 1 << 20  # 5 MB of pointers per run buffer: large sequential reads, few kernel calls


# ----------------------------------------------------------------------------------------------------------
# 5-byte pointers
# ----------------------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _get5(buf, i):
    b = 5 * i
    return (np.int64(buf[b]) | (np.int64(buf[b + 1]) << 8) | (np.int64(buf[b + 2]) << 16)
            | (np.int64(buf[b + 3]) << 24) | (np.int64(buf[b + 4]) << 32))


@numba.njit(cache=True, nogil=True, inline="always")
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
def _part_positions(T, SA, shift, n_skip, base, out):
    """Overwrite T with each augmented position's token position, then write SA[n_skip:] as 5-byte
    shard-local token positions (``+ base``) to out."""
    seps = 0
    for q in range(T.shape[0]):
        if T[q] < shift:
            seps += 1
            T[q] = -1
        else:
            T[q] = q - seps
    for i in range(n_skip, SA.shape[0]):
        _put5(out, i - n_skip, np.int64(T[SA[i]]) + base)


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


def part_suffix_array(store: TokenStore, spec: ShardSpec, item_lo: int, item_hi: int) -> np.ndarray:
    """The sorted suffixes of the shard's items [item_lo, item_hi), as 5-byte shard-local positions (uint8)."""
    starts_all = item_starts(store, spec, item_lo, item_hi)
    base = int(starts_all[0])
    starts = starts_all - base
    n = int(starts[-1])
    n_items = item_hi - item_lo
    tokens = read_tokens(store, spec, base, n)
    if tokens.dtype.itemsize <= 2 and tokens.dtype.kind == "u":
        top = int(tokens.max()) + 1 if tokens.size else 1
    else:  # large or signed vocabularies: rank the symbols that occur so the buckets stay small
        used = np.unique(tokens)
        if used.size and int(used[0]) < 0:
            raise FormatError(f"shard {spec.as_dict()}: negative token id {int(used[0]):,}; expected ids >= 0")
        tokens = np.searchsorted(used, tokens).astype(np.int32)  # dense ranks: order kept, whatever the ids
        top = int(used.size)
    shift = n_items + 1
    K = shift + top
    n_aug = n + n_items + 1
    T = np.empty(n_aug, dtype=np.int32 if max(n_aug, K) < _INT32_MAX_SYMBOLS else np.int64)
    _augment_items(tokens, starts, shift, T)
    del tokens
    SA = suffix_array(T, K)
    out = np.empty(5 * n, dtype=np.uint8)
    _part_positions(T, SA, shift, n_items + 1, base, out)
    return out


# ----------------------------------------------------------------------------------------------------------
# The k-way merge kernel
# ----------------------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _less(tokens, p, ep, q, eq):
    """Whether the suffix at p (its item ends at ep) sorts before the one at q (ending at eq)."""
    la = ep - p
    lb = eq - q
    m = min(la, lb)
    for k in range(m):
        x = tokens[p + k]
        y = tokens[q + k]
        if x != y:
            return x < y
    if la != lb:
        return la < lb
    return p < q


@numba.njit(cache=True, nogil=True)
def _sift(tokens, heap, size, hpos, hend, i):
    """Restore the heap property below slot i."""
    while True:
        c = 2 * i + 1
        if c >= size:
            return
        r = heap[c]
        if c + 1 < size:
            s = heap[c + 1]
            if _less(tokens, hpos[s], hend[s], hpos[r], hend[r]):
                c += 1
                r = s
        t = heap[i]
        if _less(tokens, hpos[r], hend[r], hpos[t], hend[t]):
            heap[c] = t
            heap[i] = r
            i = c
        else:
            return


@numba.njit(cache=True, nogil=True)
def _load_head(starts, bufs, buf_pos, r, hpos, hend):
    p = _get5(bufs[r], buf_pos[r])
    buf_pos[r] += 1
    hpos[r] = p
    hend[r] = starts[np.searchsorted(starts, p, side="right")]


@numba.njit(cache=True, nogil=True)
def _merge_init(tokens, starts, bufs, buf_len, buf_pos, heap, state, hpos, hend):
    size = 0
    for r in range(bufs.shape[0]):
        if buf_pos[r] < buf_len[r]:
            _load_head(starts, bufs, buf_pos, r, hpos, hend)
            heap[size] = r
            size += 1
    state[0] = size
    for i in range(size // 2 - 1, -1, -1):
        _sift(tokens, heap, size, hpos, hend, i)


@numba.njit(cache=True, nogil=True)
def _merge(tokens, starts, bufs, buf_len, buf_pos, eof, heap, state, hpos, hend, pending, out):
    """Merge into ``out`` (5-byte rows) until it is full (returns (rows, -1)), the runs are done (rows, -2), or
    run r's buffer must be refilled first (rows, r; call again with pending = r after refilling)."""
    size = state[0]
    cap = out.shape[0] // 5
    k = 0
    if pending >= 0:  # the top's run was refilled (or found empty): put its next head in place
        r = heap[0]
        if buf_pos[r] < buf_len[r]:
            _load_head(starts, bufs, buf_pos, r, hpos, hend)
        else:
            size -= 1
            heap[0] = heap[size]
        _sift(tokens, heap, size, hpos, hend, 0)
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
        if buf_pos[r] < buf_len[r]:
            _load_head(starts, bufs, buf_pos, r, hpos, hend)
            _sift(tokens, heap, size, hpos, hend, 0)
        elif eof[r]:
            size -= 1
            heap[0] = heap[size]
            _sift(tokens, heap, size, hpos, hend, 0)
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
               rss_limit: int) -> Iterator[np.ndarray]:
    """Chunks (5-byte rows) of the merge of the sorted runs ``runs`` (files of 5-byte shard-local positions)."""
    F = len(runs)
    bufs = np.empty((F, 5 * buffer_rows), dtype=np.uint8)
    buf_len = np.zeros(F, dtype=np.int64)
    buf_pos = np.zeros(F, dtype=np.int64)
    eof = np.zeros(F, dtype=np.bool_)
    heap = np.zeros(F, dtype=np.int64)
    state = np.zeros(1, dtype=np.int64)
    hpos = np.zeros(F, dtype=np.int64)
    hend = np.zeros(F, dtype=np.int64)
    out = np.empty(5 * buffer_rows, dtype=np.uint8)
    files: list[IO[bytes]] = []
    try:
        for path in runs:
            files.append(open(path, "rb"))

        def refill(r: int) -> None:
            got = files[r].readinto(memoryview(bufs[r]))
            if got % 5:
                raise FormatError(f"{runs[r]}: {got:,} bytes read, not a whole number of 5-byte pointers; "
                                  f"delete the folder's build/ files and build again")
            buf_len[r], buf_pos[r] = got // 5, 0
            eof[r] = got < bufs.shape[1]

        for r in range(F):
            refill(r)
        _merge_init(tokens, starts, bufs, buf_len, buf_pos, heap, state, hpos, hend)
        pending = -1
        while True:
            k, code = _merge(tokens, starts, bufs, buf_len, buf_pos, eof, heap, state, hpos, hend, pending, out)
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


def write_shard(path: Path, sample_path: Path, store: TokenStore, spec: ShardSpec, chunks: Iterator[np.ndarray],
                every: int, width: int, block_tokens: int) -> dict[str, str]:
    """Write a format-3 shard from its sorted 5-byte rows, then its sample; return the files' digests."""
    n = spec.n_tokens
    starts = item_starts(store, spec)
    picks: list[np.ndarray] = []
    h = hashlib.sha256()
    rows = 0
    with atomic_open(path, "wb") as f:
        for c in chunks:
            k = c.size // 5
            first = (-rows) % every  # the first row of this chunk that is a multiple of every
            if first < k:
                picks.append(decode5(c.reshape(-1, 5)[first::every].reshape(-1)))
            f.write(memoryview(c))
            h.update(memoryview(c))
            rows += k
        if rows != n:
            raise FormatError(f"{path}: the merge produced {rows:,} rows for a shard of {n:,} tokens; delete the "
                              f"index folder's build/ files and build again")
        bits = boundary_bitmap(starts, n)
        f.write(memoryview(bits))
        h.update(memoryview(bits))
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


def chunks_of(raw: np.ndarray, rows: int) -> Iterator[np.ndarray]:
    """A part's rows in chunks (for the writers)."""
    for s in range(0, raw.size, 5 * rows):
        yield raw[s : s + 5 * rows]


def remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
