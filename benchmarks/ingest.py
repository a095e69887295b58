"""Benchmark: `pile-index ingest` tokens/s against GPT-NeoX preprocess_data's way, in the same process.

Baseline (GPT-NeoX v1.0 ``tools/preprocess_data.py`` with ``--workers 2``): the main process decompresses
and parses the JSON lines, skips empty texts, and feeds ``multiprocessing.Pool(2).imap(encode, ...,
chunksize=25)``; each worker runs ``tokenizer.encode(text).ids`` one document at a time and sends the id
list back; the main process writes each with the same ``IndexedDatasetWriter``. Ours: ``ingest.pipeline``.
Both use the same tokenizer (the real GPT-NeoX-20B one when present) and must write identical .bin/.idx.

The corpus is Pile-style ``.jsonl.zst`` built from the demo corpus text (the Python standard library's
sources and docstrings, real text every machine has) cycled to ``--mb`` MB, cached under the temp folder.

    python benchmarks/ingest.py            # 200 MB, the issue's size
    python benchmarks/ingest.py --mb 20    # quick
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.demo_corpus import demo_documents, train_demo_tokenizer  # noqa: E402
from _rss import peak_rss_mib, reset_peak, status_kib  # noqa: E402  (benchmarks/_rss.py)
from ingest.pipeline import IngestConfig, ingest  # noqa: E402
from pile_index.format import IndexedDatasetWriter, best_fitting_dtype  # noqa: E402

REAL_TOKENIZER = Path(os.environ.get("PILE_INDEX_TOKENIZER", Path(__file__).resolve().parents[2] / "shared" / "data" / "20B_tokenizer.json"))


def bench_corpus(mb: int, folder: Path, n_files: int = 4) -> list[Path]:
    """``n_files`` .jsonl.zst files with ``mb`` MB of text in all (cached by size and Python version)."""
    tag = f"py{platform.python_version()}-{mb}mb"
    d = folder / tag
    paths = [d / f"{i:02}.jsonl.zst" for i in range(n_files)]
    if all(p.is_file() for p in paths):
        return paths
    d.mkdir(parents=True, exist_ok=True)
    docs = demo_documents(max_docs=10**9, max_bytes=10**12)  # the whole stdlib: ~20 MB of text
    target = mb * 1_000_000
    per_file = target // n_files
    cctx = zstandard.ZstdCompressor(level=3)
    k = 0
    for i, p in enumerate(paths):
        buf = io.BytesIO()
        written = 0
        with cctx.stream_writer(buf, closefd=False) as w:
            while written < per_file:
                d_ = docs[k % len(docs)]
                rec = {"text": d_["text"], "meta": {**d_["meta"], "copy": k // len(docs)}}
                line = (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")
                w.write(line)
                written += len(d_["text"].encode("utf-8"))
                k += 1
        tmp = p.with_suffix(".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(p)
    return paths


# ---- baseline: GPT-NeoX preprocess_data with a 2-worker pool ----------------------------------------

_TOK = None
_EOD = None


def _init_worker(tok_path: str, append_eod: bool) -> None:
    global _TOK, _EOD
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one document at a time, as upstream
    from tokenizers import Tokenizer

    _TOK = Tokenizer.from_file(tok_path)
    _EOD = _TOK.token_to_id("<|endoftext|>") if append_eod else None


def _encode_one(text: str):
    ids = _TOK.encode(text).ids
    if _EOD is not None:
        ids.append(_EOD)
    return ids, len(text)


def _neox_texts(paths: list[Path]):
    # lm_dataformat: zstd stream -> BufferedReader -> one json object per line; filter(lambda x: x, ...)
    for p in paths:
        with open(p, "rb") as fh:
            reader = io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True))
            for line in reader:
                text = json.loads(line)["text"]
                if text:
                    yield text


def cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children (the pool's workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_baseline(paths: list[Path], tok_path: str, out: str, vocab: int, append_eod: bool, workers: int = 2):
    t0 = time.perf_counter()
    n_docs = n_tokens = 0
    ctx = mp.get_context("fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(tok_path, append_eod)) as pool:
        with IndexedDatasetWriter(out, best_fitting_dtype(vocab)) as w:
            for ids, _ in pool.imap(_encode_one, _neox_texts(paths), chunksize=25):
                w.add_item(np.array(ids, dtype=w.dtype))
                w.end_document()
                n_docs += 1
                n_tokens += len(ids)
    return time.perf_counter() - t0, n_docs, n_tokens


# ---- memory ----------------------------------------------------------------------------------------

def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=200, help="MB of text in the generated corpus (default 200)")
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "pile-index-bench"), help="cache/output folder")
    ap.add_argument("--tokenizer", help="tokenizer.json (default: the real GPT-NeoX-20B one if present, else a trained demo BPE)")
    ap.add_argument("--append-eod", action="store_true")
    ap.add_argument("--rounds", type=int, default=1, help="alternate baseline/ours this many times; each round's ratio")
    ap.add_argument("--json", action="store_true", help='print {"ratios": {...}} (one value per round) as the last line')
    args = ap.parse_args()

    folder = Path(args.dir)
    t = time.perf_counter()
    paths = bench_corpus(args.mb, folder / "corpus")
    print(f"corpus: {len(paths)} files, {args.mb} MB of text, {sum(p.stat().st_size for p in paths) / 1e6:.1f} MB "
          f"compressed ({time.perf_counter() - t:.1f} s to build or find) in {paths[0].parent}")
    tok_path = args.tokenizer
    if tok_path is None:
        if REAL_TOKENIZER.is_file():
            tok_path = str(REAL_TOKENIZER)
        else:
            tok_path = str(folder / "demo_tokenizer.json")
            if not Path(tok_path).is_file():
                train_demo_tokenizer(paths[:1], tok_path, vocab_size=50000)
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(tok_path).get_vocab_size()
    print(f"tokenizer: {tok_path} (vocab {vocab:,}); cpus: {os.cpu_count()}; append_eod={args.append_eod}")

    base_prefix = str(folder / "out_baseline")
    ours_prefix = str(folder / "out_ours")
    best_base = best_ours = None
    cpu = {"baseline": [], "ours": []}
    ratios: list[float] = []
    for r in range(args.rounds):
        c0 = cpu_seconds()
        dt, nd, nt = run_baseline(paths, tok_path, base_prefix, vocab, args.append_eod)
        cpu["baseline"].append(cpu_seconds() - c0)
        print(f"round {r + 1}: baseline (GPT-NeoX preprocess_data, Pool(2) imap chunksize=25): "
              f"{nd:,} docs, {nt:,} tokens in {dt:.1f} s = {nt / dt:,.0f} tokens/s, {cpu['baseline'][-1]:.1f} CPU s")
        best_base = dt if best_base is None else min(best_base, dt)

        reset_peak()
        rss = {"start": status_kib("VmRSS")}
        total_docs = nd
        state = {"docs": 0}

        def on_batch(docs: int, tokens: int) -> None:
            state["docs"] += docs
            if "50%" not in rss and state["docs"] >= total_docs // 2:
                rss["50%"] = status_kib("VmRSS")

        cfg = IngestConfig([str(p) for p in paths], ours_prefix, tok_path, append_eod=args.append_eod, progress=False)
        c0 = cpu_seconds()
        res = ingest(cfg, on_batch=on_batch)
        cpu["ours"].append(cpu_seconds() - c0)
        rss["100%"] = status_kib("VmRSS")
        rss["peak"] = status_kib("VmHWM")
        mem = rss
        print(f"round {r + 1}: ours (pile-index ingest): {res.items:,} docs, {res.tokens:,} tokens in "
              f"{res.elapsed_s:.1f} s = {res.tokens / res.elapsed_s:,.0f} tokens/s, {cpu['ours'][-1]:.1f} CPU s")
        print(f"round {r + 1}: ours RSS (MiB): start {mem['start'] / 1024:,.0f}, at 50% of documents "
              f"{mem['50%'] / 1024:,.0f}, at 100% {mem['100%'] / 1024:,.0f}, peak during ingest {mem['peak'] / 1024:,.0f}")
        best_ours = res.elapsed_s if best_ours is None else min(best_ours, res.elapsed_s)
        ratios.append(dt / res.elapsed_s)
        print(f"round {r + 1}: ratio ours / baseline {ratios[-1]:.2f}x wall, "
              f"{cpu['baseline'][-1] / cpu['ours'][-1]:.2f}x CPU; load average {os.getloadavg()[0]:.2f}")
        if (res.items, res.tokens) != (nd, nt):
            print(f"MISMATCH: counts differ: ours {res.items:,}/{res.tokens:,}, baseline {nd:,}/{nt:,}")
            return 1

    same = all(sha256(f"{ours_prefix}{ext}") == sha256(f"{base_prefix}{ext}") for ext in (".bin", ".idx"))
    print(f"identical .bin/.idx: {same}")
    print(f"process max RSS (incl. the baseline's main process): "
          f"{peak_rss_mib():,.0f} MiB")
    base_tps = nt / best_base
    ours_tps = nt / best_ours
    print(f"tokens/s: ours {ours_tps:,.0f} vs baseline {base_tps:,.0f} -> ratio {ours_tps / base_tps:.2f}x "
          f"(best of {args.rounds} round(s); target >= 1.2x on 2 cores)")
    cb, co = min(cpu["baseline"]), min(cpu["ours"])
    print(f"CPU seconds per million tokens: ours {co / nt * 1e6:.2f} vs baseline {cb / nt * 1e6:.2f} -> {cb / co:.2f}x "
          f"(less sensitive to other load on a shared machine than wall-clock tokens/s)")
    print(f"per round: {', '.join(f'{x:.2f}x' for x in ratios)} (min {min(ratios):.2f}x)")
    if args.json:
        print(json.dumps({"ratios": {"ingest_tokens_per_s_vs_preprocess_data_pool2": ratios},
                          "targets": {"ingest_tokens_per_s_vs_preprocess_data_pool2": ">= 1.2"}, "identical": same}))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
