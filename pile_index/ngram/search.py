"""The search kernels of the n-gram index: one shard's suffix-array rows that start with a pattern.

A shard is two arrays: ``tokens`` (the store's tokens the shard indexes, memmapped) and ``words`` (its
``shard-NNNNN.sa`` file, memmapped: the suffix pointers, then the item-boundary bitmap). Two pointer widths
exist (:mod:`.layout`): ``words`` of dtype uint32 is format 2 (4-byte pointers, bit ``q`` of word
``n + q // 32``), uint8 is format 3 (5-byte little-endian pointers, bit ``q`` of byte ``5 n + q // 8``). The
kernels read pointers only through :func:`sa_at` and the bitmap only through :func:`_starts_between`; numba
compiles one version per dtype and folds the width test away.

Stable entry points (called by other modules of this package; keep their call shapes):

- ``_range(tokens, words, pat) -> (lo, hi)``: rows ``[lo, hi)`` of the shard whose suffix starts with ``pat``
  (int64, 1-D), or ``(BAD_POINTER | UNSORTED, row)`` when the file is damaged at ``row`` (``lo < 0``);
- ``_range_sampled(tokens, words, stoks, slen, every, pat) -> (lo, hi)``: the same answer, with the top
  levels of both binary searches done on the in-RAM sample (``stoks[j]`` = the first tokens of row
  ``j * every``, ``slen[j]`` how many of them lie inside the row's item), so a cold query reads the disk only
  inside one window of ``every`` rows on each side; an empty sample searches the whole shard;
- ``sa_at(words, n, row) -> int64``: the suffix pointer of ``row`` (``n = len(tokens)``), either width;
- ``_cmp(tokens, words, p, pat)``: the suffix at token position ``p`` (cut at its item's end) against pat.
- the pieces of ``_range_sampled`` that the batch count (:mod:`.batch`) runs interleaved, so that both answer
  alike: ``_sample_cmp`` and ``_window_of`` (the sample window), ``_lower_step`` (one step of the first
  search), ``_finish_window`` / ``_finish_known`` (the end of the match and the damage checks around it).

Semantics (``docs/ORDER.md``, "n-grams"): a suffix ends at the end of its item, so an n-gram never spans
two items.
"""

from __future__ import annotations

import numba
import numpy as np

from ..prefetch import prefetch

BAD_POINTER = -1  # first value a query kernel returns when a suffix-array row holds no token position (< n)
UNSORTED = -2  # ... when the rows around the answer are out of order, or a row it returns does not hold pat


@numba.njit(cache=True, nogil=True, inline="always")
def sa_at(words, n, row):
    """The suffix pointer of ``row``: words[row] (uint32 words), or the 5 bytes at 5 * row (uint8 words)."""
    if words.itemsize == 1:
        b = 5 * row
        return (np.int64(words[b]) | (np.int64(words[b + 1]) << 8) | (np.int64(words[b + 2]) << 16)
                | (np.int64(words[b + 3]) << 24) | (np.int64(words[b + 4]) << 32))
    return np.int64(words[row])


@numba.njit(cache=True, nogil=True, inline="always")
def _starts_between(words, n, a, b):
    """Whether an item starts at any shard-local position in [a, b] (a <= b), bit ``q`` of the bitmap
    (1: an item starts at q, or the shard ends there), read a bitmap word (8 or 32 bits) at a time."""
    if words.itemsize == 1:
        bits, base = 8, 5 * n
    else:
        bits, base = 32, n
    wa, wb = a // bits, b // bits
    for w in range(wa, wb + 1):
        x = np.int64(words[base + w])
        if w == wa:
            x >>= a - wa * bits
            x <<= a - wa * bits
        if w == wb:
            x &= (np.int64(2) << (b - wb * bits)) - 1
        if x != 0:
            return True
    return False


@numba.njit(cache=True, nogil=True, inline="always")
def _cmp(tokens, words, p, pat):
    """Compare the suffix at p (cut at its item's end) with pat: -1 if smaller, 0 if pat is a prefix, 1 if larger.

    Tokens are compared first, ignoring item ends; the boundary bitmap is read only when the suffix looks
    >= pat (a suffix cut short is smaller, so a 'smaller' verdict never needs it): half the bitmap reads."""
    n = tokens.shape[0]
    m = pat.shape[0]
    k = 0
    res = 0
    while k < m:
        q = p + k
        if q >= n:
            return -1
        t = np.int64(tokens[q])
        if t != pat[k]:
            if t < pat[k]:
                return -1
            res = 1
            break
        k += 1
    last = p + (k if k < m else m - 1)  # tokens p+1..last were read: none may start a new item
    if last > p and _starts_between(words, n, p + 1, last):
        return -1
    return res


