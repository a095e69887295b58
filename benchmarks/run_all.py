"""Run every benchmark in alternating rounds and write one Markdown table of its ratios.

Each benchmark (``benchmarks/*.py`` but this file) is run as a child process with ``--json``; its last
stdout line that is a JSON object with a ``"ratios"`` block (``{"ratios": {"name": value, ...}}``, a value
being one number or one number per round of the benchmark's own, ``ours`` against the baseline the name
gives) is collected. Optional ``"targets": {"name": ">= 1.2"}`` goes into the table. A benchmark whose
source has no ``"ratios"`` block is skipped with a note, as is a run that fails or prints none.

Round ``r`` runs the benchmarks in file order when ``r`` is even and in reverse when odd, so slow drift in
the machine's load falls on both ends. The table has, per ratio, min / median / max over every value of every
round, and a header with the CPU model, core count and the load average before each run (the ratios are
same-run, so they stay meaningful on a busy machine; the absolute figures in each log do not).

    python benchmarks/run_all.py --quick --rounds 3               # small sizes, table to benchmarks/RESULTS.md
    python benchmarks/run_all.py --rounds 3 --out /tmp/full.md    # the issue's sizes (hours on 2 cores)

With ``--readme README.md`` the table also replaces the text between the README's
``<!-- run_all:begin -->`` and ``<!-- run_all:end -->`` lines (a test checks that the README holds exactly
``benchmarks/RESULTS.md`` there); logs of every run go to ``--logs``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- run_all:begin -->", "<!-- run_all:end -->"

# Arguments of --quick (small sizes) per benchmark; a benchmark not listed runs with its defaults.
QUICK_ARGS = {
    "ingest": ["--mb", "20"],
    "order": ["--docs", "1000000", "--steps", "10"],  # (b) on its default 100,000-document store (309 MB)
    "ngram": ["--queries", "200", "--rounds", "2", "--build-rounds", "2"],  # the issue's 100M tokens: ~2 min
    "scorer": ["--shapes", "70m,410m", "--rounds", "1"],  # full sizes (~2.5 min): smaller rows say nothing of the targets
    "api_load": ["--docs", "2000", "--requests", "2000"],
    "ngram_scale": ["--tokens", "2000000", "--queries", "200", "--batch", "20000", "--cold", "10", "--rounds", "2"],
}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def benchmarks(only: list[str] | None) -> list[Path]:
    found = sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_"))
    if only:
        names = {p.stem for p in found}
        unknown = [n for n in only if n not in names]
        if unknown:
            raise SystemExit(f"--only: no benchmark {', '.join(unknown)}; the benchmarks are {', '.join(sorted(names))}")
        found = [p for p in found if p.stem in only]
    return found


def has_ratio_block(path: Path) -> bool:
    return '"ratios"' in path.read_text(encoding="utf-8")


def last_ratio_block(stdout: str) -> dict | None:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                ob = json.loads(line)
            except ValueError:
                continue
            if isinstance(ob, dict) and isinstance(ob.get("ratios"), dict):
                return ob
    return None


def values(v) -> list[float]:
    return [float(x) for x in v] if isinstance(v, list) else [float(v)]


def run_one(path: Path, args: list[str], log_dir: Path, tag: str, timeout_s: float) -> tuple[dict | None, str, float]:
    cmd = [sys.executable, str(path), *args, "--json"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        out, rc = proc.stdout, proc.returncode
        err = proc.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err, rc = f"timed out after {timeout_s:.0f} s", -1
    dt = time.perf_counter() - t0
    (log_dir / f"{tag}.log").write_text(f"$ {' '.join(cmd)}\n# exit {rc}, {dt:.1f} s\n{out}\n--- stderr\n{err}")
    block = last_ratio_block(out)
    why = "" if block is not None else (f"exit {rc}" if rc else "no ratios block in its output")
    return block, why, dt


def table(results: dict[str, list[float]], targets: dict[str, str], header: list[str], notes: list[str]) -> str:
    lines = header + ["", "| ratio (ours / named baseline) | min | median | max | values | target |",
                      "|---|---|---|---|---|---|"]
    for name in sorted(results):
        v = results[name]
        lines.append(f"| `{name}` | {min(v):.2f} | {statistics.median(v):.2f} | {max(v):.2f} | {len(v)} | "
                     f"{targets.get(name, '')} |")
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def replace_section(readme: str, text: str) -> str:
    """``readme`` with the lines between its BEGIN and END markers replaced by ``text``."""
    head, sep, rest = readme.partition(BEGIN + "\n")
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"--readme: expected a line {BEGIN} and, after it, a line {END}")
    return head + sep + text + sep2 + tail


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="rounds over all benchmarks (default 3)")
    ap.add_argument("--quick", action="store_true", help="small sizes (QUICK_ARGS) instead of each benchmark's defaults")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks (file stems)")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"), help="Markdown table written here (default benchmarks/RESULTS.md)")
    ap.add_argument("--logs", default=None, help="folder for each run's output (default: beside --out, NAME.logs)")
    ap.add_argument("--timeout", type=float, default=4 * 3600, help="seconds one benchmark run may take")
    ap.add_argument("--readme", help=f"also put the table into this file between {BEGIN} and {END}")
    args = ap.parse_args()
    if args.rounds < 1:
        raise SystemExit("--rounds: expected >= 1")

    out = Path(args.out)
    log_dir = Path(args.logs) if args.logs else out.with_suffix(".logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    found = benchmarks(args.only)
    runnable = [p for p in found if has_ratio_block(p)]
    notes = [f"`{p.name}` skipped: it prints no `{{\"ratios\": ...}}` block with `--json` yet"
             for p in found if p not in runnable]
    results: dict[str, list[float]] = {}
    targets: dict[str, str] = {}
    loads: list[float] = []
    for r in range(args.rounds):
        order = runnable if r % 2 == 0 else runnable[::-1]
        for p in order:
            extra = QUICK_ARGS.get(p.stem, []) if args.quick else []
            load = os.getloadavg()[0]
            loads.append(load)
            print(f"round {r + 1}/{args.rounds}: {p.name} {' '.join(extra)} (load average {load:.2f})", flush=True)
            block, why, dt = run_one(p, extra, log_dir, f"{p.stem}-round{r + 1}", args.timeout)
            if block is None:
                notes.append(f"`{p.name}` round {r + 1}: {why} (log: {log_dir / f'{p.stem}-round{r + 1}.log'})")
                print(f"  no ratios: {why}", flush=True)
                continue
            for name, v in block["ratios"].items():
                results.setdefault(name, []).extend(values(v))
            targets.update({k: str(v) for k, v in block.get("targets", {}).items()})
            print("  " + ", ".join(f"{k} {', '.join(f'{x:.2f}' for x in values(v))}" for k, v in block["ratios"].items())
                  + f" ({dt:.0f} s)", flush=True)

    header = [
        f"Generated by `python benchmarks/run_all.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')}: "
        f"{cpu_model()}, {os.cpu_count()} cores; load average before each run "
        + (f"{min(loads):.2f} / {statistics.median(loads):.2f} / {max(loads):.2f} (min / median / max)."
           if loads else "(nothing ran)."),
        f"{args.rounds} round(s), alternating order; each benchmark's baseline runs in the same process run as ours.",
    ]
    text = table(results, targets, header, notes)
    write_atomic(out, text)
    if args.readme:
        readme = Path(args.readme)
        write_atomic(readme, replace_section(readme.read_text(encoding="utf-8"), text))
    print(f"\n{text}\nwritten to {out}{f' and {args.readme}' if args.readme else ''}; logs in {log_dir}")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
