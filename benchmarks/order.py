"""Benchmark of the training order (issue 3), all in one run.

(a) Building doc_idx / sample_idx / shuffle_idx for ``--docs`` documents (default 20,000,000) with Pile-like
    lognormal sizes (mean about 1,545 tokens) over 2 epochs: time and peak RSS of pile-index vs a
    straightforward numpy implementation of the same algorithm (``RandomState.shuffle`` and a
    cumsum + searchsorted sample_idx), each in a fresh child process, both saving the three .npy files;
    their outputs are checked to be identical. The store is an ``.idx`` with those sizes and a sparse
    ``.bin`` (no token data is needed to build an order); (a) reads the sizes from one ``.npy`` on both sides.
    The inverse files are timed separately.
(b) Assembling one step's 1,024 rows from raw documents + index maps vs reading the same rows contiguously
    from a preshuffled store, on a smaller real store (``--rows-docs`` documents with random tokens, warm
    page cache). Target: raw <= 2x preshuffled.
(c) In-process latency at the scale of (a): spans of one sample (target <= 20 us) and doc-steps of one
    document (target <= 5 ms), medians over random picks.

Usage: ``python benchmarks/order.py [--docs 20000000] [--rows-docs 100000] [--workdir DIR] [--keep]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _rss import peak_rss_mib  # benchmarks/_rss.py

SEQ_LENGTH = 2048
MEAN_TOKENS = 1545
SIGMA = 1.1


def lognormal_sizes(n_docs: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mu = np.log(MEAN_TOKENS) - SIGMA**2 / 2
    sizes = rng.lognormal(mu, SIGMA, n_docs)
    return np.clip(np.rint(sizes), 1, 2**31 - 1).astype(np.int32)


def two_epoch_num_samples(tokens: int) -> int:
    # 1.5 epochs of samples: GPT-NeoX's epoch rule then gives exactly 2 epochs
    return int(1.5 * tokens) // SEQ_LENGTH


# ------------------------------------------------------------------------------------ children (a)


def child_ours(prefix: str, num_samples: int) -> dict:
    from pile_index.order import OrderConfig, build_doc_idx, build_sample_idx, build_shuffle_idx, write_index_mappings

    # load the numba kernels from their cache (a fixed ~0.3 s a CLI run pays once) outside the timed region
    t0 = time.perf_counter()
    rng = np.random.RandomState(0)
    build_sample_idx(np.array([3, 4], np.int32), build_doc_idx(2, 1, rng), 2, 1, 7)
    build_shuffle_idx(5, rng)
    warm = time.perf_counter() - t0
    import_rss = peak_rss_mib()
    cfg = OrderConfig(seed=1234, seq_length=SEQ_LENGTH, num_samples=num_samples, name="ours")
    t0 = time.perf_counter()
    sizes = np.load(prefix + "_sizes.npy", mmap_mode="r")
    write_index_mappings(sizes, cfg, prefix, progress=False)
    secs = time.perf_counter() - t0
    shuffle = np.load(prefix + f"_ours_indexmap_{num_samples}ns_{SEQ_LENGTH}sl_1234s_shuffle_idx.npy", mmap_mode="r")
    doc = np.load(prefix + f"_ours_indexmap_{num_samples}ns_{SEQ_LENGTH}sl_1234s_doc_idx.npy", mmap_mode="r")
    return {"seconds": secs, "peak_rss_mb": peak_rss_mib(), "import_rss_mb": import_rss,
            "epochs": doc.size // sizes.size, "samples": int(shuffle.size), "kernel_load_s": warm}


def child_numpy(prefix: str, num_samples: int) -> dict:
    """The same algorithm written plainly with numpy (what one writes without a compiled helper)."""
    import_rss = peak_rss_mib()
    t0 = time.perf_counter()
    sizes = np.load(prefix + "_sizes.npy", mmap_mode="r")
    t = int(np.sum(sizes, dtype=np.int64))
    e = 1
    while (e * t - 1) // SEQ_LENGTH < num_samples:
        e += 1
    rng = np.random.RandomState(1234)
    doc_idx = np.tile(np.arange(len(sizes), dtype=np.int32), e)
    rng.shuffle(doc_idx)
    base = f"{prefix}_numpy_indexmap_{num_samples}ns_{SEQ_LENGTH}sl_1234s"
    np.save(base + "_doc_idx.npy", doc_idx, allow_pickle=True)
    s = (e * t - 1) // SEQ_LENGTH
    cum = np.zeros(doc_idx.size + 1, dtype=np.int64)
    np.cumsum(sizes[doc_idx], out=cum[1:])
    del doc_idx
    targets = np.arange(s + 1, dtype=np.int64) * SEQ_LENGTH
    pos = np.searchsorted(cum, targets, side="right") - 1
    sample_idx = np.empty((s + 1, 2), dtype=np.int32)
    sample_idx[:, 0] = pos
    sample_idx[:, 1] = targets - cum[pos]
    sample_idx[0] = 0
    del cum, targets, pos
    np.save(base + "_sample_idx.npy", sample_idx, allow_pickle=True)
    del sample_idx
    shuffle_idx = np.arange(s, dtype=np.uint32)
    rng.shuffle(shuffle_idx)
    np.save(base + "_shuffle_idx.npy", shuffle_idx, allow_pickle=True)
    secs = time.perf_counter() - t0
    return {"seconds": secs, "peak_rss_mb": peak_rss_mib(), "import_rss_mb": import_rss, "epochs": e, "samples": s}


def run_child(kind: str, prefix: str, num_samples: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--prefix", prefix, "--num-samples", str(num_samples)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------ helpers


def make_sparse_store(prefix: str, sizes: np.ndarray) -> None:
    from pile_index.format import write_index

    write_index(prefix + ".idx", np.uint16, sizes, np.arange(sizes.size + 1, dtype=np.int64))
    with open(prefix + ".bin", "wb") as f:
        f.truncate(int(sizes.sum(dtype=np.int64)) * 2)


def median_us(fn, args_list) -> float:
    times = []
    for a in args_list:
        t0 = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e6


def same_files(a: str, b: str) -> bool:
    import filecmp

    return filecmp.cmp(a, b, shallow=False)


# ------------------------------------------------------------------------------------ main


RATIOS: dict[str, float] = {}  # name -> ours against its baseline, for --json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=20_000_000, help="documents for (a) and (c) (default 20M)")
    ap.add_argument("--rows-docs", type=int, default=100_000, help="documents of the real store for (b)")
    ap.add_argument("--steps", type=int, default=20, help="steps timed in (b)")
    ap.add_argument("--workdir", help="folder for the files (default: a temp folder, removed afterwards)")
    ap.add_argument("--keep", action="store_true", help="keep the workdir")
    ap.add_argument("--json", action="store_true", help='print {"ratios": {...}} as the last line')
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", help=argparse.SUPPRESS)
    ap.add_argument("--num-samples", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        res = (child_ours if args.child == "ours" else child_numpy)(args.prefix, args.num_samples)
        print(json.dumps(res))
        return

    work = Path(args.workdir or tempfile.mkdtemp(prefix="pile-index-bench-order-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run_all(args, work)
        if args.json:
            print(json.dumps({"ratios": RATIOS, "targets": {"order_build_speed_vs_numpy": ">= 1.0",
                                                             "order_step_rows_vs_preshuffled": "<= 2.0"}}))
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def run_all(args, work: Path) -> None:
    from pile_index.order import OrderConfig, index_map_paths, open_order

    # warm numba's cache so neither side pays compilation inside the timed region
    tiny = str(work / "tiny")
    make_sparse_store(tiny, lognormal_sizes(1000, seed=1))
    cfg_tiny = OrderConfig(seed=1234, seq_length=SEQ_LENGTH, num_samples=100, name="ours")
    o = open_order(tiny, cfg_tiny, build=True)
    o.spans(0), o.doc_steps(0), o.batch(0) if o.num_samples >= 1024 else o.rows(np.arange(10))

    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          f"(timings are wall-clock; a busy machine inflates both sides)")
    # ---- (a)
    sizes = lognormal_sizes(args.docs)
    tokens = int(sizes.sum(dtype=np.int64))
    num_samples = two_epoch_num_samples(tokens)
    prefix = str(work / "big")
    np.save(prefix + "_sizes.npy", sizes)  # (a) reads the sizes directly; (c) needs a store: sparse .bin
    make_sparse_store(prefix, sizes)
    del sizes
    print(f"(a) build: {args.docs:,} documents, {tokens:,} tokens (mean {tokens / args.docs:,.0f}), "
          f"seq_length {SEQ_LENGTH}, num_samples {num_samples:,}")
    ours = run_child("ours", prefix, num_samples)
    base = run_child("numpy", prefix, num_samples)
    cfg = OrderConfig(seed=1234, seq_length=SEQ_LENGTH, num_samples=num_samples, name="ours")
    ours_paths = index_map_paths(prefix, cfg)
    base_paths = index_map_paths(prefix, OrderConfig(seed=1234, seq_length=SEQ_LENGTH, num_samples=num_samples,
                                                     name="numpy"))
    identical = all(same_files(str(ours_paths[k]), str(base_paths[k])) for k in ours_paths)
    print(f"    epochs {ours['epochs']}, samples {ours['samples']:,}; outputs byte-identical: {identical}")
    print(f"    pile-index : {ours['seconds']:7.2f} s, peak RSS {ours['peak_rss_mb']:7.0f} MB "
          f"(after imports {ours['import_rss_mb']:.0f} MB; kernel cache load {ours['kernel_load_s']:.2f} s, untimed)")
    print(f"    numpy      : {base['seconds']:7.2f} s, peak RSS {base['peak_rss_mb']:7.0f} MB "
          f"(after imports {base['import_rss_mb']:.0f} MB)")
    grow_o = ours["peak_rss_mb"] - ours["import_rss_mb"]
    grow_b = base["peak_rss_mb"] - base["import_rss_mb"]
    print(f"    ratio      : {base['seconds'] / ours['seconds']:.2f}x faster; peak RSS ratio "
          f"{base['peak_rss_mb'] / ours['peak_rss_mb']:.2f}x, above imports {grow_b:.0f} / {grow_o:.0f} MB = "
          f"{grow_b / max(grow_o, 1):.2f}x  (issue's reference, GPT-NeoX Python + C++ helper: 8.7 s, 1.3 GB)")
    RATIOS["order_build_speed_vs_numpy"] = base["seconds"] / ours["seconds"]
    for p in base_paths.values():
        p.unlink()

    order = open_order(prefix, cfg)
    t0 = time.perf_counter()
    order.build_inverse(progress=False)
    print(f"    inverse files (doc-steps): {time.perf_counter() - t0:.2f} s, "
          f"{sum(p.stat().st_size for p in order.inverse_paths().values()) / 1e6:,.0f} MB on disk; "
          f"index maps {sum(p.stat().st_size for p in ours_paths.values()) / 1e6:,.0f} MB")

    # ---- (c)
    order = open_order(prefix, cfg)  # fresh: memmaps, inverse files loaded on first use
    rng = np.random.default_rng(7)
    ks = rng.integers(0, order.trained_samples, 2000)
    docs = rng.integers(0, order.n_docs, 500)
    order.spans(int(ks[0])), order.doc_steps(int(docs[0]))
    spans_us = median_us(lambda k: order.spans(int(k)), ks)
    steps_us = median_us(lambda d: order.doc_steps(int(d)), docs)
    print(f"(c) at {args.docs:,} documents: spans of one sample {spans_us:.1f} us (target <= 20 us); "
          f"doc-steps of one document {steps_us / 1000:.3f} ms (target <= 5 ms)  [medians, warm]")

    # ---- (b)
    run_rows(args, work)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


def run_rows(args, work: Path) -> None:
    from pile_index.format import IndexedDatasetWriter, write_indexed
    from pile_index.order import OrderConfig, open_order

    sizes = lognormal_sizes(args.rows_docs, seed=3)
    rng = np.random.default_rng(3)
    raw = str(work / "rows_raw")
    write_indexed(raw, (rng.integers(2, 50000, int(n), dtype=np.uint16) for n in sizes), np.uint16)
    tokens = int(sizes.sum(dtype=np.int64))
    cfg = OrderConfig(seed=1234, seq_length=SEQ_LENGTH, num_samples=two_epoch_num_samples(tokens), batch_size=1024)
    order = open_order(raw, cfg, build=True)
    steps = min(args.steps, order.num_samples // 1024)
    pre = str(work / "rows_pre")
    with IndexedDatasetWriter(pre, np.uint16) as w:
        for s in range(steps):
            for row in order.batch(s):
                w.add_document(row)
    pre_order = open_order(pre, cfg, preshuffled=True)
    os.sync()  # the new stores' dirty pages written back now, not by the kernel during the timed rounds
    for s in range(steps):  # warm the page cache and check equality
        if not np.array_equal(order.batch(s), pre_order.batch(s)):
            raise SystemExit(f"step {s}: raw and preshuffled rows differ")
    raw_t, pre_t = [], []
    for _ in range(3):
        for s in range(steps):
            t0 = time.perf_counter()
            order.batch(s)
            raw_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            pre_order.batch(s)
            pre_t.append(time.perf_counter() - t0)
    r, p = float(np.median(raw_t)) * 1e3, float(np.median(pre_t)) * 1e3
    RATIOS["order_step_rows_vs_preshuffled"] = r / p
    rmin, pmin = float(np.min(raw_t)) * 1e3, float(np.min(pre_t)) * 1e3
    print(f"(b) one step's 1,024 rows x {SEQ_LENGTH + 1} tokens, store of {args.rows_docs:,} documents "
          f"({tokens * 2 / 1e6:,.0f} MB .bin), {steps} steps x 3, warm page cache:")
    print(f"    raw + index maps {r:.2f} ms, preshuffled contiguous {p:.2f} ms, ratio {r / p:.2f}x (target <= 2x) "
          f"[medians; best: {rmin:.2f} vs {pmin:.2f} ms, {rmin / pmin:.2f}x]")


if __name__ == "__main__":
    main()