@numba.njit(cache=True, nogil=True, inline="always")
def _sample_cmp(stoks, slen, j, pat, m):
    """Sample row j against pat[:m] (m <= the sample's width): -1 smaller, 0 pat[:m] is a prefix, 1 larger."""
    ln = np.int64(slen[j])
    for k in range(m):
        if k >= ln:
            return -1  # the suffix ends (its item ends) before pat[:m] does
        t = np.int64(stoks[j, k])
        if t != pat[k]:
            return -1 if t < pat[k] else 1
    return 0


@numba.njit(cache=True, nogil=True)
def _window(stoks, slen, every, n, pat):
    """(wlo, mlo, mhi, whi) from the sample alone (no disk read): no row outside [wlo, whi) starts with pat,
    and when the sample holds all of pat, rows [mlo, mhi) are known to (else mlo = whi, mhi = wlo).

    The sample compares exactly against pat' = pat[:width]; rows up to the last sample row < pat' are < pat,
    rows from the first sample row > pat' on are > pat; sample rows that start with pat' start with pat when
    pat' is pat, and so does every row between two of them."""
    ns = slen.shape[0]
    if ns == 0:
        return np.int64(0), np.int64(n), np.int64(0), np.int64(n)
    m = min(pat.shape[0], stoks.shape[1])
    lo, hi = 0, ns
    while lo < hi:
        mid = (lo + hi) >> 1
        if _sample_cmp(stoks, slen, mid, pat, m) < 0:
            lo = mid + 1
        else:
            hi = mid
    a = lo
    hi = ns
    while lo < hi:
        mid = (lo + hi) >> 1
        if _sample_cmp(stoks, slen, mid, pat, m) <= 0:
            lo = mid + 1
        else:
            hi = mid
    return _window_of(ns, every, n, a, lo, m == pat.shape[0])


@numba.njit(cache=True, nogil=True, inline="always")
def _window_of(ns, every, n, a, b, whole):
    """:func:`_window`'s answer from the sample rows: ``a`` the first of the ``ns`` that is >= pat', ``b`` the
    first that is > pat' (``whole``: pat' is all of pat)."""
    wlo = np.int64((a - 1) * every + 1) if a > 0 else np.int64(0)
    whi = min(np.int64(b * every) if b < ns else np.int64(n), np.int64(n))
    if whole and b > a:
        return wlo, np.int64(a * every), np.int64((b - 1) * every + 1), whi
    return wlo, whi, wlo, whi


@numba.njit(cache=True, nogil=True, inline="always")
def _probe(tokens, words, pat, row):
    """(c, 0): the suffix of ``row`` against pat, as :func:`_cmp`; (0, BAD_POINTER) when the row holds no token
    position (every pointer is checked before it is followed)."""
    n = tokens.shape[0]
    p = sa_at(words, n, row)
    if p >= n:
        return 0, BAD_POINTER
    return _cmp(tokens, words, p, pat), 0


@numba.njit(cache=True, nogil=True, inline="always")
def _lower_step(c, mid, lo, hi, upper, known):
    """One step of the search for the first row >= pat, row ``mid`` comparing ``c``: (lo, hi, upper, code).
    ``upper`` is the first row seen > pat; ``known`` (rows from hi on are known to match): a row > pat is
    out of order (code UNSORTED)."""
    if c < 0:
        return mid + 1, hi, upper, 0
    if c > 0:
        if known:
            return lo, hi, upper, UNSORTED
        upper = mid
    return lo, mid, upper, 0


@numba.njit(cache=True, nogil=True, inline="always")
def _lower(tokens, words, pat, lo, hi, known):
    """(start, upper, 0): ``start`` the first row >= pat in [lo, hi), ``upper`` the first row seen > pat (hi if
    none); (row, 0, code) on damage. ``known``: rows from hi on start with pat (see :func:`_lower_step`)."""
    upper = hi
    while lo < hi:
        mid = (lo + hi) >> 1
        c, code = _probe(tokens, words, pat, mid)
        if code == 0:
            lo, hi, upper, code = _lower_step(c, mid, lo, hi, upper, known)
        if code != 0:
            return mid, upper, code
    return lo, upper, 0


