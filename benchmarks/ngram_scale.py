"""Benchmark: the n-gram index at scale (issue 12): a build bounded by memory, warm and cold counts, pages read.

Corpus: ``--tokens`` tokens (default 1B) of Zipfian text (exponent 1.1 over 50,277 ids) in documents of
log-normal length (median ~400 tokens), with realistic repetition: ``--dup`` (10%) of the documents are
copies of earlier ones and ``--copy`` (10%) carry a passage of 32-512 tokens copied from an earlier document,
so long matches exist. One GPT-NeoX ``.bin/.idx`` store.

Two layouts of the same store, each built in a child process (wall time and the child's peak RSS; numba
compiled on a tiny store first):

- **format 3** (``pile-index ngram build --memory``): parts that fit ``--memory`` (default: a quarter of what
  one in-RAM pass needs, PART_BYTES_PER_TOKEN a token), merged on disk into one shard, with the in-RAM sample;
- **format 2** (today's layout): shards of ``--old-shard-tokens`` (268M) tokens, each sorted in RAM.

Then, in alternating rounds (``--rounds``: format 3, format 2, format 3, ...; min / median / max over rounds):
warm count latency (``--queries`` n-grams of 1-32 tokens drawn from the corpus, after one warm pass) and cold
count latency: before each cold query every file of the layout is dropped from the page cache
(``posix_fadvise(POSIX_FADV_DONTNEED)``) and the index opened afresh (new mappings), and after it
``mincore`` over fresh mappings of the files counts the 4 KB pages the query brought in (pages per count);
batch counts (``count_many`` of ``--batch`` 32-grams against a loop of ``count``); and the warm trace of
``--passages`` 200-token passages (``NgramIndex.trace``: maximal spans with counts and occurrences).
tokengrams 0.3.3 (``pip install tokengrams==0.3.3``, the ``bench`` extra) is measured on the same store in the
same run when it is installed: its build (wall, peak RSS), bytes/token, warm and cold counts, and its
one-at-a-time count over the same 32-gram batch (it has no batch count); its cold count is its open plus
the count (opening a MemmapIndex reads the table in, so a count after the open is never cold). It counts across document
boundaries, so its counts of long n-grams can be higher; the cost of a count is what is compared.

Last, a table extrapolating to 207B and 300B tokens from the measured per-level costs (the formula is printed).

    python benchmarks/ngram_scale.py --tokens 100000000 --memory 600M
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import mmap
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pile_index.format import TokenStore, write_indexed  # noqa: E402
from pile_index.ngram import NgramIndex, build_index  # noqa: E402
from pile_index.ngram.build import default_threads, merge_plan  # noqa: E402
from pile_index.ngram.merge import PART_BYTES_PER_TOKEN, _give_back  # noqa: E402
from _rss import peak_rss_mib  # noqa: E402  (benchmarks/_rss.py)

VOCAB = 50_277
PAGE = mmap.PAGESIZE


def make_corpus(prefix: Path, n_tokens: int, dup: float, copy: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(VOCAB).astype(np.uint16)
    kept: list[np.ndarray] = []  # a reservoir of earlier documents to copy from

    def docs():
        total = 0
        while total < n_tokens:
            r = rng.random()
            if kept and r < dup:
                d = kept[int(rng.integers(len(kept)))]
            else:
                n = int(min(max(rng.lognormal(6.0, 1.0), 8), 20_000))
                d = perm[np.minimum(rng.zipf(1.1, size=n) - 1, VOCAB - 1)]
                if kept and r < dup + copy:
                    src = kept[int(rng.integers(len(kept)))]
                    m = min(int(rng.integers(32, 513)), src.size)
                    a = int(rng.integers(src.size - m + 1))
                    at = int(rng.integers(d.size + 1))
                    d = np.concatenate([d[:at], src[a : a + m], d[at:]])
            d = d[: n_tokens - total]
            total += d.size
            if len(kept) < 20_000:
                kept.append(d)
            elif rng.random() < 0.01:
                kept[int(rng.integers(len(kept)))] = d
            yield d

    write_indexed(prefix, docs(), np.uint16)


def child_build(prefix: str, out: str, kind: str, memory: int, shard_tokens: int) -> None:
    """In a child process: build one layout, print wall time and peak RSS as JSON."""
    tiny = Path(tempfile.mkdtemp())
    write_indexed(tiny / "t", [np.arange(50, dtype=np.uint16) % 7] * 3, np.uint16)
    build_index(TokenStore(str(tiny / "t")), tiny / "a", memory=4096)  # compile / load the numba kernels
    build_index(TokenStore(str(tiny / "t")), tiny / "b", shard_tokens=60)
    base = peak_rss_mib() * 2**20
    t0 = time.perf_counter()
    store = TokenStore(prefix)
    if kind == "tg":
        from tokengrams import MemmapIndex

        Path(out).mkdir(parents=True, exist_ok=True)
        MemmapIndex.build(f"{prefix}.bin", str(Path(out) / "tokengrams.table"), vocab=2**16, verbose=False)
    elif kind == "v3":
        build_index(store, out, memory=memory)
    else:
        build_index(store, out, shard_tokens=shard_tokens)
    print(json.dumps({"build_s": time.perf_counter() - t0, "peak_rss": peak_rss_mib() * 2**20,
                      "rss_before": base}))


def build(prefix: Path, out: Path, kind: str, memory: int, shard_tokens: int) -> dict:
    r = subprocess.run([sys.executable, __file__, "--_child", kind, str(prefix), str(out), str(memory), str(shard_tokens)],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if r.returncode:
        sys.exit(f"{kind} build failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


_libc = ctypes.CDLL(None, use_errno=True)


def drop(paths: list[Path]) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_pages(paths: list[Path]) -> int:
    """Pages of these files in the page cache (mincore over a fresh read-only mapping of each)."""
    total = 0
    for p in paths:
        size = p.stat().st_size
        if size == 0:
            continue
        with open(p, "rb") as f:
            mm = mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ)
            addr = np.frombuffer(mm, dtype=np.uint8).ctypes.data
            n = (size + PAGE - 1) // PAGE
            vec = (ctypes.c_ubyte * n)()
            if _libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
            total += sum(b & 1 for b in bytes(vec))
            del addr
            mm.close()
    return total


def files_of(store: TokenStore, folder: Path) -> list[Path]:
    return [Path(p.bin_path) for p in store.parts] + sorted(f for f in folder.iterdir() if f.suffix in (".sa", ".sample"))


def warm_times(fn, items: list, unit: float) -> list[float]:
    """fn(x) for each item once (the warm pass), then each call's time in ns / unit."""
    for x in items:
        fn(x)
    out = []
    for x in items:
        t = time.perf_counter_ns()
        fn(x)
        out.append((time.perf_counter_ns() - t) / unit)
    return out


