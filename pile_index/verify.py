"""End-to-end verification of a store and everything derived from it (``pile-index verify``).

Opening a file checks its structure cheaply; this module reads every byte and compares it with what was
recorded or can be recomputed:

- **store** (``.bin`` / ``.idx``): the header, counts, pointers and sizes are checked on open; the tokens are
  read once, in blocks, and checked against what the derived files recorded about them (each n-gram shard's
  ``tokens_sha256``, each document's ``token_hash`` in the documents table).
- **n-gram index**: the manifest (keys, types, plan); each ``shard-NNNNN.sa`` against its ``sa_sha256``, and a
  structural pass (every suffix pointer below n and used once, the boundary bitmap exactly the item starts).
- **documents table**: its schema, one row per item with doc_id 0..N-1 in order, ``n_tokens`` equal to the
  store's sizes, ``token_hash`` equal to the hash of the item's tokens, and the file against ``FILE.sha256``.
- **token statistics** (``PREFIX.stats.json``): when the cache is current, against a fresh count.
- **training order** (with an :class:`OrderConfig`): each index map and inverse file against its
  ``FILE.sha256``, and all five recomputed from the store and the config and compared entry by entry.

The result is a :class:`VerifyReport`: one :class:`Check` per file and check, ``ok`` False when any check
found a mismatch. A file built before digests were recorded is ``unrecorded`` (its structural and recomputed
checks still run).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np

from .files import ngram_manifest_path
from .digests import digest_path, recorded_digest, sha256_file
from .sql.docstore import DocumentTable, token_hashes
from .errors import FormatError, PileIndexError
from .ngram.index import NgramIndex, index_dir
from .ngram.layout import LEGACY_FORMAT_VERSION
from .ngram.search import sa_at
from .order.index_maps import (OrderConfig, build_command, build_doc_idx, build_sample_idx, build_shuffle_idx, index_map_paths,
                    num_epochs, num_samples_total)
from .progress import progress_bar
from .order.training import _doc_positions_kernel, inverse_paths
from .format.stats import _min_max_zeros, cached_token_stats, stats_path
from .format.store import TokenStore

BLOCK_TOKENS = 1 << 26  # store tokens read per block: 128 MiB of uint16
COMPARE_ENTRIES = 1 << 24  # index-map entries compared per step


@dataclass
class Check:
    """One check of one file. ``status``: ok; mismatch (the only failure); unrecorded (no digest was recorded);
    absent (an optional file is not there); stale (a cache that is out of date, so never used)."""

    file: str
    check: str
    status: str
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "check": self.check, "status": self.status, "detail": self.detail}


@dataclass
class VerifyReport:
    prefix: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status == "mismatch"]

    def add(self, file: str | os.PathLike, check: str, status: str, detail: str = "") -> None:
        self.checks.append(Check(str(file), check, status, detail))

    def as_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for c in self.checks:
            counts[c.status] = counts.get(c.status, 0) + 1
        return {"prefix": self.prefix, "ok": self.ok, "counts": counts, "checks": [c.as_dict() for c in self.checks]}


class _Bar:
    """A byte counter for the progress bar (:func:`pile_index.progress.progress_bar`)."""

    def __init__(self, total: int, progress: bool):
        self.bar = progress_bar(total=total, unit="B", unit_scale=True, desc="verify", enabled=progress, leave=False)

    def __call__(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def verify_corpus(store: TokenStore, cfg: OrderConfig | None = None, preshuffled: bool = False,
                  progress: bool = False) -> VerifyReport:
    """Check ``store`` and every derived file beside it end to end (see the module docstring)."""
    rep = VerifyReport(store.prefix)
    for part in store.parts:
        rep.add(part.index.path, "structure", "ok", f"{len(part):,} items, {part.n_tokens:,} tokens: header, sizes, "
                "pointers, doc_idx and .bin size")
    manifest = ngram_manifest_path(index_dir(store.prefix))
    index = _open(rep, manifest, "manifest", lambda: NgramIndex(store, check_tokens=False))
    docs_path = store.documents_path()
    docs = _open(rep, docs_path, "schema", lambda: DocumentTable(docs_path, n_items=len(store)))
    maps_paths: dict[str, Path] = {}
    if cfg is not None and not preshuffled:
        maps_paths = {**index_map_paths(store.prefix, cfg), **inverse_paths(store.prefix, cfg)}
    total = store.n_tokens * store.dtype.itemsize
    if index is not None:
        total += sum(s.path.stat().st_size for s in index.shards)
        total += sum(s.sample_path.stat().st_size for s in index.shards if s.sample_path is not None)
    recorded = [p for p in [docs_path, *maps_paths.values()] if p.is_file() and os.path.lexists(digest_path(p))]
    total += sum(p.stat().st_size for p in recorded)
    bar = _Bar(total, progress)
    try:
        _store_pass(rep, store, index, docs, bar)
        if index is not None:
            _ngram_files(rep, store, index, bar)
        if docs_path.is_file():  # also when it does not open: the digest says whether it is the file built
            _digest(rep, docs_path, bar, "pile-index attach (or ingest)")
        if maps_paths:
            _order_files(rep, store, cfg, maps_paths, bar)
    finally:
        bar.close()
        if docs is not None:
            docs.close()
    return rep


def _open(rep: VerifyReport, path: Path, check: str, opener: Callable[[], Any]) -> Any:
    if not os.path.lexists(path):
        rep.add(path, check, "absent")
        return None
    try:
        obj = opener()
    except PileIndexError as e:
        # Messages start with the file they are about (the manifest, or one of its shards): name that one.
        named, sep, rest = str(e).partition(": ")
        if sep and named.startswith(str(path.parent)) and os.path.lexists(named):
            rep.add(named, check, "mismatch", rest)
        else:
            rep.add(path, check, "mismatch", str(e))
        return None
    rep.add(path, check, "ok")
    return obj


def _digest(rep: VerifyReport, path: Path, bar: _Bar, rebuild: str) -> None:
    """Compare ``path`` with its ``FILE.sha256`` record."""
    try:
        want = recorded_digest(path)
    except FormatError as e:
        rep.add(digest_path(path), "sha256", "mismatch", str(e).removeprefix(f"{digest_path(path)}: "))
        return
    if want is None:
        rep.add(path, "sha256", "unrecorded", f"no {digest_path(path).name}: built before digests were recorded")
        return
    try:
        found = sha256_file(path, bar)
    except OSError as e:
        rep.add(path, "sha256", "mismatch", f"cannot be read ({e.strerror or e}); rebuild it with `{rebuild}`")
        return
    if found != want:
        rep.add(path, "sha256", "mismatch", f"sha256 {found}, but {digest_path(path).name} records {want}: the file "
                f"changed after it was built; rebuild it with `{rebuild}`")
    else:
        rep.add(path, "sha256", "ok", found)


# ----------------------------------------------------------------------------------------------- the store pass


def _item_blocks(store: TokenStore):
    """(part, item_lo, item_hi) covering every item once, in order, never across parts, ~BLOCK_TOKENS each."""
    off = store.token_offsets()
    for p in range(len(store.parts)):
        lo, end = int(store.item_offsets[p]), int(store.item_offsets[p + 1])
        while lo < end:
            hi = int(np.searchsorted(off, off[lo] + BLOCK_TOKENS, side="right")) - 1
            hi = min(max(hi, lo + 1), end)
            yield p, lo, hi
            lo = hi


def _store_pass(rep: VerifyReport, store: TokenStore, index: NgramIndex | None, docs: DocumentTable | None,
                bar: _Bar) -> None:
    """Read the store's tokens once: token statistics, each document's token_hash, each shard's tokens_sha256."""
    off = store.token_offsets()
    sizes = np.asarray(store.sizes)
    lo_tok, hi_tok, zeros = None, None, 0
    shards = index.shards if index is not None else []
    j, h = 0, hashlib.sha256()
    doc_bad: str | None = None
    for p, lo, hi in _item_blocks(store):
        part = store.parts[p]
        t0 = int(off[lo] - off[store.item_offsets[p]])
        toks = part.tokens[t0 : t0 + int(off[hi] - off[lo])]
        if toks.size:
            a, b, z = _min_max_zeros(toks)
            lo_tok = int(a) if lo_tok is None else min(lo_tok, int(a))
            hi_tok = int(b) if hi_tok is None else max(hi_tok, int(b))
            zeros += int(z)
        if docs is not None and doc_bad is None:
            try:
                doc_bad = _check_document_rows(docs, lo, hi, sizes[lo:hi], toks)
            except FormatError as e:
                doc_bad = str(e).removeprefix(f"{docs.path}: ")
        pos, end = int(off[lo]), int(off[hi])
        while pos < end and j < len(shards):  # shards tile the store's tokens in order
            s = shards[j]
            s_end = s.spec.token_lo + s.n
            c = min(end, s_end)
            h.update(memoryview(np.ascontiguousarray(toks[pos - int(off[lo]) : c - int(off[lo])])))
            pos = c
            if c == s_end:
                _tokens_result(rep, store, s, j, h.hexdigest())
                j, h = j + 1, hashlib.sha256()
        bar(int(toks.nbytes))
    if docs is not None:
        rep.add(docs.path, "contents", "mismatch" if doc_bad else "ok", doc_bad or
                f"{len(store):,} rows: doc_id 0..N-1 in order, n_tokens and token_hash equal the store's items")
    fresh = {"min_token": lo_tok, "max_token": hi_tok, "eod_count": zeros}
    path = stats_path(store)
    if os.path.lexists(path):
        cached = cached_token_stats(store)
        if cached is None:
            rep.add(path, "contents", "stale", "out of date, edited or damaged: never used; recomputed on next use")
        elif cached != fresh:
            rep.add(path, "contents", "mismatch", f"records {cached}, the store has {fresh}; delete it (a cache)")
        else:
            rep.add(path, "contents", "ok", str(fresh))