@numba.njit(cache=True, nogil=True, inline="always")
def _end_of_match(tokens, words, pat, lo, hi):
    """(row, 0): the first row > pat in [lo, hi), the rows before it there matching pat; (row, code) when a
    probed row holds no token position or sorts before pat (damage)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        c, code = _probe(tokens, words, pat, mid)
        if code != 0:
            return mid, code
        if c < 0:
            return mid, UNSORTED
        if c == 0:
            lo = mid + 1
        else:
            hi = mid
    return lo, 0


@numba.njit(cache=True, nogil=True, inline="always")
def _misplaced(tokens, words, pat, row, after):
    """0 when ``row`` sorts after pat (``after``) or before it (not ``after``); else the damage code."""
    c, code = _probe(tokens, words, pat, row)
    if code != 0:
        return code
    if (c <= 0) if after else (c >= 0):
        return UNSORTED
    return 0


@numba.njit(cache=True, nogil=True, inline="always")
def _finish_window(tokens, words, pat, start, upper):
    """:func:`_range_window` after its first search: ``start`` the first row >= pat, ``upper`` the first row
    seen > pat (every row from it on is). Finds the end of the match and checks the rows around the answer."""
    n = tokens.shape[0]
    end = start
    if start < upper:  # row start matches (the search's last step found it >= pat and not > pat)
        # Gallop from start (most n-grams of a few tokens or more are rare: the end is usually at start + 1
        # or close, and neighbouring rows share cache lines), then binary-search the last gap.
        step = 1
        prev = start  # rows <= prev are known to match
        while True:
            probe = start + step
            if probe >= upper:
                hi = upper
                break
            c, code = _probe(tokens, words, pat, probe)
            if code != 0:
                return code, probe
            if c < 0:  # after a match, nothing sorts before pat
                return UNSORTED, probe
            if c > 0:
                hi = probe
                break
            prev = probe
            step <<= 1
        end, code = _end_of_match(tokens, words, pat, prev + 1, hi)  # first row > pat
        if code != 0:
            return code, end
    # Rows start - 1 and end were probed (or lie outside the window); one row further out on each side was not.
    if start >= 2:
        code = _misplaced(tokens, words, pat, start - 2, False)
        if code != 0:
            return code, start - 2
    if end + 1 < n:
        code = _misplaced(tokens, words, pat, end + 1, True)
        if code != 0:
            return code, end + 1
    return start, end


@numba.njit(cache=True, nogil=True, inline="always")
def _finish_known(tokens, words, pat, start, mhi, whi):
    """:func:`_range_known` after its first search (``start``): the end of the match in [mhi, whi], and the
    rows around the answer checked."""
    n = tokens.shape[0]
    end, code = _end_of_match(tokens, words, pat, mhi, whi)
    if code != 0:
        return code, end
    for row in (start - 2, start - 1):  # the rows before the answer sort before it
        if row >= 0:
            code = _misplaced(tokens, words, pat, row, False)
            if code != 0:
                return code, row
    for row in (end, end + 1):  # the rows after it sort after it
        if row < n:
            code = _misplaced(tokens, words, pat, row, True)
            if code != 0:
                return code, row
    return start, end


@numba.njit(cache=True, nogil=True)
def _range_window(tokens, words, pat, wlo, whi):
    """[lo, hi): the rows in [wlo, whi) whose suffix starts with pat, all other rows being known not to.

    Damage checks, on the rows the search touches: every pointer is checked to be < n before it is followed
    (else (BAD_POINTER, row)); rows probed after the first match must not sort before pat, and the rows two
    before and one after the answer must sort before and after it (else (UNSORTED, row)). A damaged row that
    sends the search the wrong way leaves the answer next to it, so these two extra comparisons (a few
    percent of a count) catch it unless it sits right at the true edge of the answer."""
    start, upper, code = _lower(tokens, words, pat, wlo, whi, False)
    if code != 0:
        return code, start
    return _finish_window(tokens, words, pat, start, upper)


@numba.njit(cache=True, nogil=True)
def _range(tokens, words, pat):
    """[lo, hi): the suffix-array rows whose suffix starts with pat, or (BAD_POINTER | UNSORTED, row)."""
    return _range_window(tokens, words, pat, np.int64(0), np.int64(tokens.shape[0]))


@numba.njit(cache=True, nogil=True)
def _range_known(tokens, words, pat, wlo, mlo, mhi, whi):
    """As :func:`_range_window`, rows [mlo, mhi) (mlo < mhi) being known to start with pat: the first row >= pat
    is searched in [wlo, mlo] (a row > pat there is out of order), the first row > pat in [mhi, whi], so each
    search stays inside one sample gap."""
    start, _, code = _lower(tokens, words, pat, wlo, mlo, True)
    if code != 0:
        return code, start
    return _finish_known(tokens, words, pat, start, mhi, whi)


@numba.njit(cache=True, nogil=True)
def _range_sampled(tokens, words, stoks, slen, every, pat):
    """As :func:`_range`, the top levels of the search done on the in-RAM sample."""
    wlo, mlo, mhi, whi = _window(stoks, slen, every, tokens.shape[0], pat)
    if mlo < mhi:
        return _range_known(tokens, words, pat, wlo, mlo, mhi, whi)
    return _range_window(tokens, words, pat, wlo, whi)


@numba.njit(cache=True, nogil=True)
def _positions(tokens, words, pat, lo, hi, skip, limit, base):
    """Positions of rows [lo + skip, ...) (at most ``limit``; < 0: all) plus ``base``, each checked to hold pat."""
    n = tokens.shape[0]
    a = min(lo + skip, hi)
    b = hi if limit < 0 else min(hi, a + limit)
    out = np.empty(b - a, dtype=np.int64)
    for i in range(a, b):
        p = sa_at(words, n, i)
        if p >= n:
            return BAD_POINTER, i, np.empty(0, dtype=np.int64)
        if _cmp(tokens, words, p, pat) != 0:
            return UNSORTED, i, np.empty(0, dtype=np.int64)
        out[i - a] = p + base
    return lo, hi, out


@numba.njit(cache=True, nogil=True)
def _range_positions(tokens, words, pat, skip, limit, base):
    """One shard's (lo, hi) and its positions [skip, skip + limit) (limit < 0: all), plus ``base``.

    Each position returned is checked to hold pat (inside one item, as the bitmap says); a row that does not
    gives (UNSORTED, row, empty), a pointer >= n (BAD_POINTER, row, empty)."""
    lo, hi = _range(tokens, words, pat)
    if lo < 0:
        return lo, hi, np.empty(0, dtype=np.int64)
    return _positions(tokens, words, pat, lo, hi, skip, limit, base)


@numba.njit(cache=True, nogil=True)
def _range_positions_sampled(tokens, words, stoks, slen, every, pat, skip, limit, base):
    """As :func:`_range_positions`, through the sample."""
    lo, hi = _range_sampled(tokens, words, stoks, slen, every, pat)
    if lo < 0:
        return lo, hi, np.empty(0, dtype=np.int64)
    return _positions(tokens, words, pat, lo, hi, skip, limit, base)


# -- the batch count (:mod:`.batch`): many queries searched in lockstep

GROUP = 32  # queries searched in lockstep: enough misses in flight to cover a memory latency, few enough for L1


@numba.njit(cache=True, nogil=True, inline="always")
def _prefetch_row(words, n, row):
    """Prefetch the suffix pointer of ``row`` (5 bytes may straddle two lines)."""
    if words.itemsize == 1:
        prefetch(words, 5 * row)
        prefetch(words, 5 * row + 4)
    else:
        prefetch(words, row)


@numba.njit(cache=True, nogil=True, inline="always")
def _prefetch_suffix(tokens, words, n, p, m):
    """Prefetch what comparing the suffix at ``p`` with an m-token pattern reads: its tokens (the first 32)
    and the bitmap byte of the positions after it."""
    prefetch(tokens, p)
    prefetch(tokens, min(p + min(m, 32) - 1, n - 1))
    if words.itemsize == 1:
        prefetch(words, 5 * n + ((p + 1) >> 3))
    else:
        prefetch(words, n + ((p + 1) >> 5))


@numba.njit(cache=True, nogil=True, inline="always")
def _big_endian(x, lane_bits):
    """A little-endian word of 64 // lane_bits tokens with its lanes reversed: the first token most significant,
    so that words compare as their tokens do lexicographically."""
    x = (x >> np.uint64(32)) | (x << np.uint64(32))
    if lane_bits <= 16:
        x = ((x >> np.uint64(16)) & np.uint64(0x0000FFFF0000FFFF)) | ((x & np.uint64(0x0000FFFF0000FFFF)) << np.uint64(16))
    if lane_bits == 8:
        x = ((x >> np.uint64(8)) & np.uint64(0x00FF00FF00FF00FF)) | ((x & np.uint64(0x00FF00FF00FF00FF)) << np.uint64(8))
    return x


@numba.njit(cache=True, nogil=True, inline="always")
def _row_cmp(stoks, slen, skeys, masks, lane_bits, lanes, j, pat, qk, m):
    """Sample row j against pat[:m], exactly as :func:`_sample_cmp`: with ``lane_bits`` (> 0) on the
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


@numba.njit(cache=True, nogil=True, error_model="numpy")
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
                    prefetch(skeys, (base[i] + nxt) * nw)
                else:
                    prefetch(stoks, (base[i] + nxt) * width)
                prefetch(slen, base[i] + nxt)
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
