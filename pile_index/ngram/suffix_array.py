"""Suffix arrays by SA-IS (Nong, Zhang & Chan 2009, "Linear suffix array construction by almost pure
induced-sorting"), in numba: linear time, integer alphabets, one recursion level per Python call. A reduced
problem whose names are nearly all distinct (``DOUBLING_UNIQUE``; text's first level: ~96%) is sorted by
prefix doubling instead (:func:`_doubling_sa`: one counting sort, then a round or two over the few ties;
a 25M-token part 3.4-4.4 s -> 2.7-2.8 s).

The input ``T`` ends with a unique smallest sentinel 0. Memory: each suffix's type (S or L) is packed into
``T``'s sign while it is sorted (:func:`_classify`), the LMS names live in the free half of ``SA`` (at most
``n / 2`` LMS positions), ``SA`` is freed while the reduced problem is solved and the LMS positions are
recomputed into its tail afterwards; :func:`suffix_array_remade` also frees ``T`` during the recursion and
makes it again before ``SA``. Peak: ``T`` and ``SA`` (int32) and the reduced string (4 bytes per LMS position,
~0.35 of them a symbol in text): ~9.4 bytes per symbol measured (~19 with separate names and LMS arrays,
~10.6 with a type byte per symbol). Written from the paper; SA-IS as in Yuta Mori's sais-lite, nothing copied.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from ..prefetch import prefetch

_INT32_MAX_SYMBOLS = (1 << 31) - 1


@numba.njit(cache=True, nogil=True, inline="always")
def _sym(t):
    """The symbol of a packed entry of ``T``: S-type suffixes hold ``~symbol`` (negative), L-type the symbol."""
    return ~t if t < 0 else t


@numba.njit(cache=True, nogil=True, inline="always")
def _is_lms(T, i):
    """Suffix i (> 0) is left-most S-type: S-type after an L-type."""
    return T[i] < 0 and T[i - 1] >= 0


@numba.njit(cache=True, nogil=True)
def _classify(T):
    """Pack each suffix's type into ``T``: an S-type suffix (smaller than suffix i+1) becomes ``~T[i]``, an
    L-type one keeps ``T[i]``; T[-1], the sentinel, is S-type. One array instead of T plus a type byte: an
    induce step reads one cache line, not two."""
    n = T.shape[0]
    T[n - 1] = ~T[n - 1]
    for i in range(n - 2, -1, -1):
        nxt = T[i + 1]
        c = T[i]
        if c < _sym(nxt) or (c == _sym(nxt) and nxt < 0):
            T[i] = ~c


@numba.njit(cache=True, nogil=True)
def _unclassify(T):
    """Undo :func:`_classify`: the plain symbols again."""
    for i in range(T.shape[0]):
        T[i] = _sym(T[i])


@numba.njit(cache=True, nogil=True)
def _counts(T, K):
    c = np.zeros(K, dtype=np.int64)
    for i in range(T.shape[0]):
        c[_sym(T[i])] += 1
    return c


@numba.njit(cache=True, nogil=True)
def _buckets(counts, bkt, end):
    s = 0
    for c in range(counts.shape[0]):
        s += counts[c]
        bkt[c] = s if end else s - counts[c]


PREFETCH = 32  # rows ahead whose packed symbol is fetched during an induce scan (its reads are random)


@numba.njit(cache=True, nogil=True, inline="always")
def _prefetch_predecessor(T, SA, i):
    """Prefetch the packed symbol of the suffix before SA[i] (what an induce scan reads when it reaches i)."""
    q = SA[i] - 1
    if q >= 0:
        prefetch(T, q)


@numba.njit(cache=True, nogil=True)
def _induce(T, SA, counts, bkt):
    """Induce L-type suffixes left to right from the seeded SA, then S-type suffixes right to left."""
    n = T.shape[0]
    _buckets(counts, bkt, False)
    for i in range(n):
        if i + PREFETCH < n:
            _prefetch_predecessor(T, SA, i + PREFETCH)
        j = SA[i] - 1
        if j >= 0:
            c = T[j]
            if c >= 0:  # L-type
                SA[bkt[c]] = j
                bkt[c] += 1
    _buckets(counts, bkt, True)
    for i in range(n - 1, -1, -1):
        if i >= PREFETCH:
            _prefetch_predecessor(T, SA, i - PREFETCH)
        j = SA[i] - 1
        if j >= 0:
            c = T[j]
            if c < 0:  # S-type
                c = ~c
                bkt[c] -= 1
                SA[bkt[c]] = j


@numba.njit(cache=True, nogil=True)
def _sort_lms_substrings(T, SA, counts):
    """Stage 1: seed LMS positions at bucket ends, induce; return the LMS positions in sorted order."""
    n = T.shape[0]
    bkt = np.empty(counts.shape[0], dtype=np.int64)
    SA[:] = -1
    _buckets(counts, bkt, True)
    for i in range(1, n):
        if _is_lms(T, i):
            c = ~T[i]
            bkt[c] -= 1
            SA[bkt[c]] = i
    _induce(T, SA, counts, bkt)
    n1 = 0
    for i in range(n):
        j = SA[i]
        if j > 0 and _is_lms(T, j):
            SA[n1] = j
            n1 += 1
    return n1


@numba.njit(cache=True, nogil=True)
def _name_lms(T, SA, n1):
    """Name the sorted LMS substrings in SA[:n1] (equal substrings share a name), the names kept in
    SA[n1 + pos // 2] (n1 <= n // 2, so they fit); return (reduced string in text order, number of names).
    Two packed entries are equal exactly when their symbols and types are."""
    n = T.shape[0]
    for i in range(n1, n):
        SA[i] = -1
    name = -1
    prev = -1
    for i in range(n1):
        if i + PREFETCH < n1:
            prefetch(T, SA[i + PREFETCH])
        pos = SA[i]
        diff = False
        for d in range(n):
            if prev == -1 or T[pos + d] != T[prev + d]:
                diff = True
                break
            if d > 0 and (_is_lms(T, pos + d) or _is_lms(T, prev + d)):
                break
        if diff:
            name += 1
            prev = pos
        SA[n1 + pos // 2] = name
    s1 = np.empty(n1, dtype=SA.dtype)
    k = 0
    for i in range(1, n):
        if _is_lms(T, i):
            s1[k] = SA[n1 + i // 2]
            k += 1
    return s1, name + 1


@numba.njit(cache=True, nogil=True)
def _direct_sa(s1, out):
    for i in range(s1.shape[0]):
        out[s1[i]] = i


@numba.njit(cache=True, nogil=True)
def _final_induce(T, SA, counts, n1):
    """Stage 3: SA[:n1] holds the reduced suffix array; map it to LMS positions (listed in SA's tail), seed
    them in sorted order at bucket ends (from the last: each lands at or after its slot), induce."""
    n = T.shape[0]
    k = n - n1
    for i in range(1, n):
        if _is_lms(T, i):
            SA[k] = i
            k += 1
    for i in range(n1):
        SA[i] = SA[n - n1 + SA[i]]
    for i in range(n1, n):
        SA[i] = -1
    bkt = np.empty(counts.shape[0], dtype=np.int64)
    _buckets(counts, bkt, True)
    for i in range(n1 - 1, -1, -1):
        j = SA[i]
        SA[i] = -1
        c = ~T[j]
        bkt[c] -= 1
        SA[bkt[c]] = j
    _induce(T, SA, counts, bkt)


DOUBLING_UNIQUE = 0.75  # share of distinct names above which the reduced problem is sorted by prefix doubling


@numba.njit(cache=True, nogil=True)
def _doubling_sa(s, K, SA):
    """SA = the suffix array of ``s`` (symbols in [0, K), ending with a unique smallest one) by prefix doubling
    over groups (Manber and Myers; only groups not yet single are refined, as in Larsson and Sadakane).

    For a reduced problem whose names are nearly all distinct (text: ~96%), one counting sort leaves few
    groups to refine, and a round or two settles them; SA-IS would pay two induce scans with a bucket per
    name. Each round sorts every open group by the rank h symbols on (taken before any group of the round
    is split), so ranks after the round are those of the first 2h symbols."""
    n = s.shape[0]
    cnt = np.zeros(K + 1, dtype=np.int64)
    for i in range(n):
        cnt[s[i] + 1] += 1
    for c in range(K):
        cnt[c + 1] += cnt[c]
    grp = np.empty(n, dtype=SA.dtype)  # the SA index where a suffix's group starts: its rank so far
    pos = cnt[:K].copy()
    for i in range(n):
        c = s[i]
        SA[pos[c]] = i
        pos[c] += 1
        grp[i] = cnt[c]
    # open groups: [ga[g], gb[g]) of SA with more than one suffix
    m = 0
    for c in range(K):
        if cnt[c + 1] - cnt[c] > 1:
            m += 1
    ga = np.empty(m, dtype=np.int64)
    gb = np.empty(m, dtype=np.int64)
    m = 0
    for c in range(K):
        if cnt[c + 1] - cnt[c] > 1:
            ga[m] = cnt[c]
            gb[m] = cnt[c + 1]
            m += 1
    key = np.empty(n, dtype=SA.dtype)
    h = 1
    while m > 0:
        cap = 0  # a group of g suffixes splits into at most g // 2 open ones
        for g in range(m):  # the keys of the round, before any rank changes
            cap += (gb[g] - ga[g]) // 2
            for j in range(ga[g], gb[g]):
                q = SA[j] + h
                key[j] = grp[q] if q < n else -1
        na = np.empty(cap, dtype=np.int64)  # the next round's open groups
        nb = np.empty(cap, dtype=np.int64)
        m2 = 0
        for g in range(m):
            a, b = ga[g], gb[g]
            order = np.argsort(key[a:b], kind="mergesort")
            members = SA[a:b][order]
            keys = key[a:b][order]
            start = a
            for j in range(b - a):
                SA[a + j] = members[j]
                key[a + j] = keys[j]
            for j in range(a, b + 1):
                if j == b or (j > start and key[j] != key[start]):
                    for t in range(start, j):
                        grp[SA[t]] = start
                    if j - start > 1:
                        na[m2] = start
                        nb[m2] = j
                        m2 += 1
                    start = j
        ga, gb, m = na, nb, m2
        h *= 2


def _sais(T: np.ndarray | None, K: int, remake: Callable[[], np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """(SA, T): SA-IS of ``T``, or of ``remake()`` (then made twice: freed during the recursion). ``T``
    holds its suffix types while it is sorted (:func:`_classify`) and its plain symbols again on return."""
    if T is None:
        T = remake()
    n = int(T.shape[0])
    idx = np.int32 if n < _INT32_MAX_SYMBOLS else np.int64
    if n == 1:
        return np.zeros(1, dtype=idx), T
    _classify(T)
    counts = _counts(T, K)
    SA = np.empty(n, dtype=idx)
    n1 = _sort_lms_substrings(T, SA, counts)
    s1, n_names = _name_lms(T, SA, n1)
    del SA  # rebuilt after the recursion: the reduced problem is solved in its place
    if remake is not None:
        del T
    if n_names < DOUBLING_UNIQUE * n1:
        sa1 = _sais(s1, n_names, None)[0]
    elif n_names < n1:
        sa1 = np.empty(n1, dtype=idx)
        _doubling_sa(s1, n_names, sa1)
    else:
        sa1 = np.empty(n1, dtype=idx)
        _direct_sa(s1, sa1)
    del s1
    if remake is not None:  # before SA: T's making (a read of the tokens) and SA never coexist
        T = remake()
        _classify(T)
    SA = np.empty(n, dtype=idx)
    SA[:n1] = sa1
    del sa1
    _final_induce(T, SA, counts, n1)
    _unclassify(T)
    return SA, T


def suffix_array(T: np.ndarray, K: int) -> np.ndarray:
    """The suffix array of ``T`` (integers in [0, K), ending with a unique smallest sentinel 0), by SA-IS.

    Returns int32 positions when ``len(T)`` fits, else int64.
    """
    return _sais(T, K, None)[0]


def suffix_array_remade(make: Callable[[], np.ndarray], K: int) -> tuple[np.ndarray, np.ndarray]:
    """(SA, T) of ``T = make()``, as :func:`suffix_array`, with ``T`` freed while the reduced problem is sorted
    and made again after (two calls of ``make``; the caller must keep no reference to the first ``T``)."""
    return _sais(None, K, make)
