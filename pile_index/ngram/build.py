"""Building the n-gram index: resumable, bounded by memory (format 3), or in fixed-size shards (format 2).

**Format 3** (:func:`build_index` without ``shard_tokens``): one shard per ``.bin`` part (up to 2**40 - 1
tokens, :mod:`.layout`). Each shard's items are cut into parts that fit ``memory`` (the model in
:mod:`.merge`), each part is sorted in RAM by SA-IS and written as a run, and the runs are merged ``fan_in``
at a time, pass after pass, the last pass writing the shard file and its sample. Every run has a completion
marker (``build/shard-NNNNN-parts-AAAAA-BBBBB.run.json``, written after its file and before its inputs are
deleted), so a killed build resumes at the runs it had not finished; with ``ray_address`` the parts are
Ray tasks (the driver writes the markers) and the merges run in the driver; without Ray, the parts are sorted
``threads`` at a time (each within ``memory / threads``) and the last merge pass is cut into ``threads``
merges of consecutive rows. Peak RSS: ``memory`` plus the interpreter and numba (~200 MB) — parts are read
from the ``.bin`` into RAM, the merge's token pages are unmapped when RSS reaches the budget, digests are
streamed by reads.

**Format 2** (``shard_tokens`` given): shards of at most ``shard_tokens`` tokens, each sorted in RAM (~22
bytes a token), as every index before issue 12 was; kept for comparisons and small stores.

``manifest.json`` is written last, with each shard's digests; each shard has its ``shard-NNNNN.json`` marker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numba
import numpy as np

from ..atomic import atomic_path, write_bytes
from ..digests import sha256_array, sha256_file
from ..errors import ConfigError, FormatError
from ..fanout import fan_out, require_ray
from ..files import ngram_build_dir, ngram_manifest_path, ngram_run_marker_path, ngram_run_path
from ..format.store import TokenStore
from ..sidecar import read_json
from .layout import (DEFAULT_SAMPLE_EVERY, DEFAULT_SAMPLE_TOKENS, DIGEST_KEYS, FORMAT_VERSION, HEX64,
                     LEGACY_FORMAT_VERSION, MAX_SHARD_TOKENS, MAX_SHARD_TOKENS_V3, POINTER_BYTES, ShardSpec,
                     index_dir, item_starts, mapped_tokens, plan_shards, sample_rows, shard_path,
                     shard_slice, shard_token_start, tokens_digest)
from .merge import (_part_positions, PART_BYTES_PER_ITEM, PART_BYTES_PER_TOKEN, MAX_BUFFER_ROWS, MAX_FAN_IN, _rss_bytes, chunks_of,
                    merge_runs, part_suffix_array, remove_quietly, split_runs, write_run, write_shard)
from .suffix_array import _INT32_MAX_SYMBOLS, suffix_array

log = logging.getLogger(__package__)  # one logger per package: log lines name the concept

MIN_MEMORY = 1024  # bytes: the smallest budget (tests use a few KB to force many parts and merge passes)
SAMPLE_BLOCK_BYTES = 64 << 20  # tokens read at a time while the sample is gathered
MAX_THREADS = 4  # parts sorted at once by default: each gets memory / threads, so more means more runs to merge


def default_threads() -> int:
    """Parts sorted at once when a shard needs several: the CPUs, at most ``MAX_THREADS``."""
    return max(1, min(MAX_THREADS, os.cpu_count() or 1))


def default_memory() -> int:
    """The default build budget: a quarter of physical RAM (the rest for the page cache and other work)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) // 4
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def peak_rss_bytes() -> int:
    """This process's peak RSS so far (Linux reports ru_maxrss in KB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


# ----------------------------------------------------------------------------------------------------------
# Format 2: fixed-size shards sorted in RAM
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
def _boundary_bits(item_starts, n, words):
    """Set bit p of words (uint32, after the n suffix pointers) for every item start p and for n."""
    for i in range(item_starts.shape[0]):
        p = item_starts[i]
        words[n + (p >> 5)] |= np.uint32(1) << np.uint32(p & 31)
    words[n + (n >> 5)] |= np.uint32(1) << np.uint32(n & 31)



def build_shard(store: TokenStore, spec: ShardSpec, path: Path) -> dict[str, str]:
    """Build one shard's suffix array and boundary bitmap into ``path``, atomically; return its digests
    (``sa_sha256`` of the file, ``tokens_sha256`` of the store tokens it indexes)."""
    tokens = shard_slice(store, spec)
    starts = item_starts(store, spec)
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
        _part_positions(T, SA, 2, n_items + 1, words)
        del T, SA
        _boundary_bits(starts, spec.n_tokens, words)
        words.flush()
        digests = {"sa_sha256": sha256_array(words), "tokens_sha256": sha256_array(tokens)}  # pages still cached
        del words
    return digests



def _marker_digests(marker: Path, want: dict[str, Any], files: dict[Path, int]) -> dict[str, str] | None:
    """The digests a finished shard's marker records, if the marker is for this build and each of ``files``
    has its size; None means build the shard (again). A marker from before digests were recorded gives {}."""
    if not marker.is_file() or any(not p.is_file() or p.stat().st_size != size for p, size in files.items()):
        return None
    try:
        found = read_json(marker, "rebuilding the shard")
    except FormatError:
        return None  # an unreadable marker: rebuild the shard
    if not isinstance(found, dict) or {k: found.get(k) for k in want} != want:
        return None
    return {k: found[k] for k in DIGEST_KEYS if isinstance(found.get(k), str) and HEX64.match(found[k])}


def _build_sharded(store: TokenStore, folder: Path, shard_tokens: int, progress: bool, ray_address: str | None,
                   ray_num_cpus: int | None) -> dict[str, Any]:
    """Format 2: build the missing fixed-size shards; return the manifest."""
    fp = store.fingerprint()
    shards = plan_shards(store, shard_tokens)
    todo = []
    entries: list[dict[str, Any]] = []
    for i, spec in enumerate(shards):
        marker = shard_path(folder, i, ".json")
        want = {"store_fingerprint": fp, "format_version": LEGACY_FORMAT_VERSION, **spec.as_dict(),
                "tokens_digest": tokens_digest(shard_slice(store, spec))}
        entries.append({**spec.as_dict(), "tokens_digest": want["tokens_digest"]})
        digests = _marker_digests(marker, want, {shard_path(folder, i): spec.n_words * 4})
        if digests is not None:
            entries[i].update(digests)
            continue
        todo.append((i, spec, marker, want))
    built: dict[int, dict[str, str]] = {}

    def done(job: tuple, digests: dict[str, str], where: str = "") -> None:
        i, spec, marker, want = job
        built[i] = digests
        write_bytes(marker, json.dumps({**want, **digests}, indent=1).encode())
        log.info("ngram shard %d/%d%s: %s tokens", i + 1, len(shards), where, f"{spec.n_tokens:,}")

    where = " (ray)" if ray_address else ""
    fan_out(build_shard, [(store, job[1], shard_path(folder, job[0])) for job in todo],
            on_done=lambda k, d: done(todo[k], d, where), ray_address=ray_address, ray_num_cpus=ray_num_cpus,
            desc="ngram shards", unit="shard", progress=progress, done_before=len(shards) - len(todo))
    for i, digests in built.items():
        entries[i].update(digests)
    return {"format_version": LEGACY_FORMAT_VERSION, "store_fingerprint": fp, "store_prefixes": store.prefixes,
            "n_items": len(store), "n_tokens": int(store.n_tokens), "dtype": str(store.dtype),
            "shard_tokens": int(shard_tokens), "shards": entries}


def _bar(items: list, progress: bool, desc: str, unit: str) -> Any:
    if not progress:
        return items
    from ..progress import progress_bar

    return progress_bar(items, desc=desc, unit=unit)


# ----------------------------------------------------------------------------------------------------------
# Format 3: parts sorted in RAM, merged on disk
# ----------------------------------------------------------------------------------------------------------


def plan_parts(store: TokenStore, spec: ShardSpec, memory: int, multiple: int = 1) -> list[tuple[int, int]]:
    """The shard's items cut into parts [item_lo, item_hi) whose in-RAM sort fits ``memory`` bytes (an item
    larger than that is a part of its own). Empty items join their neighbours. With several parts, their
    count is rounded up to a ``multiple`` (the parts sorted at once) and the cuts are balanced: the smallest
    budget that still gives that many parts, so no thread sorts a short last part while the others wait."""
    off = store.token_offsets()

    def cost(lo: int, hi: int) -> int:
        return PART_BYTES_PER_TOKEN * int(off[hi] - off[lo]) + PART_BYTES_PER_ITEM * (hi - lo)

    def greedy(budget: int) -> list[tuple[int, int]]:
        parts = []
        lo = spec.item_lo
        while lo < spec.item_hi:
            a, b = lo + 1, spec.item_hi  # the largest hi in [lo + 1, item_hi] with cost(lo, hi) <= budget
            if cost(lo, b) <= budget:
                a = b
            else:
                while a < b:
                    mid = (a + b + 1) >> 1
                    if cost(lo, mid) <= budget:
                        a = mid
                    else:
                        b = mid - 1
            parts.append((lo, a))
            lo = a
        return parts

    parts = greedy(memory)
    if len(parts) == 1:
        return parts
    want = -(-len(parts) // max(1, multiple)) * max(1, multiple)
    lo, hi = cost(spec.item_lo, spec.item_hi) // want, memory  # greedy(hi) has <= want parts; find the least such
    while lo < hi:
        mid = (lo + hi) >> 1
        if len(greedy(mid)) <= want:
            hi = mid
        else:
            lo = mid + 1
    return greedy(hi)


def merge_plan(memory: int) -> tuple[int, int]:
    """(fan_in, buffer_rows) for a budget: half of it for the input and output buffers (5 bytes a row)."""
    rows = max(64, min(MAX_BUFFER_ROWS, memory // (4 * 5 * (MAX_FAN_IN + 1))))
    fan_in = max(2, min(MAX_FAN_IN, memory // (2 * 5 * rows) - 1))
    return fan_in, rows


def merge_tree(n_parts: int, fan_in: int) -> list[list[tuple[int, int]]]:
    """Passes of the merge: pass 0 is the parts [(i, i + 1)], each next pass groups ``fan_in`` runs of the one
    before, the last is [(0, n_parts)]."""
    levels = [[(i, i + 1) for i in range(n_parts)]]
    while len(levels[-1]) > 1:
        prev = levels[-1]
        levels.append([(prev[g][0], prev[min(g + fan_in, len(prev)) - 1][1]) for g in range(0, len(prev), fan_in)])
    return levels


class _ShardBuild:
    """One format-3 shard: its parts, its merge tree, the markers that say which runs are done."""

    def __init__(self, store: TokenStore, folder: Path, i: int, spec: ShardSpec, want: dict[str, Any],
                 memory: int, every: int, width: int, rss_limit: int, threads: int | None = None):
        self.store, self.folder, self.i, self.spec, self.want = store, folder, i, spec, want
        self.every, self.width, self.rss_limit = every, width, rss_limit
        self.parts = plan_parts(store, spec, memory)
        # A shard that fits in one part is sorted whole; else its parts are sorted ``threads`` at a time, each
        # within memory / threads (the part plan, and so the run markers, depend on it; the shard does not).
        self.threads = 1 if len(self.parts) == 1 else max(1, default_threads() if threads is None else threads)
        if self.threads > 1:
            self.parts = plan_parts(store, spec, memory // self.threads, self.threads)
        self.fan_in, self.buffer_rows = merge_plan(memory)
        self.levels = merge_tree(len(self.parts), self.fan_in)
        self.children: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for below, above in zip(self.levels, self.levels[1:]):
            for node in above:
                kids = [c for c in below if node[0] <= c[0] and c[1] <= node[1]]
                if kids != [node]:  # a group of one run is that run, passed up unchanged
                    self.children[node] = kids
        self.root = self.levels[-1][0]
        off = store.token_offsets()
        self.off = off
        h = hashlib.sha256(json.dumps([self.parts, self.fan_in]).encode())
        self.run_want = {**want, "parts_digest": h.hexdigest()}
        self.build_dir = ngram_build_dir(folder)
        block = max(1, SAMPLE_BLOCK_BYTES // store.dtype.itemsize)
        self.block_tokens = min(block, max(1, memory // (2 * store.dtype.itemsize)))

    def rows(self, node: tuple[int, int]) -> int:
        lo, hi = self.parts[node[0]][0], self.parts[node[1] - 1][1]
        return int(self.off[hi] - self.off[lo])

    def run_path(self, node: tuple[int, int]) -> Path:
        return ngram_run_path(self.build_dir, self.i, node[0], node[1])

    def run_done(self, node: tuple[int, int]) -> bool:
        path = self.run_path(node)
        marker = ngram_run_marker_path(path)
        return _marker_digests(marker, {**self.run_want, "lo": node[0], "hi": node[1]},
                               {path: 5 * self.rows(node)}) is not None

    def mark_run(self, node: tuple[int, int]) -> None:
        path = self.run_path(node)
        write_bytes(ngram_run_marker_path(path),
                    json.dumps({**self.run_want, "lo": node[0], "hi": node[1], "rows": self.rows(node)}).encode())

    def drop_run(self, node: tuple[int, int]) -> None:
        path = self.run_path(node)
        remove_quietly(ngram_run_marker_path(path))  # the marker first: a file without one is rebuilt
        remove_quietly(path)

    def leaves_to_build(self, node: tuple[int, int] | None = None) -> list[tuple[int, int]]:
        """The parts whose runs are missing and needed (no finished run above them)."""
        node = node or self.root
        if node != self.root and self.run_done(node):
            return []
        if node not in self.children:
            return [node]
        return [leaf for c in self.children[node] for leaf in self.leaves_to_build(c)]

    def ensure(self, node: tuple[int, int] | None = None) -> dict[str, str] | None:
        """Make ``node``'s run (for the root: the shard file and its sample, returning their digests)."""
        node = node or self.root
        is_root = node == self.root
        if not is_root and self.run_done(node):
            return None
        t0 = time.perf_counter()
        if node not in self.children:  # a part: SA-IS in RAM
            if is_root:
                lo, hi = self.parts[node[0]]
                return self._write_shard([(0, chunks_of(part_suffix_array(self.store, self.spec, lo, hi),
                                                        self.buffer_rows))])
            self.sort_part(node)
            return None
        kids = self.children[node]
        self.sort_parts([c for c in kids if c not in self.children and not self.run_done(c)])
        for c in kids:
            self.ensure(c)
        tokens = mapped_tokens(self.store, self.spec)
        starts = item_starts(self.store, self.spec)
        runs = [self.run_path(c) for c in kids]
        if is_root:  # the last pass: cut into ``threads`` merges of consecutive rows, written at once
            rows = max(64, self.buffer_rows // self.threads)
            pieces = split_runs(tokens, starts, runs, self.threads) if self.threads > 1 else [None]
            digests = self._write_shard([(sum(lo for lo, _ in piece) if piece else 0,
                                          merge_runs(tokens, starts, runs, rows, self.rss_limit, piece))
                                         for piece in pieces])
        else:
            write_run(self.run_path(node), merge_runs(tokens, starts, runs, self.buffer_rows, self.rss_limit))
            self.mark_run(node)
            digests = None
        for c in kids:
            self.drop_run(c)
        log.info("ngram shard %d: runs of parts %d..%d merged (%d runs, %s tokens) in %.1f s", self.i, node[0],
                 node[1] - 1, len(kids), f"{self.rows(node):,}", time.perf_counter() - t0)
        return digests

    def sort_part(self, node: tuple[int, int]) -> None:
        """Sort one part in RAM and write its run and marker (the SA-IS kernels release the GIL, so parts sort
        in parallel threads)."""
        t0 = time.perf_counter()
        lo, hi = self.parts[node[0]]
        sorted_part = part_suffix_array(self.store, self.spec, lo, hi)
        self.build_dir.mkdir(exist_ok=True)
        write_run(self.run_path(node), chunks_of(sorted_part, self.buffer_rows))
        del sorted_part
        self.mark_run(node)
        log.info("ngram shard %d part %d/%d: %s tokens sorted in %.1f s", self.i, node[0] + 1, len(self.parts),
                 f"{self.rows(node):,}", time.perf_counter() - t0)

    def sort_parts(self, leaves: list[tuple[int, int]]) -> None:
        """Sort these parts, ``threads`` at a time."""
        if self.threads == 1 or len(leaves) <= 1:
            for leaf in leaves:
                self.sort_part(leaf)
            return
        with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="ngram-part") as pool:
            for f in [pool.submit(self.sort_part, leaf) for leaf in leaves]:
                f.result()  # re-raises a part's error here

    def _write_shard(self, pieces: list[tuple[int, Any]]) -> dict[str, str]:
        return write_shard(shard_path(self.folder, self.i), shard_path(self.folder, self.i, ".sample"), self.store,
                           self.spec, pieces, self.every, self.width, self.block_tokens)


