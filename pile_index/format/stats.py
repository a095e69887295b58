"""Facts about a store read off its tokens: smallest and largest id, how often EOD (token 0) occurs.

Pythia issue 175 asks whether the deduped training data contains token 0 at all; ``token_stats``
settles it for any store in one pass (numba, chunked over the memmap, about 1 GB/s per core).
Results are cached beside the store in ``PREFIX.stats.json``, keyed by what they describe: the store's
fingerprint (header counts and sizes) and each ``.bin``'s size, mtime, ctime (a token rewritten in place
changes the ctime even when the mtime is put back) and a sampled digest of its tokens (all of them up to
131,072 tokens: the ctime clock can be coarser than two quick writes), and sealed with a sha256 of the record
itself, so an edited or damaged cache is recomputed, never reported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np

from .. import files
from ..atomic import write_bytes
from ..digests import sampled_digest
from ..errors import FormatError
from ..progress import progress_bar
from ..sidecar import load_sidecar
from .store import TokenStore

log = logging.getLogger(__name__)

CHUNK = 1 << 26  # tokens per pass: 128 MiB of uint16, keeps page-cache pressure bounded


@numba.njit(cache=True, nogil=True)
def _min_max_zeros(tokens):
    lo = np.int64(1) << 62
    hi = -(np.int64(1) << 62)
    zeros = 0
    for i in range(tokens.shape[0]):
        t = np.int64(tokens[i])
        if t < lo:
            lo = t
        if t > hi:
            hi = t
        if t == 0:
            zeros += 1
    return lo, hi, zeros


def stats_path(store: TokenStore) -> Path:
    return files.stats_path(store.prefix)


_STATS_SPEC = {
    "fingerprint": str,
    "bins": [{"path": str, "size": int, "mtime_ns": int, "ctime_ns": int, "sample": str}],
    "token_stats": {"min_token": (int, None), "max_token": (int, None), "eod_count": int},
    "digest": str,
}


def _cache_key(store: TokenStore) -> dict[str, Any]:
    bins = []
    for part in store.parts:
        st = os.stat(part.bin_path)
        bins.append({"path": os.path.abspath(part.bin_path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                     "ctime_ns": st.st_ctime_ns, "sample": sampled_digest(part.tokens)})
    return {"fingerprint": store.fingerprint(), "bins": bins}


def _seal(record: dict[str, Any]) -> str:
    body = {k: record[k] for k in ("fingerprint", "bins", "token_stats")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def cached_token_stats(store: TokenStore) -> dict[str, Any] | None:
    """The cached statistics if ``PREFIX.stats.json`` is intact and describes the store as it is now, else None
    (the reason is logged: no cache, another store, a ``.bin`` changed since, or a damaged record)."""
    path = stats_path(store)
    if not os.path.lexists(path):
        return None
    try:
        rec = load_sidecar(path, _STATS_SPEC, "it is a cache: it is recomputed")
    except FormatError as e:
        log.info("%s", e)
        return None
    if rec["digest"] != _seal(rec):
        log.info("%s: its digest does not match its content (edited or damaged); recomputing", path)
        return None
    if {k: rec[k] for k in ("fingerprint", "bins")} != _cache_key(store):
        log.info("%s: describes another state of the store (fingerprint, or a .bin's size, times or tokens); "
                 "recomputing", path)
        return None
    ts = rec["token_stats"]
    lo, hi, eod = ts["min_token"], ts["max_token"], ts["eod_count"]
    empty = store.n_tokens == 0
    if (lo is None) != empty or (hi is None) != empty or not 0 <= eod <= store.n_tokens or (
            not empty and not (lo <= hi and (eod == 0 or lo <= 0 <= hi))):
        log.info("%s: values inconsistent with the store (%s); recomputing", path, ts)
        return None
    return {"min_token": lo, "max_token": hi, "eod_count": eod}


def token_stats(store: TokenStore, progress: bool = False, use_cache: bool = True) -> dict[str, Any]:
    """``{"min_token", "max_token", "eod_count"}`` over every token of the store (None when empty)."""
    if use_cache:
        cached = cached_token_stats(store)
        if cached is not None:
            return cached
    key = _cache_key(store)
    lo, hi, zeros = None, None, 0
    total = store.n_tokens
    bar = progress_bar(total=total, unit="tok", unit_scale=True, enabled=progress, desc="token stats")
    for part in store.parts:
        toks = part.tokens
        for s in range(0, toks.shape[0], CHUNK):
            a, b, z = _min_max_zeros(toks[s : s + CHUNK])
            lo = int(a) if lo is None else min(lo, int(a))
            hi = int(b) if hi is None else max(hi, int(b))
            zeros += int(z)
            bar.update(min(CHUNK, toks.shape[0] - s))
    bar.close()
    result = {"min_token": lo, "max_token": hi, "eod_count": zeros}
    record = {**key, "token_stats": result}
    record["digest"] = _seal(record)
    try:
        write_bytes(stats_path(store), json.dumps(record).encode())
    except OSError:
        pass  # a read-only data folder still gets the answer, just not the cache
    return result


@dataclass(frozen=True, slots=True)
class StoreInfo:
    """``pile-index info``: a store's counts from its headers, its token statistics (None when not scanned and
    not cached) and whether a documents table lies beside it."""

    prefixes: list[str]
    items: int
    documents: int
    tokens: int
    dtype: str
    flavor: list[str]
    fingerprint: str
    min_token: int | None
    max_token: int | None
    eod_count: int | None
    empty_items: int
    largest_item_tokens: int
    has_documents_table: bool


def corpus_info(store: TokenStore, scan: bool = True, progress: bool = False) -> StoreInfo:
    """Counts from the headers, plus token statistics when ``scan`` (or when cached)."""
    if scan:
        stats = token_stats(store, progress=progress)
    else:
        stats = cached_token_stats(store) or {"min_token": None, "max_token": None, "eod_count": None}
    sizes = np.asarray(store.sizes)
    return StoreInfo(
        prefixes=list(store.prefixes), items=len(store),
        documents=sum(max(p.index.doc_count - 1, 0) for p in store.parts), tokens=int(store.n_tokens),
        dtype=str(store.dtype), flavor=sorted({p.index.flavor for p in store.parts}), fingerprint=store.fingerprint(),
        min_token=stats["min_token"], max_token=stats["max_token"], eod_count=stats["eod_count"],
        empty_items=int(np.count_nonzero(sizes == 0)) if sizes.size else 0,
        largest_item_tokens=int(sizes.max()) if sizes.size else 0,
        has_documents_table=store.documents_path().is_file(),
    )