def measure_tokengrams(prefix: Path, folder: Path, queries: list[list[int]], n_cold: int, batch: np.ndarray) -> dict:
    """The same figures for tokengrams' MemmapIndex (one count at a time: it has no batch count)."""
    from tokengrams import MemmapIndex

    table = folder / "tokengrams.table"
    files = [Path(f"{prefix}.bin"), table]
    idx = MemmapIndex(f"{prefix}.bin", str(table), vocab=2**16)
    rows = [[int(x) for x in q] for q in batch]
    for q in rows[:1000]:
        idx.count(q)
    t = time.perf_counter()
    for q in rows:
        idx.count(q)
    t_loop = time.perf_counter() - t
    warm = warm_times(idx.count, queries, 1e3)
    cold, pages = [], []
    for q in queries[:n_cold]:
        del idx
        drop(files)
        t = time.perf_counter_ns()  # its open maps the table and reads it in: a cold count is open + count
        idx = MemmapIndex(f"{prefix}.bin", str(table), vocab=2**16)
        idx.count(q)
        cold.append((time.perf_counter_ns() - t) / 1e3)
        pages.append(resident_pages(files))
    return {"warm_p50_us": pct(warm, 50), "warm_p99_us": pct(warm, 99), "cold_p50_ms": pct(cold, 50) / 1e3,
            "cold_p99_ms": pct(cold, 99) / 1e3, "pages_p50": pct(pages, 50), "pages_p99": pct(pages, 99),
            "batch_k_per_s": len(rows) / t_loop / 1e3, "batch_x_loop": 1.0}


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def measure(store: TokenStore, folder: Path, queries: list[list[int]], n_cold: int, batch: np.ndarray,
            passages: list[np.ndarray]) -> dict:
    idx = NgramIndex(store, folder, check_tokens=False)
    idx.count_many(batch)  # compile, and a warm pass (threads started, pages in)
    t = time.perf_counter()
    idx.count_many(batch)
    t_batch = time.perf_counter() - t
    t = time.perf_counter()
    for q in batch:
        idx.count(q)
    t_loop = time.perf_counter() - t
    warm = warm_times(idx.count, queries, 1e3)
    traces = warm_times(idx.trace, passages, 1e6)
    files = files_of(store, folder)
    cold, pages = [], []
    for part in store.parts:  # pages this process has mapped stay cached whatever fadvise says: unmap them
        _give_back(part.tokens)
    for q in queries[:n_cold]:
        del idx
        drop(files)
        idx = NgramIndex(store, folder, check_tokens=False)
        for sh in idx.shards:  # opening touched pages (bitmap ends, the kernels' compile probe): unmap them ...
            for a in (sh.tokens, sh.words):
                while a is not None and getattr(a, "_mmap", None) is None:
                    a = a.base if isinstance(a, np.ndarray) else None
                if a is not None:
                    _give_back(a)
        drop(files)  # ... and drop them; the sample stays, in RAM
        t = time.perf_counter_ns()
        idx.count(q)
        cold.append((time.perf_counter_ns() - t) / 1e3)
        pages.append(resident_pages(files))
    return {"warm_p50_us": pct(warm, 50), "warm_p99_us": pct(warm, 99), "cold_p50_ms": pct(cold, 50) / 1e3,
            "cold_p99_ms": pct(cold, 99) / 1e3, "pages_p50": pct(pages, 50), "pages_p99": pct(pages, 99),
            "batch_k_per_s": len(batch) / t_batch / 1e3, "batch_x_loop": t_loop / t_batch,
            "trace_p50_ms": pct(traces, 50), "trace_p99_ms": pct(traces, 99)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        _, _, kind, prefix, out, memory, shard_tokens = sys.argv
        child_build(prefix, out, kind, int(memory), int(shard_tokens))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=1_000_000_000)
    ap.add_argument("--memory", type=int, help="format 3 budget in bytes (default: a quarter of one in-RAM pass)")
    ap.add_argument("--old-shard-tokens", type=int, default=1 << 28)
    ap.add_argument("--dup", type=float, default=0.10)
    ap.add_argument("--copy", type=float, default=0.10)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=200_000, help="32-grams per batch count (count_many vs a loop)")
    ap.add_argument("--cold", type=int, default=100, help="cold queries per round")
    ap.add_argument("--tokengrams-cold", type=int, default=10,
                    help="cold tokengrams counts per round (each reopens its table, which reads it in)")
    ap.add_argument("--passages", type=int, default=20, help="200-token passages traced per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", help="work folder on a real disk (default: a temp folder; not tmpfs)")
    ap.add_argument("--json", action="store_true", help='print {"ratios": {...}} (format 3 / format 2) as the last line')
    args = ap.parse_args()
    memory = args.memory or args.tokens * PART_BYTES_PER_TOKEN // 4
    work = Path(args.dir or tempfile.mkdtemp(prefix="ngram_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    prefix = work / "corpus"
    t0 = time.perf_counter()
    if not Path(f"{prefix}.bin").exists():
        make_corpus(prefix, args.tokens, args.dup, args.copy, args.seed)
    store = TokenStore(str(prefix))
    print(f"corpus: {store.n_tokens:,} tokens, {len(store):,} documents ({time.perf_counter() - t0:.0f} s); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    layouts = {"v3": work / "v3.ngram", "v2": work / "v2.ngram"}
    try:
        import tokengrams  # noqa: F401

        layouts["tg"] = work / "tokengrams"
    except ImportError:
        print("tokengrams: not installed (pip install tokengrams==0.3.3), skipped")
    saved = work / "builds.json"
    builds = json.loads(saved.read_text()) if saved.exists() else {}
    for kind, folder in layouts.items():
        done = (folder / "tokengrams.table").exists() if kind == "tg" else (folder / "manifest.json").exists()
        if not done or kind not in builds:
            builds[kind] = build(prefix, folder, kind, memory, args.old_shard_tokens)
            saved.write_text(json.dumps(builds))
            print(f"{kind} build: {builds[kind]['build_s']:.1f} s, peak RSS {builds[kind]['peak_rss'] / 1e9:.2f} GB "
                  f"(budget {memory / 1e9:.2f} GB; interpreter + numba {builds[kind]['rss_before'] / 1e9:.2f} GB)")
    rng = np.random.default_rng(args.seed + 1)
    queries = []
    sizes = np.asarray(store.sizes)
    offs = store.token_offsets()
    tokens = store.parts[0].tokens
    while len(queries) < args.queries:
        d = int(rng.integers(len(store)))
        m = int(rng.choice([1, 2, 4, 8, 16, 32]))
        if sizes[d] < m:
            continue
        o = int(offs[d]) + int(rng.integers(sizes[d] - m + 1))
        queries.append([int(x) for x in tokens[o : o + m]])
    long_docs = np.flatnonzero(sizes[: int(store.item_offsets[1])] >= 32)  # items of the first part (its tokens)
    d = rng.choice(long_docs, args.batch)
    at = offs[d] + (rng.random(args.batch) * (sizes[d] - 31)).astype(np.int64)
    batch = np.asarray(tokens)[at[:, None] + np.arange(32)].astype(np.int64)  # warm 32-gram batch counts
    # 200-token passages to trace: a window of a corpus document (so long matches exist), its second half
    # replaced by fresh Zipfian tokens half of the time (so spans end inside the passage)
    long200 = np.flatnonzero(sizes[: int(store.item_offsets[1])] >= 200)
    passages = []
    for d in rng.choice(long200, args.passages):
        a = int(offs[d]) + int(rng.integers(int(sizes[d]) - 199))
        p = np.asarray(tokens[a : a + 200]).astype(np.int64)
        if rng.random() < 0.5:
            p[100:] = np.minimum(rng.zipf(1.1, size=100) - 1, VOCAB - 1)
        passages.append(p)
    results: dict[str, list[dict]] = {k: [] for k in layouts}
    for r in range(args.rounds):
        for kind, folder in layouts.items():
            if kind == "tg":
                results[kind].append(measure_tokengrams(prefix, folder, queries, args.tokengrams_cold, batch))
            else:
                results[kind].append(measure(store, folder, queries, args.cold, batch, passages))
    print(f"\nload average after the rounds: {os.getloadavg()[0]:.1f}")
    summary = {}
    for kind, folder in layouts.items():
        if kind == "tg":
            bpt = ((folder / "tokengrams.table").stat().st_size + store.n_tokens * 2) / store.n_tokens
            print(f"\ntokengrams: 1 table, {bpt:.3f} bytes/token on disk with the store's 2")
        else:
            idx = NgramIndex(store, folder, check_tokens=False)
            disk = idx.disk_bytes()
            bpt = (disk + store.n_tokens * 2) / store.n_tokens
            sample = sum(f.stat().st_size for f in folder.glob("*.sample"))
            print(f"\n{kind}: {len(idx.shards)} shards, {bpt:.3f} bytes/token on disk with the store's 2, "
                  f"in-RAM sample {sample / 1e6:.1f} MB")
        for key in results[kind][0]:
            vals = [x[key] for x in results[kind]]
            summary[(kind, key)] = statistics.median(vals)
            print(f"  {key:12s} min {min(vals):10.3f}  median {statistics.median(vals):10.3f}  max {max(vals):10.3f}")
        summary[(kind, "bpt")] = bpt
    if "v3" in builds:
        n = store.n_tokens
        threads = default_threads()

        def n_parts(tokens: float) -> int:
            """The build's plan: one part if it fits, else parts of memory / threads, a multiple of threads."""
            if tokens <= memory // PART_BYTES_PER_TOKEN:
                return 1
            return math.ceil(math.ceil(tokens / (memory // threads // PART_BYTES_PER_TOKEN)) / threads) * threads

        parts = n_parts(n)
        fan = merge_plan(memory)[0]
        passes = math.ceil(math.log(parts, fan)) if parts > 1 else 0
        per_token = builds["v3"]["build_s"] / n
        page_ms = summary[("v3", "cold_p50_ms")] / max(summary[("v3", "pages_p50")], 1)
        print(f"\nextrapolation (format 3, --memory {memory / 1e9:.1f} GB kept; measured: {parts} parts, {passes} "
              f"merge passes, {per_token * 1e9:.1f} s per 1B tokens, {page_ms:.3f} ms per page read cold)")
        print("  build_s(N) = N * t_tok * (1 + passes(N)) / (1 + passes_measured), passes(N) = ceil(log_fan(N * "
              f"{PART_BYTES_PER_TOKEN} / memory));")
        print("  disk(N) = N * bytes_per_token; RAM(query) = sample(N) = N * 17 / 256 bytes;")
        print("  cold(N) = pages_p50 * t_page (the sample keeps the disk levels at log2(256) per search, flat in N)")
        print(f"  {'tokens':>8s} {'build h':>9s} {'disk TB':>8s} {'sample GB':>10s} {'cold ms':>8s}")
        for big in (207e9, 300e9):
            p = n_parts(big)
            ps = math.ceil(math.log(p, fan)) if p > 1 else 0
            b = big * per_token * (1 + ps) / (1 + passes)
            print(f"  {big / 1e9:7.0f}B {b / 3600:9.1f} {big * summary[('v3', 'bpt')] / 1e12:8.2f} "
                  f"{big * 17 / 256 / 1e9:10.1f} {summary[('v3', 'cold_p50_ms')]:8.2f}")
    if args.json:  # format 3 against format 2 (today's layout); lower is better for each
        ratios = {f"ngram_scale_v3_{k}_vs_v2": builds["v3"][k] / builds["v2"][k] for k in ("build_s", "peak_rss")}
        ratios.update({f"ngram_scale_v3_{k}_vs_v2": [a[k] / b[k] for a, b in zip(results["v3"], results["v2"]) if b[k]]
                       for k in ("warm_p50_us", "cold_p50_ms", "pages_p50")})
        if "tg" in builds:
            ratios.update({f"ngram_scale_v3_{k}_vs_tokengrams": builds["v3"][k] / builds["tg"][k] for k in ("build_s", "peak_rss")})
            ratios.update({f"ngram_scale_v3_{k}_vs_tokengrams": [a[k] / b[k] for a, b in zip(results["v3"], results["tg"]) if b[k]]
                           for k in ("warm_p50_us", "cold_p50_ms")})
        ratios["ngram_scale_count_many_vs_loop_speed"] = [x["batch_x_loop"] for x in results["v3"]]
        targets = {"ngram_scale_v3_warm_p50_us_vs_v2": "<= 1.0", "ngram_scale_count_many_vs_loop_speed": ">= 20",
                   "ngram_scale_v3_build_s_vs_tokengrams": "<= 1.0", "ngram_scale_v3_peak_rss_vs_tokengrams": "<= 1.0"}
        print(json.dumps({"ratios": ratios, "targets": targets}))


if __name__ == "__main__":
    main()