def _tokens_result(rep: VerifyReport, store: TokenStore, shard: Any, j: int, found: str) -> None:
    want = shard.digests.get("tokens_sha256")
    what = f"store tokens {shard.spec.token_lo:,}..{shard.spec.token_lo + shard.n - 1:,} (items " \
           f"{shard.spec.item_lo:,}..{shard.spec.item_hi - 1:,}) indexed by shard {j:,}"
    name = store.parts[shard.spec.part].bin_path
    if want is None:
        rep.add(name, "tokens_sha256", "unrecorded", f"{what}: the manifest records no tokens_sha256")
    elif want != found:
        rep.add(name, "tokens_sha256", "mismatch", f"{what}: sha256 {found}, the n-gram manifest records {want}: the "
                f"tokens changed after the index was built; rebuild it with `pile-index ngram build`")
    else:
        rep.add(name, "tokens_sha256", "ok", what)


def _check_document_rows(docs: DocumentTable, lo: int, hi: int, sizes: np.ndarray, toks: np.ndarray) -> str | None:
    """The first problem of rows [lo, hi) of the documents table against the store's items, or None."""
    cols = docs.columns(["doc_id", "n_tokens", "token_hash"], lo, hi)
    ids = cols["doc_id"]
    if ids.size != hi - lo or not np.array_equal(ids, np.arange(lo, hi)):
        got = ids[:5].tolist()
        return f"doc_id {lo:,}..{hi - 1:,}: expected each once, in order; found {ids.size:,} rows starting {got}"
    bad = np.flatnonzero(cols["n_tokens"] != sizes)
    if bad.size:
        i = int(bad[0])
        return f"doc_id {lo + i:,}: n_tokens {int(cols['n_tokens'][i]):,}, the store's item has {int(sizes[i]):,}"
    bad = np.flatnonzero(cols["token_hash"].astype(np.uint64) != token_hashes(toks, sizes))
    if bad.size:
        return (f"doc_id {lo + int(bad[0]):,}: token_hash differs from the hash of the store's tokens (the table or "
                f"the .bin changed after the table was built)")
    return None


