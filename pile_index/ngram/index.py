"""The n-gram index: exact count and locate of any token sequence in a token store, by suffix array.

Semantics (``docs/ORDER.md``, "n-grams"): occurrences are counted *within items* — an n-gram spanning two
items never counts, because adjacent items were never adjacent in training — and overlapping occurrences
count, as in tokengrams and infini-gram.

Construction. A store is cut into shards on item boundaries (so no n-gram crosses a shard) and within one
``.bin`` part (so a shard's tokens are one contiguous memmap slice). For each shard we build the suffix
array of the string ``T = (t_0+2 .. t_a+2) 1 (t_b+2 ..) 1 ... 1 0``: every item ends with the separator 1,
the string with the unique sentinel 0. Since no query symbol is <= 1, a query matches a suffix of T only
inside one item, and the suffixes that start with a query are still one contiguous block of the sorted
order. Sorting uses SA-IS (Nong, Zhang & Chan 2009, "Linear suffix array construction by almost pure
induced-sorting"), written here with numba: linear time; peak RSS measured at ~22 bytes per token (T and
SA int32, a type byte, LMS names and the reduced problem, the mapped tokens and the output file). The separator and sentinel suffixes sort first and
are dropped; the rest are mapped back to shard-local token positions.

On disk (``PREFIX.ngram/``), one file per shard, ``shard-NNNNN.sa``: little-endian uint32 words, first the
suffix array (``n`` shard-local token positions; shards hold at most 2**32 - 1 tokens, so 4 bytes suffice
where infini-gram's unsharded-size pointers take 5), then a bitmap of item boundaries (bit p of word
``n + p // 32`` set when an item starts or ends at local position p; 1/8 byte per token). The tokens
themselves are the store's ``.bin``, memmapped, so the index costs 4.125 bytes per token beyond the
store's own 2: 6.125 in all (infini-gram 7, tokengrams 10). One array per shard keeps a query's numba call
to three arguments (tokens, index words, pattern): dispatch is a large part of a microsecond-scale query.
``manifest.json`` is written last and is the completion marker: it records the store's fingerprint and the
shard plan, and an index whose fingerprint differs from the store's is refused. Each shard also has a
``shard-NNNNN.json`` marker, so an interrupted build resumes at the first unfinished shard.

Queries binary-search each shard's suffix array over the memmapped tokens (a suffix ends at the first
boundary bit after its start), sum the exact counts over shards, and merge positions shard by shard.

References: infini-gram (Liu et al. 2024, 5-byte suffix pointers over 2-byte tokens, sharded); tokengrams
(EleutherAI, u64 suffix tables); SA-IS as in Yuta Mori's sais-lite. Nothing is copied from them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np

from ..atomic import atomic_path, write_bytes
from ..digests import sampled_digest, sha256_array
from ..errors import ConfigError, FormatError, LimitError, NotFoundError, QueryError
from ..files import ngram_dir, ngram_manifest_path, ngram_shard_path
from ..sidecar import check, optional, read_json
from ..format.store import TokenStore

log = logging.getLogger(__package__)  # one logger per package: log lines name the concept

FORMAT_VERSION = 2
DEFAULT_SHARD_TOKENS = 1 << 28  # 268M tokens: ~5.8 GB peak RSS while building one shard (measured ~22 B/token)
_INT32_MAX_SYMBOLS = (1 << 31) - 1
MAX_SHARD_TOKENS = (1 << 32) - 1  # uint32 suffix pointers; items are < 2**31 tokens (int32 sizes), so one fits


def index_dir(prefix: str | os.PathLike) -> Path:
    """Where the n-gram index of the store whose first prefix is ``prefix`` lives: ``PREFIX.ngram/``."""
    return ngram_dir(prefix)


# ----------------------------------------------------------------------------------------------------------
# SA-IS (numba kernels: arrays in, arrays out; the recursion is driven from Python, one level per call)
# ----------------------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _classify(T, stype):
    """stype[i] = 1 if suffix i is S-type (smaller than suffix i+1), 0 if L-type; T[-1] is the sentinel."""
    n = T.shape[0]
    stype[n - 1] = 1
    for i in range(n - 2, -1, -1):
        if T[i] < T[i + 1] or (T[i] == T[i + 1] and stype[i + 1] == 1):
            stype[i] = 1
        else:
            stype[i] = 0


@numba.njit(cache=True, nogil=True)
def _counts(T, K):
    c = np.zeros(K, dtype=np.int64)
    for i in range(T.shape[0]):
        c[T[i]] += 1
    return c


@numba.njit(cache=True, nogil=True)
def _buckets(counts, bkt, end):
    s = 0
    for c in range(counts.shape[0]):
        s += counts[c]
        bkt[c] = s if end else s - counts[c]


@numba.njit(cache=True, nogil=True)
def _induce(T, SA, stype, counts, bkt):
    """Induce L-type suffixes left to right from the seeded SA, then S-type suffixes right to left."""
    n = T.shape[0]
    _buckets(counts, bkt, False)
    for i in range(n):
        j = SA[i] - 1
        if j >= 0 and stype[j] == 0:
            c = T[j]
            SA[bkt[c]] = j
            bkt[c] += 1
    _buckets(counts, bkt, True)
    for i in range(n - 1, -1, -1):
        j = SA[i] - 1
        if j >= 0 and stype[j] == 1:
            c = T[j]
            bkt[c] -= 1
            SA[bkt[c]] = j


@numba.njit(cache=True, nogil=True)
def _sort_lms_substrings(T, SA, stype, counts):
    """Stage 1: seed LMS positions at bucket ends, induce; return the LMS positions in sorted order."""
    n = T.shape[0]
    bkt = np.empty(counts.shape[0], dtype=np.int64)
    SA[:] = -1
    _buckets(counts, bkt, True)
    for i in range(1, n):
        if stype[i] == 1 and stype[i - 1] == 0:
            c = T[i]
            bkt[c] -= 1
            SA[bkt[c]] = i
    _induce(T, SA, stype, counts, bkt)
    n1 = 0
    for i in range(n):
        j = SA[i]
        if j > 0 and stype[j] == 1 and stype[j - 1] == 0:
            SA[n1] = j
            n1 += 1
    return n1


@numba.njit(cache=True, nogil=True)
def _name_lms(T, SA, stype, n1):
    """Name the sorted LMS substrings (equal substrings share a name); return (reduced string, LMS positions
    in text order, number of names)."""
    n = T.shape[0]
    names = np.full(n // 2 + 1, -1, dtype=SA.dtype)
    name = -1
    prev = -1
    for i in range(n1):
        pos = SA[i]
        diff = False
        for d in range(n):
            if prev == -1 or T[pos + d] != T[prev + d] or stype[pos + d] != stype[prev + d]:
                diff = True
                break
            if d > 0:
                a = pos + d
                b = prev + d
                if (stype[a] == 1 and stype[a - 1] == 0) or (stype[b] == 1 and stype[b - 1] == 0):
                    break
        if diff:
            name += 1
            prev = pos
        names[pos // 2] = name
    s1 = np.empty(n1, dtype=SA.dtype)
    p1 = np.empty(n1, dtype=SA.dtype)
    k = 0
    for i in range(1, n):
        if stype[i] == 1 and stype[i - 1] == 0:
            p1[k] = i
            s1[k] = names[i // 2]
            k += 1
    return s1, p1, name + 1


@numba.njit(cache=True, nogil=True)
def _direct_sa(s1, out):
    for i in range(s1.shape[0]):
        out[s1[i]] = i


@numba.njit(cache=True, nogil=True)
def _final_induce(T, SA, stype, counts, sa1, p1):
    """Stage 3: seed the LMS suffixes in their sorted order at bucket ends, induce the full order."""
    bkt = np.empty(counts.shape[0], dtype=np.int64)
    SA[:] = -1
    _buckets(counts, bkt, True)
    for i in range(sa1.shape[0] - 1, -1, -1):
        j = p1[sa1[i]]
        c = T[j]
        bkt[c] -= 1
        SA[bkt[c]] = j
    _induce(T, SA, stype, counts, bkt)


def suffix_array(T: np.ndarray, K: int) -> np.ndarray:
    """The suffix array of ``T`` (integers in [0, K), ending with a unique smallest sentinel 0), by SA-IS.

    Returns int32 positions when ``len(T)`` fits, else int64.
    """
    n = int(T.shape[0])
    idx = np.int32 if n < _INT32_MAX_SYMBOLS else np.int64
    if n == 1:
        return np.zeros(1, dtype=idx)
    stype = np.empty(n, dtype=np.uint8)
    _classify(T, stype)
    counts = _counts(T, K)
    SA = np.empty(n, dtype=idx)
    n1 = _sort_lms_substrings(T, SA, stype, counts)
    s1, p1, n_names = _name_lms(T, SA, stype, n1)
    if n_names < n1:
        sa1 = suffix_array(s1, n_names)
    else:
        sa1 = np.empty(n1, dtype=idx)
        _direct_sa(s1, sa1)
    del s1
    _final_induce(T, SA, stype, counts, sa1, p1)
    return SA


# ----------------------------------------------------------------------------------------------------------
# Shard build kernels
# ----------------------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _augment_direct(tokens, item_starts, out):
    """out = t+2 for each token, 1 after each item, 0 at the end (see the module docstring)."""
    k = 0
    n_items = item_starts.shape[0] - 1
    for it in range(n_items):
        for p in range(item_starts[it], item_starts[it + 1]):
            out[k] = np.int64(tokens[p]) + 2
            k += 1
        out[k] = 1
        k += 1
    out[k] = 0


@numba.njit(cache=True, nogil=True)
def _to_token_positions(T, SA, n_skip, out):
    """Overwrite T with each augmented position's token position, then write SA[n_skip:] as token
    positions to out[: len(SA) - n_skip] (uint32)."""
    seps = 0
    for q in range(T.shape[0]):
        if T[q] <= 1:
            seps += 1
            T[q] = -1
        else:
            T[q] = q - seps
    for i in range(n_skip, SA.shape[0]):
        out[i - n_skip] = T[SA[i]]


@numba.njit(cache=True, nogil=True)
def _boundary_bits(item_starts, n, words):
    """Set bit p of words (uint32, after the n suffix pointers) for every item start p and for n."""
    for i in range(item_starts.shape[0]):
        p = item_starts[i]
        words[n + (p >> 5)] |= np.uint32(1) << np.uint32(p & 31)
    words[n + (n >> 5)] |= np.uint32(1) << np.uint32(n & 31)


# ----------------------------------------------------------------------------------------------------------
# Query kernels
# ----------------------------------------------------------------------------------------------------------


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
    for q in range(p + 1, last + 1):
        if (words[n + (q >> 5)] >> (q & 31)) & 1:
            return -1
    return res


BAD_POINTER = -1  # first value a query kernel returns when a suffix-array row holds no token position (< n)
UNSORTED = -2  # ... when the rows around the answer are out of order, or a row it returns does not hold pat


@numba.njit(cache=True, nogil=True)
def _range(tokens, words, pat):
    """[lo, hi): the suffix-array rows whose suffix starts with pat (words[:n] = suffix array, n = len(tokens)).

    Damage checks, on the rows the search touches: every pointer is checked to be < n before it is followed
    (else (BAD_POINTER, row)); rows probed after the first match must not sort before pat, and the rows two
    before and one after the answer must sort before and after it (else (UNSORTED, row)). A damaged row that
    sends the search the wrong way leaves the answer next to it, so these two extra comparisons (a few
    percent of a count) catch it unless it sits right at the true edge of the answer."""
    n = tokens.shape[0]
    lo, hi = 0, n
    upper = n  # every row >= upper is > pat: bounds the second search
    while lo < hi:  # first row >= pat
        mid = (lo + hi) >> 1
        p = np.int64(words[mid])
        if p >= n:
            return BAD_POINTER, mid
        c = _cmp(tokens, words, p, pat)
        if c < 0:
            lo = mid + 1
        else:
            hi = mid
            if c > 0:
                upper = mid
    start = lo
    if lo < upper:
        # Gallop from lo (most n-grams of a few tokens or more are rare: the end is usually at lo + 1 or
        # close, and neighbouring rows share cache lines), then binary-search the last gap.
        step = 1
        prev = lo  # rows <= prev are known to match
        while True:
            probe = lo + step
            if probe >= upper:
                hi = upper
                break
            p = np.int64(words[probe])
            if p >= n:
                return BAD_POINTER, probe
            c = _cmp(tokens, words, p, pat)
            if c < 0:  # after a match, nothing sorts before pat
                return UNSORTED, probe
            if c > 0:
                hi = probe
                break
            prev = probe
            step <<= 1
        lo = prev + 1
        while lo < hi:  # first row > pat
            mid = (lo + hi) >> 1
            p = np.int64(words[mid])
            if p >= n:
                return BAD_POINTER, mid
            c = _cmp(tokens, words, p, pat)
            if c < 0:
                return UNSORTED, mid
            if c == 0:
                lo = mid + 1
            else:
                hi = mid
    end = lo
    # Rows start - 1 and end were probed (they sort before and after pat); one row further out on each
    # side was not.
    if start >= 2:
        p = np.int64(words[start - 2])
        if p >= n:
            return BAD_POINTER, start - 2
        if _cmp(tokens, words, p, pat) >= 0:
            return UNSORTED, start - 2
    if end + 1 < n:
        p = np.int64(words[end + 1])
        if p >= n:
            return BAD_POINTER, end + 1
        if _cmp(tokens, words, p, pat) <= 0:
            return UNSORTED, end + 1
    return start, end


@numba.njit(cache=True, nogil=True)
def _range_positions(tokens, words, pat, skip, limit, base):
    """One shard's (lo, hi) and its positions [skip, skip + limit) (limit < 0: all), plus ``base``.

    Each position returned is checked to hold pat (inside one item, as the bitmap says); a row that does not
    gives (UNSORTED, row, empty), a pointer >= n (BAD_POINTER, row, empty)."""
    lo, hi = _range(tokens, words, pat)
    if lo < 0:
        return lo, hi, np.empty(0, dtype=np.int64)
    n = tokens.shape[0]
    a = min(lo + skip, hi)
    b = hi if limit < 0 else min(hi, a + limit)
    out = np.empty(b - a, dtype=np.int64)
    for i in range(a, b):
        p = np.int64(words[i])
        if p >= n:
            return BAD_POINTER, i, np.empty(0, dtype=np.int64)
        if _cmp(tokens, words, p, pat) != 0:
            return UNSORTED, i, np.empty(0, dtype=np.int64)
        out[i - a] = p + base
    return lo, hi, out


# ----------------------------------------------------------------------------------------------------------
# Build
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardSpec:
    """One shard: items [item_lo, item_hi) of the store, all in part ``part``."""

    part: int
    item_lo: int
    item_hi: int
    token_lo: int  # token position of the shard's first item in the store (int64 across parts)
    n_tokens: int

    @property
    def n_words(self) -> int:
        """uint32 words of the shard file: n suffix pointers, then the boundary bitmap (n + 1 bits)."""
        return self.n_tokens + (self.n_tokens >> 5) + 1

    def as_dict(self) -> dict[str, int]:
        return {"part": self.part, "item_lo": self.item_lo, "item_hi": self.item_hi,
                "token_lo": self.token_lo, "n_tokens": self.n_tokens}


def plan_shards(store: TokenStore, shard_tokens: int = DEFAULT_SHARD_TOKENS) -> list[ShardSpec]:
    """Cut the store into shards of at most ``shard_tokens`` tokens on item boundaries, never across parts
    (an item longer than ``shard_tokens`` is a shard of its own). Shards with no tokens are skipped."""
    if not 1 <= shard_tokens <= MAX_SHARD_TOKENS:
        raise ConfigError(f"shard_tokens={shard_tokens:,}: expected 1..{MAX_SHARD_TOKENS:,} tokens per shard "
                          f"(suffix pointers are uint32)")
    offsets = store.token_offsets()
    shards: list[ShardSpec] = []
    for part in range(len(store.parts)):
        lo, end = int(store.item_offsets[part]), int(store.item_offsets[part + 1])
        while lo < end:
            limit = offsets[lo] + shard_tokens
            # last item boundary <= limit, but take at least one item
            hi = int(np.searchsorted(offsets, limit, side="right")) - 1
            hi = min(max(hi, lo + 1), end)
            n = int(offsets[hi] - offsets[lo])
            if n > 0:
                shards.append(ShardSpec(part, lo, hi, int(offsets[lo]), n))
            lo = hi
    return shards


def _shard_tokens(store: TokenStore, spec: ShardSpec) -> np.ndarray:
    part = store.parts[spec.part]
    local = spec.item_lo - int(store.item_offsets[spec.part])
    start = int(part.pointers[local]) // part.dtype.itemsize if spec.item_hi > spec.item_lo else 0
    return part.tokens[start : start + spec.n_tokens].view(np.ndarray)


def tokens_digest(tokens: np.ndarray) -> str:
    """The manifest's ``tokens_digest`` of a shard's tokens: :func:`pile_index.digests.sampled_digest`.

    The store fingerprint covers sizes, not token values; this catches a ``.bin`` rewritten in place with
    the same sizes (a different tokenizer, a corrupted copy) at the cost of ~256 KB read per shard on open;
    ``tokens_sha256`` (every token) is checked by ``pile-index verify``."""
    return sampled_digest(tokens)


def _item_starts(store: TokenStore, spec: ShardSpec) -> np.ndarray:
    off = store.token_offsets()
    return (off[spec.item_lo : spec.item_hi + 1] - off[spec.item_lo]).astype(np.int64)


def build_shard(store: TokenStore, spec: ShardSpec, path: Path) -> dict[str, str]:
    """Build one shard's suffix array and boundary bitmap into ``path``, atomically; return its digests
    (``sa_sha256`` of the file, ``tokens_sha256`` of the store tokens it indexes)."""
    tokens = _shard_tokens(store, spec)
    starts = _item_starts(store, spec)
    n_items = spec.item_hi - spec.item_lo
    n_aug = spec.n_tokens + n_items + 1
    sym = np.int32 if n_aug < _INT32_MAX_SYMBOLS else np.int64
    T = np.empty(n_aug, dtype=sym)
    if tokens.dtype.itemsize <= 2 and tokens.dtype.kind == "u":
        _augment_direct(tokens, starts, T)
        K = int(tokens.max()) + 3 if tokens.size else 2
    else:  # large or signed vocabularies: rank the symbols that occur so the buckets stay small
        used = np.unique(tokens)
        if used.size and int(used[0]) < 0:
            raise FormatError(f"shard {spec.as_dict()}: negative token id {int(used[0]):,}; expected ids >= 0")
        ranks = np.searchsorted(used, tokens).astype(np.int32)  # dense ranks, whatever the id range
        _augment_direct(ranks, starts, T)
        del ranks
        K = int(used.size) + 2
    SA = suffix_array(T, K)
    with atomic_path(path) as tmp:
        words = np.memmap(tmp, dtype="<u4", mode="w+", shape=(spec.n_words,))  # zero-filled
        _to_token_positions(T, SA, n_items + 1, words)
        del T, SA
        _boundary_bits(starts, spec.n_tokens, words)
        words.flush()
        digests = {"sa_sha256": sha256_array(words), "tokens_sha256": sha256_array(tokens)}  # pages still cached
        del words
    return digests


DIGEST_KEYS = ("sa_sha256", "tokens_sha256")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_SHARD_SPEC: dict[str, Any] = {"part": int, "item_lo": int, "item_hi": int, "token_lo": int, "n_tokens": int,
                               "tokens_digest": str, "sa_sha256": optional(str), "tokens_sha256": optional(str)}
_MANIFEST_SPEC: dict[str, Any] = {"format_version": int, "store_fingerprint": str, "n_items": int, "n_tokens": int,
                                  "shard_tokens": int, "shards": [_SHARD_SPEC]}


def _marker_digests(marker: Path, want: dict[str, Any], sa_path: Path, n_words: int) -> dict[str, str] | None:
    """The digests a finished shard's marker records, if the marker is for this build and the shard file has
    its size; None means build the shard (again). A marker from before digests were recorded gives {}."""
    if not marker.is_file() or not sa_path.is_file() or sa_path.stat().st_size != n_words * 4:
        return None
    try:
        found = read_json(marker, "rebuilding the shard")
    except FormatError:
        return None  # an unreadable marker: rebuild the shard
    if not isinstance(found, dict) or {k: found.get(k) for k in want} != want:
        return None
    return {k: found[k] for k in DIGEST_KEYS if isinstance(found.get(k), str) and _HEX64.match(found[k])}


def build_index(
    store: TokenStore,
    out_dir: str | os.PathLike | None = None,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    progress: bool = False,
    ray_address: str | None = None,
    ray_num_cpus: int | None = None,
) -> Path:
    """Build (or resume building) the n-gram index of ``store``; return its folder.

    Shards already built for the same store fingerprint and plan are kept; the manifest is written last and
    records each shard's digests. With ``ray_address`` ("local", "auto" or a cluster address) the missing
    shards are built as Ray tasks (each worker opens the store by its prefixes, so the store must be on a
    filesystem every worker sees); the files are the same bytes as a single-process build.
    """
    folder = Path(out_dir) if out_dir is not None else index_dir(store.prefix)
    folder.mkdir(parents=True, exist_ok=True)
    fp = store.fingerprint()
    shards = plan_shards(store, shard_tokens)
    iterator: Any
    todo = []
    entries: list[dict[str, Any]] = []
    for i, spec in enumerate(shards):
        marker = folder / f"shard-{i:05}.json"
        want = {"store_fingerprint": fp, "format_version": FORMAT_VERSION, **spec.as_dict(),
                "tokens_digest": tokens_digest(_shard_tokens(store, spec))}
        entries.append({**spec.as_dict(), "tokens_digest": want["tokens_digest"]})
        digests = _marker_digests(marker, want, folder / f"shard-{i:05}.sa", spec.n_words)
        if digests is not None:
            entries[i].update(digests)
            continue
        todo.append((i, spec, marker, want))
    if ray_address:
        built = _build_shards_on_ray(store, todo, folder, len(shards), ray_address, ray_num_cpus)
    else:
        built = {}
        if progress:
            from ..progress import progress_bar

            iterator = progress_bar(todo, desc="ngram shards", unit="shard")
        else:
            iterator = todo
        for i, spec, marker, want in iterator:
            t0 = time.perf_counter()
            built[i] = build_shard(store, spec, folder / f"shard-{i:05}.sa")
            write_bytes(marker, json.dumps({**want, **built[i]}, indent=1).encode())
            log.info("ngram shard %d/%d: %s tokens in %.1f s", i + 1, len(shards), f"{spec.n_tokens:,}",
                     time.perf_counter() - t0)
    for i, digests in built.items():
        entries[i].update(digests)
    manifest = {
        "format_version": FORMAT_VERSION,
        "store_fingerprint": fp,
        "store_prefixes": store.prefixes,
        "n_items": len(store),
        "n_tokens": int(store.n_tokens),
        "dtype": str(store.dtype),
        "shard_tokens": int(shard_tokens),
        "shards": entries,
    }
    write_bytes(folder / "manifest.json", json.dumps(manifest, indent=1).encode())
    return folder


def _build_shard_task(prefixes: list[str], spec: ShardSpec, path: str) -> dict[str, str]:
    return build_shard(TokenStore(prefixes), spec, Path(path))


def _build_shards_on_ray(store: TokenStore, todo: list, folder: Path, n_shards: int, address: str,
                         num_cpus: int | None) -> dict[int, dict[str, str]]:
    """Build the missing shards as Ray tasks; the driver writes each shard's marker when its task ends.
    Returns shard number -> digests."""
    try:
        import ray
    except ImportError as e:
        raise ConfigError("`ray` needs Ray: pip install 'pile-index[ray]'") from e
    started = not ray.is_initialized()
    if started:
        if address == "local":
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
    built: dict[int, dict[str, str]] = {}
    try:
        remote = ray.remote(_build_shard_task)
        pending = {remote.remote(store.prefixes, spec, str(folder / f"shard-{i:05}.sa")): (i, spec, marker, want)
                   for i, spec, marker, want in todo}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                digests = ray.get(ref)  # re-raises a worker's error here
                i, spec, marker, want = pending.pop(ref)
                built[i] = digests
                write_bytes(marker, json.dumps({**want, **digests}, indent=1).encode())
                log.info("ngram shard %d/%d (ray): %s tokens", i + 1, n_shards, f"{spec.n_tokens:,}")
    finally:
        if started:
            ray.shutdown()
    return built


# ----------------------------------------------------------------------------------------------------------
# Query
# ----------------------------------------------------------------------------------------------------------


class _Shard:
    __slots__ = ("spec", "tokens", "words", "n", "path", "digests", "range", "range_positions")

    def __init__(self, store: TokenStore, spec: ShardSpec, folder: Path, i: int, digests: dict[str, str]):
        self.spec = spec
        self.n = spec.n_tokens
        self.tokens = _shard_tokens(store, spec)
        self.digests = digests
        self.path = path = ngram_shard_path(folder, i)
        size = spec.n_words * 4
        if not path.is_file():
            raise FormatError(f"{path}: missing; rebuild the index with `pile-index ngram build`")
        if path.stat().st_size != size:
            raise FormatError(
                f"{path}: expected {size:,} bytes for {spec.n_tokens:,} tokens, found {path.stat().st_size:,}; "
                f"the file is truncated: rebuild with `pile-index ngram build`"
            )
        self.words = np.memmap(path, dtype="<u4", mode="r").view(np.ndarray)
        n = self.n
        first, last = int(self.words[n]), int(self.words[n + (n >> 5)])
        if not first & 1 or last >> (n & 31) != 1:  # bit 0 (the first item starts) and bit n (the end), none after
            raise FormatError(f"{path}: the item-boundary bitmap (after the {n:,} suffix pointers) does not start "
                              f"and end where the shard does; the file is damaged: rebuild with "
                              f"`pile-index ngram build`")
        self.range = _entry_point(_range, self.tokens, self.words, _PROBE)
        self.range_positions = _entry_point(_range_positions, self.tokens, self.words, _PROBE, 0, 0, 0)

    def damaged(self, code: int, row: int) -> FormatError:
        """The error for a query kernel's damage report (code BAD_POINTER or UNSORTED at ``row``)."""
        value = int(self.words[row])
        if code == BAD_POINTER:
            what = f"holds {value:,}, not a token position below the shard's {self.n:,} tokens"
        else:
            what = f"(token position {value:,}) is out of suffix order"
        return FormatError(f"{self.path}: suffix-array row {row:,} {what}; the file is damaged: check the index "
                           f"with `pile-index verify` and rebuild it with `pile-index ngram build`")