def _part_task(store: TokenStore, spec: ShardSpec, lo: int, hi: int, path: Path, rows: int) -> int:
    """A Ray task: one part's run file (the driver writes its marker)."""
    raw = part_suffix_array(store, spec, lo, hi)
    path.parent.mkdir(exist_ok=True)
    return write_run(path, chunks_of(raw, rows))


def _build_bounded(store: TokenStore, folder: Path, memory: int, every: int, width: int, progress: bool,
                   ray_address: str | None, ray_num_cpus: int | None, threads: int | None = None) -> dict[str, Any]:
    """Format 3: build the missing shards within ``memory``; return the manifest."""
    fp = store.fingerprint()
    specs = plan_shards(store, MAX_SHARD_TOKENS_V3, MAX_SHARD_TOKENS_V3)
    rss_limit = _rss_bytes() + memory
    entries: list[dict[str, Any]] = []
    builds: list[tuple[int, _ShardBuild, Path, dict[str, Any]]] = []
    for i, spec in enumerate(specs):
        marker = shard_path(folder, i, ".json")
        want = {"store_fingerprint": fp, "format_version": FORMAT_VERSION, **spec.as_dict(),
                "tokens_digest": tokens_digest(shard_slice(store, spec)), "sample_every": every,
                "sample_tokens": width}
        entries.append({**spec.as_dict(), "tokens_digest": want["tokens_digest"]})
        sample_bytes = sample_rows(spec.n_tokens, every) * (width * store.dtype.itemsize + 1)
        digests = _marker_digests(marker, want, {shard_path(folder, i): spec.file_bytes(FORMAT_VERSION),
                                                 shard_path(folder, i, ".sample"): sample_bytes})
        if digests is not None:
            entries[i].update(digests)
            continue
        builds.append((i, _ShardBuild(store, folder, i, spec, want, memory, every, width, rss_limit, threads), marker,
                       want))
    if ray_address:  # the parts as Ray tasks first; a local build sorts each part as its merge needs it
        leaves = [(b, leaf) for _, b, _, _ in builds if len(b.parts) > 1 for leaf in b.leaves_to_build()]
        fan_out(_part_task, [(store, b.spec, *b.parts[leaf[0]], b.run_path(leaf), b.buffer_rows) for b, leaf in leaves],
                on_done=lambda k, rows: leaves[k][0].mark_run(leaves[k][1]), ray_address=ray_address,
                ray_num_cpus=ray_num_cpus, desc="ngram parts", unit="part", progress=progress)
    for i, b, marker, want in _bar(builds, progress, "ngram shards", "shard"):
        t0 = time.perf_counter()
        log.info("ngram shard %d/%d: %s tokens in %d parts (%d sorted at once), merged %d runs at a time (%d "
                 "passes)", i + 1, len(specs), f"{b.spec.n_tokens:,}", len(b.parts), b.threads, b.fan_in,
                 len(b.levels) - 1)
        digests = b.ensure()
        if digests is None:  # the root always writes the shard: a None here is a bug, never a silent skip
            raise RuntimeError(f"shard {i}: the merge's root returned no digests")
        part = store.parts[b.spec.part]
        itemsize = part.dtype.itemsize
        digests["tokens_sha256"] = sha256_file(part.bin_path, start=shard_token_start(store, b.spec) * itemsize,
                                               length=b.spec.n_tokens * itemsize)
        write_bytes(marker, json.dumps({**want, **digests}, indent=1).encode())
        entries[i].update(digests)
        try:
            b.build_dir.rmdir()  # empty once every shard's runs are merged
        except OSError:
            pass
        log.info("ngram shard %d/%d: built in %.1f s, peak RSS %.2f GB", i + 1, len(specs),
                 time.perf_counter() - t0, peak_rss_bytes() / 1e9)
    return {"format_version": FORMAT_VERSION, "store_fingerprint": fp, "store_prefixes": store.prefixes,
            "n_items": len(store), "n_tokens": int(store.n_tokens), "dtype": str(store.dtype),
            "shard_tokens": MAX_SHARD_TOKENS_V3, "pointer_bytes": POINTER_BYTES[FORMAT_VERSION],
            "sample_every": every, "sample_tokens": width, "memory": int(memory), "shards": entries}