# ----------------------------------------------------------------------------------------------- n-gram files


@numba.njit(cache=True, nogil=True)
def _pointer_pass(words, n, seen):
    """(code, row): 1 = pointer >= n, 2 = pointer used twice; (0, 0) when the first n words are a permutation."""
    for r in range(n):
        p = sa_at(words, n, r)
        if p >= n:
            return 1, r
        w = p >> 6
        bit = np.uint64(1) << np.uint64(p & 63)
        if seen[w] & bit:
            return 2, r
        seen[w] |= bit
    return 0, 0


def _ngram_files(rep: VerifyReport, store: TokenStore, index: NgramIndex, bar: _Bar) -> None:
    off = store.token_offsets()
    for j, s in enumerate(index.shards):
        files = [(s.path, "sa_sha256")] + ([(s.sample_path, "sample_sha256")] if s.sample_path is not None else [])
        for path, key in files:  # the suffix array (and, in format 3, its sample)
            want = s.digests.get(key)
            if want is None:
                rep.add(path, "sha256", "unrecorded", f"the manifest records no {key} (built before digests were "
                        "recorded): delete the index folder and run `pile-index ngram build` to record them")
                bar(path.stat().st_size)
                continue
            try:
                found = sha256_file(path, bar)
            except OSError as e:
                found = f"unreadable ({e.strerror or e})"
            if found != want:
                rep.add(path, "sha256", "mismatch", f"sha256 {found}, the manifest records {want}: the file changed "
                        f"after it was built; rebuild with `pile-index ngram build`")
            else:
                rep.add(path, "sha256", "ok", found)
        n = s.n
        code, row = _pointer_pass(s.words, np.int64(n), np.zeros((n >> 6) + 1, dtype=np.uint64))
        if code:
            what = "is not below the shard's" if code == 1 else "repeats an earlier row's; expected each of the"
            rep.add(s.path, "structure", "mismatch", f"suffix-array row {int(row):,}: token position "
                    f"{s.pointer(int(row)):,} {what} {n:,} positions; rebuild with `pile-index ngram build`")
            continue
        starts = (off[s.spec.item_lo : s.spec.item_hi + 1] - s.spec.token_lo).astype(np.int64)
        bits = np.unique(np.append(starts, n))
        if s.version == LEGACY_FORMAT_VERSION:  # uint32 words after n pointers
            width, expect, found = 32, np.zeros((n >> 5) + 1, dtype=np.uint32), s.words[n:]
        else:  # bytes after 5 n bytes of pointers
            width, expect, found = 8, np.zeros((n >> 3) + 1, dtype=np.uint8), s.words[5 * n:]
        np.bitwise_or.at(expect, bits // width, (expect.dtype.type(1) << (bits % width).astype(expect.dtype)))
        diff = np.flatnonzero(expect != found)
        if diff.size:
            q = int(diff[0]) * width
            rep.add(s.path, "structure", "mismatch", f"the item-boundary bitmap differs from the store's item starts "
                    f"at token positions {q:,}..{q + width - 1:,}; rebuild with `pile-index ngram build`")
        else:
            rep.add(s.path, "structure", "ok", f"{n:,} suffix pointers (a permutation) and the item-boundary bitmap")


# ----------------------------------------------------------------------------------------------- order files


def _order_files(rep: VerifyReport, store: TokenStore, cfg: OrderConfig, paths: dict[str, Path], bar: _Bar) -> None:
    rebuild = f"delete it and run `{build_command(store.prefix, cfg)}`"
    arrays: dict[str, np.ndarray] = {}
    for kind, path in paths.items():
        if not path.is_file():
            inverse = kind.endswith("_inverse")
            why = f"the {kind} index map is missing; build it with `{build_command(store.prefix, cfg)}`"
            rep.add(path, "exists", "absent" if inverse else "mismatch", "" if inverse else why)
            continue
        _digest(rep, path, bar, build_command(store.prefix, cfg))
        try:
            arrays[kind] = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - a damaged .npy header surfaces as several types; all are damage here
            rep.add(path, "recompute", "mismatch", f"not a readable .npy file ({e}); {rebuild}")
    sizes = np.ascontiguousarray(store.sizes, dtype=np.int32)
    t = int(sizes.sum(dtype=np.int64))
    e = num_epochs(t, cfg.seq_length, cfg.num_samples)
    s = num_samples_total(e, t, cfg.seq_length)
    rng = np.random.RandomState(seed=cfg.seed)
    doc_idx = build_doc_idx(len(sizes), e, rng)
    _compare(rep, paths["doc_idx"], arrays.get("doc_idx"), doc_idx, rebuild)
    if "doc_idx_inverse" in arrays:
        positions = np.empty(doc_idx.size, dtype=np.int32)
        _doc_positions_kernel(doc_idx, np.int64(e), np.zeros(len(sizes), dtype=np.int32), positions)
        _compare(rep, paths["doc_idx_inverse"], arrays["doc_idx_inverse"], positions, rebuild)
        del positions
    sample_idx = build_sample_idx(sizes, doc_idx, cfg.seq_length, e, t)
    del doc_idx
    _compare(rep, paths["sample_idx"], arrays.get("sample_idx"), sample_idx, rebuild)
    del sample_idx
    shuffle_idx = build_shuffle_idx(s, rng)
    _compare(rep, paths["shuffle_idx"], arrays.get("shuffle_idx"), shuffle_idx, rebuild)
    if "shuffle_idx_inverse" in arrays:
        inverse = np.empty_like(shuffle_idx)
        inverse[shuffle_idx] = np.arange(shuffle_idx.size, dtype=shuffle_idx.dtype)
        _compare(rep, paths["shuffle_idx_inverse"], arrays["shuffle_idx_inverse"], inverse, rebuild)


def _compare(rep: VerifyReport, path: Path, found: np.ndarray | None, want: np.ndarray, rebuild: str) -> None:
    """Entry-by-entry comparison of a file's array with the recomputed one."""
    if found is None:
        return  # missing or unreadable: already reported
    if found.shape != want.shape or found.dtype != want.dtype:
        rep.add(path, "recompute", "mismatch", f"expected {want.dtype} {want.shape} for this store and order, found "
                f"{found.dtype} {found.shape}; {rebuild}")
        return
    a, b = found.reshape(-1), want.reshape(-1)
    for lo in range(0, a.size, COMPARE_ENTRIES):
        diff = np.flatnonzero(a[lo : lo + COMPARE_ENTRIES] != b[lo : lo + COMPARE_ENTRIES])
        if diff.size:
            i = lo + int(diff[0])
            where = f"entry {i:,}" if want.ndim == 1 else f"row {i // want.shape[1]:,}"
            rep.add(path, "recompute", "mismatch",
                    f"{where}: {int(a[i]):,}, but the store and order give {int(b[i]):,}; {rebuild}")
            return
    rep.add(path, "recompute", "ok", f"{a.size:,} entries equal the ones recomputed from the store and order")


def verify_or_raise(store: TokenStore, cfg: OrderConfig | None = None, preshuffled: bool = False,
                    progress: bool = False) -> VerifyReport:
    """:func:`verify_corpus`, raising FormatError naming the first mismatch (for ``serve --verify``)."""
    rep = verify_corpus(store, cfg, preshuffled=preshuffled, progress=progress)
    if not rep.ok:
        first = rep.problems[0]
        more = f" (and {len(rep.problems) - 1:,} more problems)" if len(rep.problems) > 1 else ""
        raise FormatError(f"{first.file}: {first.check}: {first.detail}{more}; `pile-index verify` lists them all")
    return rep

