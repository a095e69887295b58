"""Benchmark: pile-index's GPT-NeoX scorer vs transformers' GPTNeoXForCausalLM on the same weights and rows.

Both sides compute per-token losses of the same rows under the same random-weight Pythia-shaped checkpoint
(written once to a temp folder in Hugging Face layout); ours also computes rank, entropy and the one-pass
memorization flag (its normal work), and optionally the greedy memorization score. Each side runs in a fresh
subprocess so that peak memory (VmHWM: everything the process touched, torch's allocator included)
is measured fairly; both import torch, and the baseline RSS after loading the model is printed too. Each
child first scores one row alone (a full-length warm-up) and notes its peak there, then times the pass at
the shape's batch: peak memory is reported at 1 row and at that batch, from the same processes.
The per-token losses of the two sides are compared (max abs diff).

Rounds alternate the sides (ours, transformers, ours, transformers, ...); round r's ratio is ours in round r
against transformers in round r, and every round's ratio is printed with min / median / max (a shared
machine slows single runs, so one good round proves nothing). Ours also reports where its time went
(attention, MLP, the chunked output projection with its statistics, the rest) and its GFLOP/s against
the CPU's peak, computed from /proc/cpuinfo (cores x GHz x fp32 FLOPs per cycle of its vector unit).

CPU (default): the 70m shape (seq_length 2048, 2 rows, batch 2) and the 410m shape (hidden 1,024, 24 layers,
16 heads; 2 rows of 2048 at batch 2, the batch ``score_rows`` picks for it on CPU: ``auto_batch_size``), fp32
compute on a checkpoint stored in fp16 as Pythia's are. transformers widens every tensor to fp32 at load
(1,978 MiB loaded at 410m); ours keeps the layers' matrices and the input embedding in fp16 and widens each
where it is used (1,261 MiB loaded), with the same fp32 products. transformers' full (batch, seq, vocab)
logits and their log-softmax grow with the batch (412 MiB each per row at 410m), ours stay one 32 MiB chunk. On a CUDA device (``--cuda``): model-FLOPs utilisation for the 70m, 160m, 410m and 1.4b
shapes in bf16, and the same ratio against transformers (bf16, sdpa).

    python benchmarks/scorer.py                                   # CPU, 70m and 410m, 3 rounds (~6 min on 2 cores)
    python benchmarks/scorer.py --shapes 410m --rows 4 --batch 4 --rounds 1     # memory at a larger batch
    python benchmarks/scorer.py --shapes 70m --seq-length 256 --rounds 2          # quick
    python benchmarks/scorer.py --cuda --cuda-shapes 70m,160m,410m,1.4b
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pile_index.scorer import ScoreOptions, load_model, resolve_checkpoint, score_rows  # noqa: E402
from pile_index.scorer.model import GPTNeoX, pythia_shape  # noqa: E402
from _rss import peak_rss_mib, rss_mib  # noqa: E402  (benchmarks/_rss.py)

TOKENIZER_VOCAB = 50277  # rows use real token ids only (the padded vocab rows are never inputs)


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: robust to other jobs sharing the cores."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_peak() -> tuple[float, str]:
    """fp32 peak FLOP/s of this machine's CPUs from /proc/cpuinfo, and the formula used. FLOPs per cycle per
    core: 2 FMA pipes x fp32 lanes x 2; the lanes are 16 for AVX-512 on Intel, 8 for AVX2/FMA and for
    AVX-512 on AMD Zen 4 (512-bit instructions run on 256-bit pipes), 4 otherwise. GHz is the clock
    /proc/cpuinfo reports (a VM's nominal clock: turbo may run above it)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    field = lambda name: next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith(name)), "")
    flags = set(field("flags").split())
    amd = field("vendor_id") == "AuthenticAMD"
    if "avx512f" in flags and not amd:
        lanes, unit = 16, "AVX-512"
    elif "avx512f" in flags:
        lanes, unit = 8, "AVX-512 on 256-bit pipes (AMD)"
    elif {"avx2", "fma"} <= flags:
        lanes, unit = 8, "AVX2 + FMA"
    else:
        lanes, unit = 4, "SSE"
    cores = len(os.sched_getaffinity(0))
    ghz = float(field("cpu MHz") or 0) / 1000
    per_cycle = 2 * lanes * 2
    peak = cores * ghz * 1e9 * per_cycle
    return peak, (f"{field('model name') or 'unknown CPU'}: {cores} cores x {ghz:.2f} GHz x {per_cycle} fp32 "
                  f"FLOP/cycle ({unit}: 2 FMA x {lanes} lanes x 2) = {peak / 1e9:,.0f} GFLOP/s")


def write_checkpoint(folder: Path, shape: str, seed: int = 0) -> None:
    """A random-weight Pythia-shaped checkpoint in HF layout, stored as Pythia's are: fp16 tensors and
    config.json in Pythia's own form. Both sides compute in fp32 on CPU (transformers widens every tensor at
    load; ours widens the layers' matrices where used, see ``pile_index.scorer.model.kept_narrow``)."""
    from safetensors.torch import save_file

    cfg = pythia_shape(shape)
    torch.manual_seed(seed)
    model = GPTNeoX(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name.endswith("final_layer_norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.02)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    config = {
        "architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "hidden_act": "gelu",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads, "intermediate_size": cfg.intermediate_size,
        "rotary_pct": cfg.rotary_pct, "rotary_emb_base": 10000, "layer_norm_eps": 1e-5,
        "use_parallel_residual": True, "max_position_embeddings": 2048, "tie_word_embeddings": False,
        "bos_token_id": 0, "eos_token_id": 0, "torch_dtype": "float16",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=1))


# ------------------------------------------------------------------------------------------- children


class Shares:
    """Wall time spent in each Attention and MLP module and in the model body, by forward hooks (a few
    perf_counter calls per layer; the ops are synchronous on CPU)."""

    def __init__(self, net) -> None:
        self.t = {"attention": 0.0, "mlp": 0.0, "body": 0.0}
        self._open: dict[str, float] = {}
        from pile_index.scorer.model import MLP, Attention
        for m in net.modules():
            name = "attention" if isinstance(m, Attention) else "mlp" if isinstance(m, MLP) else None
            if name:
                self._hook(m, m, name)
        self._hook(net.gpt_neox.embed_in, net.gpt_neox.final_layer_norm, "body")

    def _hook(self, first, last, name: str) -> None:
        first.register_forward_pre_hook(lambda *a: self._open.__setitem__(name, time.perf_counter()))
        last.register_forward_hook(lambda *a: self.t.__setitem__(name, self.t[name] + time.perf_counter()
                                                                  - self._open[name]))

    def reset(self) -> None:
        self.t = dict.fromkeys(self.t, 0.0)


def gemm_ceiling() -> float:
    """FLOP/s of one large fp32 GEMM (2,048^3) on this machine now: what the matmul library reaches under
    the present load, to read ours against (best of 3)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    best = float("inf")
    for _ in range(4):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * 2048**3 / best


def child(args: argparse.Namespace) -> None:
    rows = np.load(args.rows_file)
    dev = torch.device(args.device)
    dtype = torch.float32 if dev.type == "cpu" else torch.bfloat16
    shares = None
    if args.side == "ours":
        net, _ = load_model(resolve_checkpoint(args.folder), dev, dtype)
        opts = ScoreOptions(per_token=True, memorization_score=args.memorization, batch_size=args.batch)
        shares = Shares(net) if dev.type == "cpu" else None

        def run(batch: np.ndarray) -> np.ndarray:
            return score_rows(net, batch, opts)["token_nll"]
    else:
        import torch.nn.functional as F
        from transformers import GPTNeoXForCausalLM

        net = GPTNeoXForCausalLM.from_pretrained(args.folder, dtype=dtype).to(dev).eval()  # sdpa attention

        @torch.no_grad()
        def run(batch: np.ndarray) -> np.ndarray:
            out = []
            for i in range(0, len(batch), args.batch):
                x = torch.from_numpy(batch[i : i + args.batch].astype(np.int64)).to(dev)
                logits = net(x[:, :-1]).logits
                nll = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten(), reduction="none")
                out.append(nll.view(x.shape[0], -1).cpu().numpy())
            return np.concatenate(out)

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base = rss_mib()
    run(rows[:1])  # one row alone: warm-up (kernel selection, numba cache, allocator) and the 1-row peak
    sync()
    peak_one = peak_rss_mib()
    cuda_one = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None
    run(rows[: args.batch, : min(rows.shape[1], 129)])  # and at the batch's width (short rows)
    sync()
    best = None
    for _ in range(args.repeats):  # best of N passes: other jobs on a shared machine only ever slow a pass
        if shares:
            shares.reset()
        t0, c0 = time.perf_counter(), cpu_seconds()
        nll = np.concatenate([run(rows[i : i + args.batch]) for i in range(0, len(rows), args.batch)])
        sync()
        dt, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        if best is None or dt < best[0]:
            best = (dt, cpu, dict(shares.t) if shares else None)
    dt, cpu, t = best
    np.save(args.nll_out, nll)
    result = {
        "seconds": dt, "tokens": int(nll.size), "tokens_per_s": nll.size / dt,
        "tokens_per_cpu_s": nll.size / cpu,
        "peak_rss_mib": peak_rss_mib(), "peak_one_row_mib": peak_one,
        "loaded_rss_mib": base,
        "cuda_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None,
        "cuda_peak_one_row_mib": cuda_one,
    }
    if t:  # head = the chunked output projection with its statistics (all but the body)
        result["shares"] = {"attention": t["attention"] / dt, "mlp": t["mlp"] / dt,
                            "output projection + statistics": (dt - t["body"]) / dt,
                            "rest (embedding, LayerNorms, residuals)": (t["body"] - t["attention"] - t["mlp"]) / dt}
        result["gemm_ceiling_flops"] = gemm_ceiling()
    print(json.dumps(result))


def run_child(side: str, folder: Path, rows_file: Path, nll_out: Path, device: str, batch: int,
              repeats: int, memorization: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", side, "--folder", str(folder), "--rows-file", str(rows_file),
           "--nll-out", str(nll_out), "--device", device, "--batch", str(batch), "--repeats", str(repeats)]
    if memorization:
        cmd.append("--memorization")
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        raise SystemExit(f"{side} child failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------------------------- parent

NAMES = {"hf": "transformers", "ours": "pile-index", "ours+mem": "pile-index+mem"}
SHAPE_ROWS = {"70m": (2, 2), "410m": (2, 2)}
"""CPU rows per pass and batch per shape: the batch ``score_rows`` picks on CPU for 2,048 tokens is 5 rows at
70m and 2 at 410m (``auto_batch_size``); a 410m round (both sides, plus each one's 1-row warm-up) takes about
1.5 minutes on 2 cores."""


def spread(v: list[float]) -> str:
    return (f"min {min(v):.2f}x / median {statistics.median(v):.2f}x / max {max(v):.2f}x "
            f"(rounds: {', '.join(f'{x:.2f}' for x in v)})")


def compare(shape: str, seq_length: int, n_rows: int, batch: int, device: str, tmp: Path,
            peak: tuple[float, str] | None, with_memorization: bool, repeats: int, rounds: int) -> None:
    cfg = pythia_shape(shape)
    folder = tmp / f"ckpt-{shape}"
    if not folder.exists():
        write_checkpoint(folder, shape)
    rows = np.random.default_rng(0).integers(0, TOKENIZER_VOCAB, (n_rows, seq_length + 1), dtype=np.int64)
    rows_file = tmp / f"rows-{shape}.npy"
    np.save(rows_file, rows)
    flops = cfg.forward_flops_per_token(seq_length)
    peak_flops = peak[0] if peak else None
    print(f"\n== {shape} shape ({cfg.n_params():,} params), seq_length {seq_length:,}, {n_rows} rows per pass, "
          f"batch {batch}, {rounds} alternating rounds (best of {repeats} passes per run), {device}, "
          f"{'fp32' if device == 'cpu' else 'bf16'}; {flops / 1e6:,.1f} MFLOP/token", flush=True)
    print(f"{'round':<7}{'side':<16}{'tokens/s':>10}{'tok/CPU-s':>11}{'GFLOP/s':>9}{'of peak':>9}"
          f"{'peak RSS MiB':>14}{'at 1 row':>10}{'loaded RSS':>12}{'CUDA peak MiB':>15}", flush=True)
    speed, mem, mem_one, diffs, share_rounds, ceilings = [], [], [], [], [], []
    for r in range(rounds):
        res = {}
        for side in ("ours", "hf"):  # alternating: ours, transformers, ours, transformers, ...
            res[side] = run_child(side, folder, rows_file, tmp / f"nll-{side}.npy", device, batch, repeats)
        if with_memorization:
            res["ours+mem"] = run_child("ours", folder, rows_file, tmp / "nll-mem.npy", device, batch, repeats, True)
        diffs.append(float(np.abs(np.load(tmp / "nll-hf.npy") - np.load(tmp / "nll-ours.npy")).max()))
        for side, x in res.items():
            gf = x["tokens_per_s"] * flops / 1e9
            of_peak = f"{100 * gf * 1e9 / peak_flops:.1f}%" if peak_flops else "-"
            cp = f"{x['cuda_peak_mib']:,.0f}" if x["cuda_peak_mib"] is not None else "-"
            print(f"{r + 1:<7}{NAMES[side]:<16}{x['tokens_per_s']:>10,.1f}{x['tokens_per_cpu_s']:>11,.1f}{gf:>9,.1f}"
                  f"{of_peak:>9}{x['peak_rss_mib']:>14,.0f}{x['peak_one_row_mib']:>10,.0f}"
                  f"{x['loaded_rss_mib']:>12,.0f}{cp:>15}", flush=True)
        o, h = res["ours"], res["hf"]
        speed.append(o["tokens_per_s"] / h["tokens_per_s"])
        mem.append(o["cuda_peak_mib"] / h["cuda_peak_mib"] if device != "cpu" else o["peak_rss_mib"] / h["peak_rss_mib"])
        one = "cuda_peak_one_row_mib" if device != "cpu" else "peak_one_row_mib"
        mem_one.append(o[one] / h[one])
        if "shares" in o:
            share_rounds.append(o["shares"])
            ceilings.append(o["gemm_ceiling_flops"])
    RATIOS[f"scorer_{shape}_{device}_speed_vs_transformers"] = speed
    RATIOS[f"scorer_{shape}_{device}_peak_memory_vs_transformers"] = mem
    if batch > 1:
        RATIOS[f"scorer_{shape}_{device}_peak_memory_1_row_vs_transformers"] = mem_one
    print(f"speed pile-index / transformers: {spread(speed)}")
    print(f"peak memory pile-index / transformers, batch {batch}: {spread(mem)}")
    print(f"peak memory pile-index / transformers, 1 row: {spread(mem_one)}")
    print(f"per-token loss max abs diff: {max(diffs):.2e}")
    if share_rounds:
        keys = list(share_rounds[0])
        print("pile-index time shares (min / median / max over rounds): " + "; ".join(
            f"{k} {100 * min(d[k] for d in share_rounds):.0f} / {100 * statistics.median(d[k] for d in share_rounds):.0f}"
            f" / {100 * max(d[k] for d in share_rounds):.0f}%" for k in keys))
        print(f"one 2,048^3 fp32 GEMM in the same runs: {', '.join(f'{c / 1e9:,.0f}' for c in ceilings)} GFLOP/s")


RATIOS: dict[str, list[float]] = {}  # name -> ours against its baseline, one value per round, for --json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="70m,410m", help="Pythia shapes for the CPU comparison (default 70m,410m)")
    ap.add_argument("--seq-length", type=int, default=2048, help="tokens per row, excluding the label shift")
    ap.add_argument("--rows", type=int, default=None, help="rows timed per pass (default per shape: 70m 2, 410m 2)")
    ap.add_argument("--batch", type=int, default=None, help="rows per forward pass (default per shape: 70m 2, 410m 2)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (ours, transformers) per shape")
    ap.add_argument("--repeats", type=int, default=1, help="timed passes per run; the best one counts")
    ap.add_argument("--memorization", action="store_true", help="also time ours with the greedy memorization score")
    ap.add_argument("--peak-gflops", type=float, default=None, help="CPU fp32 peak (default: from /proc/cpuinfo)")
    ap.add_argument("--cuda", action="store_true", help="run the CUDA comparison (MFU) instead of the CPU one")
    ap.add_argument("--cuda-shapes", default="70m,160m,410m,1.4b")
    ap.add_argument("--cuda-rows", type=int, default=64)
    ap.add_argument("--cuda-batch", type=int, default=16)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="device bf16 dense peak (H100 SXM: 989)")
    ap.add_argument("--json", action="store_true", help='print {"ratios": {...}, "targets": {...}} as the last line')
    # child mode (internal)
    ap.add_argument("--child", choices=["ours", "hf"], help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    ap.add_argument("--rows-file", help=argparse.SUPPRESS)
    ap.add_argument("--nll-out", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.side = args.child
        return child(args)
    if args.rounds < 1:
        raise SystemExit("--rounds: expected >= 1")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="pile-index-bench-") as d:
        tmp = Path(d)
        if args.cuda:
            if not torch.cuda.is_available():
                raise SystemExit("--cuda: no CUDA device visible to torch")
            print(torch.cuda.get_device_name())
            peak = (args.peak_tflops * 1e12, f"{args.peak_tflops:,.0f} TFLOP/s bf16 dense (--peak-tflops)")
            for shape in args.cuda_shapes.split(","):
                compare(shape, args.seq_length, args.cuda_rows, args.cuda_batch, "cuda", tmp, peak,
                        args.memorization, args.repeats, args.rounds)
        else:
            peak = cpu_peak() if args.peak_gflops is None else (args.peak_gflops * 1e9, "--peak-gflops")
            print(f"CPU peak: {peak[1]}")
            for shape in args.shapes.split(","):
                n_rows, batch = SHAPE_ROWS.get(shape, (1, 1))
                compare(shape, args.seq_length, args.rows or n_rows, args.batch or batch, "cpu", tmp, peak,
                        args.memorization, args.repeats, args.rounds)
    if args.json:
        print(json.dumps({"ratios": RATIOS, "targets": {k: ">= 1.0" if "speed" in k else "<= 0.5" for k in RATIOS}}))


if __name__ == "__main__":
    main()