def build_index(
    store: TokenStore,
    out_dir: str | os.PathLike | None = None,
    shard_tokens: int | None = None,
    progress: bool = False,
    ray_address: str | None = None,
    ray_num_cpus: int | None = None,
    memory: int | None = None,
    sample_every: int = DEFAULT_SAMPLE_EVERY,
    sample_tokens: int = DEFAULT_SAMPLE_TOKENS,
    threads: int | None = None,
) -> Path:
    """Build (or resume building) the n-gram index of ``store``; return its folder.

    Without ``shard_tokens``: format 3, one shard per ``.bin`` part, sorted within ``memory`` bytes (default
    :func:`default_memory`), with a sample of every ``sample_every``-th row's first ``sample_tokens`` tokens.
    With ``shard_tokens``: format 2, shards of at most that many tokens. Finished shards (and, in format 3,
    finished runs) are kept; the manifest is written last. A format-3 shard too large for one part is cut
    into parts of ``memory / threads`` bytes sorted ``threads`` at a time (default :func:`default_threads`);
    the files are the same bytes for any ``memory`` and ``threads``. With ``ray_address`` ("local", "auto" or a
    cluster address) the shards (format 2) or parts (format 3) are Ray tasks (each worker opens the store by
    its prefixes, so the store must be on a filesystem every worker sees); the files are the same bytes as a
    single-process build.
    """
    folder = Path(out_dir) if out_dir is not None else index_dir(store.prefix)
    if ray_address:
        require_ray()
    if shard_tokens is not None:
        if memory is not None:
            raise ConfigError("pass memory (format 3, bounded build) or shard_tokens (format 2), not both")
        if not 1 <= shard_tokens <= MAX_SHARD_TOKENS:
            raise ConfigError(f"shard_tokens={shard_tokens:,}: expected 1..{MAX_SHARD_TOKENS:,} tokens per shard "
                              f"(suffix pointers are uint32)")
        folder.mkdir(parents=True, exist_ok=True)
        manifest = _build_sharded(store, folder, shard_tokens, progress, ray_address, ray_num_cpus)
    else:
        memory = default_memory() if memory is None else memory
        if memory < MIN_MEMORY:
            raise ConfigError(f"memory={memory:,}: expected at least {MIN_MEMORY:,} bytes for the build")
        if not 1 <= sample_every <= 1 << 30:
            raise ConfigError(f"sample_every={sample_every:,}: expected 1..{1 << 30:,} rows per sample row")
        if not 1 <= sample_tokens <= 255:
            raise ConfigError(f"sample_tokens={sample_tokens:,}: expected 1..255 tokens per sample row")
        if threads is not None and not 1 <= threads <= 1024:
            raise ConfigError(f"threads={threads:,}: expected 1..1,024 parts sorted at once")
        folder.mkdir(parents=True, exist_ok=True)
        log.info("ngram build: memory budget %s bytes (%.2f GB)", f"{memory:,}", memory / 1e9)
        manifest = _build_bounded(store, folder, memory, sample_every, sample_tokens, progress, ray_address,
                                  ray_num_cpus, threads)
    write_bytes(ngram_manifest_path(folder), json.dumps(manifest, indent=1).encode())
    return folder