_PROBE = np.zeros(1, dtype=np.int64)  # a pattern of the type every query pattern has (fresh int64, 1-D, C)


def _entry_point(kernel: Any, *args: Any) -> Any:
    """The compiled function of ``kernel`` for these argument types, called without the dispatcher's type
    matching (measured: ~0.8 us of a ~5 us count). Safe because the index only calls it with arrays of
    exactly these types (its own memmaps and patterns from :meth:`NgramIndex._pattern`); falls back to
    the dispatcher if numba's internals differ."""
    kernel(*args)  # compile (or load from the cache)
    try:
        sig = tuple(numba.typeof(a) for a in args)
        return kernel.overloads[sig].entry_point
    except (AttributeError, KeyError, TypeError):  # another numba layout: the dispatcher is always right
        return kernel


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The n-gram manifest in ``folder``, with its required keys and types checked (FormatError if damaged)."""
    path = ngram_manifest_path(folder)
    fix = "rebuild with `pile-index ngram build`"
    doc = read_json(path, fix)
    if isinstance(doc, dict) and doc.get("format_version") != FORMAT_VERSION:
        raise FormatError(f"{path}: format_version {doc.get('format_version')!r}, expected {FORMAT_VERSION}; {fix}")
    check(doc, _MANIFEST_SPEC, path, fix)
    return doc


class NgramIndex:
    """A built n-gram index opened read-only over its store.

    Opening checks the manifest (keys, types, the store's fingerprint and shard plan, a sample of each shard's
    tokens) and each shard file's size and bitmap ends; queries check every suffix pointer they follow and the
    order of the rows around each answer. Full content digests are checked by :mod:`pile_index.verify`, which
    opens with ``check_tokens=False`` (it reads every token instead of a sample)."""

    def __init__(self, store: TokenStore, folder: str | os.PathLike | None = None, check_tokens: bool = True):
        self.store = store
        self.folder = Path(folder) if folder is not None else index_dir(store.prefix)
        manifest_path = ngram_manifest_path(self.folder)
        if not os.path.lexists(manifest_path):
            raise NotFoundError(
                f"{manifest_path}: no n-gram index for {store.prefix}; build it with `pile-index ngram build {store.prefix}`"
            )
        self.manifest = read_manifest(self.folder)
        fp = store.fingerprint()
        if self.manifest["store_fingerprint"] != fp:
            raise FormatError(
                f"{manifest_path}: built for store fingerprint {self.manifest['store_fingerprint']}, but "
                f"{store.prefix} has {fp}; the store changed: rebuild with `pile-index ngram build`"
            )
        self.shards = []
        for i, (entry, spec) in enumerate(zip(self.manifest["shards"], self._plan(manifest_path), strict=True)):
            digests = {k: entry[k] for k in DIGEST_KEYS if k in entry}
            shard = _Shard(store, spec, self.folder, i, digests)
            if check_tokens and tokens_digest(shard.tokens) != entry["tokens_digest"]:
                raise FormatError(
                    f"{manifest_path}: shard {i:,} (items {spec.item_lo:,}..{spec.item_hi - 1:,}): the store's tokens "
                    f"differ from those indexed (same sizes, other values); rebuild with `pile-index ngram build`"
                )
            self.shards.append(shard)
        self.n_tokens = int(self.manifest["n_tokens"])

    def _plan(self, manifest_path: Path) -> list[ShardSpec]:
        """The shard plan the manifest must hold: the one :func:`plan_shards` makes for this store."""
        fix = "the manifest is damaged: rebuild with `pile-index ngram build`"
        m = self.manifest
        if m["n_items"] != len(self.store) or m["n_tokens"] != self.store.n_tokens:
            raise FormatError(f"{manifest_path}: n_items {m['n_items']:,} and n_tokens {m['n_tokens']:,}, but the "
                              f"store has {len(self.store):,} items and {self.store.n_tokens:,} tokens; {fix}")
        try:
            plan = plan_shards(self.store, m["shard_tokens"])
        except ConfigError as e:
            raise FormatError(f"{manifest_path}: shard_tokens: {e}; {fix}") from e
        if len(plan) != len(m["shards"]):
            raise FormatError(f"{manifest_path}: shards: expected {len(plan):,} shards for shard_tokens "
                              f"{m['shard_tokens']:,}, found {len(m['shards']):,}; {fix}")
        for i, (spec, entry) in enumerate(zip(plan, m["shards"])):
            for key, want in spec.as_dict().items():
                if entry[key] != want:
                    raise FormatError(f"{manifest_path}: shards[{i}].{key}: expected {want:,} (the plan for this "
                                      f"store), found {entry[key]:,}; {fix}")
        return plan

    def disk_bytes(self) -> int:
        """Bytes of the index files (suffix arrays, bitmaps, markers), not counting the store's tokens."""
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())

    # -- queries ------------------------------------------------------------------------------------------

    def _pattern(self, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
        """A fresh C-contiguous writable int64 1-D array: exactly the type the kernels were compiled for."""
        try:
            pat = np.array(tokens, dtype=np.int64)
        except (TypeError, ValueError, OverflowError) as e:
            raise QueryError(f"the n-gram must be a sequence of integer token ids; got {type(tokens).__name__} ({e})") from e
        if pat.ndim != 1:
            pat = np.ascontiguousarray(pat.reshape(-1))
        if pat.size == 0:
            raise QueryError("an empty n-gram has no count; pass at least one token")
        return pat

    def count(self, tokens: Sequence[int] | np.ndarray) -> int:
        """Exact number of (overlapping) occurrences of ``tokens`` inside items."""
        pat = self._pattern(tokens)
        total = 0
        for s in self.shards:
            lo, hi = s.range(s.tokens, s.words, pat)
            if lo < 0:
                raise s.damaged(lo, hi)
            total += hi - lo
        return total

    def positions(self, tokens: Sequence[int] | np.ndarray, offset: int = 0, limit: int | None = None) -> np.ndarray:
        """Store token positions (int64) of occurrences, in index order (shard, then suffix order):
        entries [offset, offset+limit) of that order. Each one is checked to hold ``tokens``."""
        if offset < 0 or (limit is not None and limit < 0):
            raise QueryError(f"offset={offset:,} and limit={limit!r} must be >= 0")
        pat = self._pattern(tokens)
        out: list[np.ndarray] = []
        skip = offset
        remaining = -1 if limit is None else limit
        for s in self.shards:
            if remaining == 0:
                break
            lo, hi, pos = s.range_positions(s.tokens, s.words, pat, skip, remaining, s.spec.token_lo)
            if lo < 0:
                raise s.damaged(lo, hi)
            skip = max(skip - (hi - lo), 0)
            if pos.size:
                out.append(pos)
                if remaining > 0:
                    remaining -= pos.size
        if len(out) == 1:
            return out[0]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def locate(self, tokens: Sequence[int] | np.ndarray, offset: int = 0, limit: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(doc_id, offset-in-document) arrays of occurrences, paginated as in :meth:`positions`. Each one is
        checked against the store's item sizes to lie inside its document."""
        m = self._pattern(tokens).size
        pos = self.positions(tokens, offset, limit)
        doc, off = positions_to_documents(self.store, pos)
        if doc.size:
            over = off + m > np.asarray(self.store.sizes)[doc]
            if over.any():
                j = int(np.flatnonzero(over)[0])
                lows = [s.spec.token_lo for s in self.shards]
                shard = self.shards[int(np.searchsorted(lows, pos[j], side="right")) - 1]
                raise FormatError(
                    f"{shard.path}: the item-boundary bitmap lets an occurrence at token {int(pos[j]):,} run past "
                    f"the end of document {int(doc[j]):,}; the file is damaged: check the index with "
                    f"`pile-index verify` and rebuild it with `pile-index ngram build`")
        return doc, off

    # -- batch queries and trace live in their own modules (batch.py, trace.py); these are their entry points --

    def count_many(self, queries: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
        """Exact counts of many n-grams (int64, order kept), each equal to :meth:`count`; see :mod:`.batch`."""
        from .batch import count_many

        return count_many(self, queries)

    def trace(self, ids: Sequence[int] | np.ndarray, **options: Any) -> dict[str, Any]:
        """The maximal spans of ``ids`` that occur in the index, with counts (options: see :func:`.trace.trace`)."""
        from .trace import trace

        return trace(self, ids, **options)


def positions_to_documents(store: TokenStore, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Store token positions -> (item, offset in item). Empty items never hold a position."""
    off = store.token_offsets()
    doc = np.searchsorted(off, pos, side="right").astype(np.int64) - 1
    return doc, pos - off[doc]


MAX_TOKEN_ID = 2**31  # int32 is the widest token dtype GPT-NeoX writes
_TOKEN_ID = re.compile(r"[0-9]{1,12}")  # ASCII digits only; 12 digits: past MAX_TOKEN_ID, short of int()'s limit


def query_tokens(
    tokens: Sequence[int] | str | None = None,
    text: str | None = None,
    tokenizer: Any = None,
    max_tokens: int | None = None,
    max_text_chars: int | None = None,
) -> np.ndarray:
    """The query as token ids: ``tokens`` (ids, or "1,2,3") or ``text`` encoded with ``tokenizer``.

    Limits are named settings (``max_tokens_per_query``, ``max_text_chars``).
    """
    if (tokens is None) == (text is None):
        raise QueryError("pass exactly one of tokens (ids) or text")
    if text is not None:
        if max_text_chars is not None and len(text) > max_text_chars:
            raise LimitError(f"text has {len(text):,} characters; the limit is max_text_chars={max_text_chars:,}",
                             "max_text_chars")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise QueryError(f"text: character {e.start:,} is a lone surrogate (U+{ord(text[e.start]):04X}); "
                             f"text must be valid Unicode") from None
        if tokenizer is None:
            raise ConfigError(
                "a text query needs the store's tokenizer: pass `tokenizer` PATH_OR_HUB_ID "
                "(or keep PREFIX.tokenizer.json beside the store)"
            )
        ids = np.asarray(tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)
    else:
        # Exactly the documented forms: "1,2,3" (ASCII digits, spaces around commas) or a sequence of ints.
        # Nothing looser: int() would also take "1_000", "+1", Arabic-Indic digits, True and 0.0.
        values = (tokens.split(",") if tokens.strip(" ") else []) if isinstance(tokens, str) else list(tokens)
        if max_tokens is not None and len(values) > max_tokens:
            raise LimitError(f"the query has {len(values):,} tokens; the limit is max_tokens_per_query={max_tokens:,}",
                             "max_tokens_per_query")
        ints = []
        for i, t in enumerate(values):
            if isinstance(t, str) and isinstance(tokens, str) and _TOKEN_ID.fullmatch(t.strip(" ")):
                ints.append(int(t))
            elif isinstance(t, (int, np.integer)) and not isinstance(t, (bool, np.bool_)):
                ints.append(int(t))
            elif isinstance(tokens, str):
                raise QueryError(f"tokens {tokens[:200]!r}: item {i:,} ({t[:40]!r}) is not a token id; expected "
                                 f"comma-separated ids in ASCII digits like 1,2,3")
            else:
                raise QueryError(f"tokens[{i:,}] is {str(t)[:40]!r} ({type(t).__name__}); expected an integer token id")
        bad = [t for t in ints if not 0 <= t < MAX_TOKEN_ID]
        if bad:
            raise QueryError(f"token id {bad[0]:,} is out of range; token ids are 0..{MAX_TOKEN_ID - 1:,}")
        ids = np.asarray(ints, dtype=np.int64)
    if ids.size == 0:
        raise QueryError("the query has no tokens; pass at least one token (text that encodes to nothing has no count)")
    if max_tokens is not None and ids.size > max_tokens:
        raise LimitError(f"the query has {ids.size:,} tokens; the limit is max_tokens_per_query={max_tokens:,}",
                         "max_tokens_per_query")
    return ids
