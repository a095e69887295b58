"""Crash safety: ``kill -9`` the ingest, the order build and the n-gram build at random points (30 runs),
check that no output file is readable in a state other than the finished one, rerun, and compare the bytes
with an uninterrupted run."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

RUNS_PER_JOB = 10  # x 3 jobs = 30 runs, at least 20 of them killed while working

ORDER = ["--seed", "1234", "--seq-length", "64", "--num-samples", "6000", "--batch-size", "8"]


def _jobs(prefix: str, inputs: list[str], tok: str) -> dict[str, list[str]]:
    return {
        "ingest": ["ingest", *inputs, "--tokenizer", tok, "--out", prefix, "--append-eod", "--no-progress"],
        "order": ["order", "build", prefix, *ORDER, "--json"],
        "ngram": ["ngram", "build", prefix, "--no-progress", "--shard-tokens", "100000"],
    }


def _outputs(folder: Path) -> dict[str, str]:
    """Final (non-temp) files under ``folder`` -> sha256 (JSON manifests name their folder: normalised)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        # the ingest report (timings, paths) and the index maps' check marker (file mtimes) are written
        # atomically but differ run to run by design
        if p.is_file() and ".tmp-" not in p.name and not p.name.endswith((".ingest_report.json", "_checked.json")):
            data = p.read_bytes()
            if p.suffix == ".json":
                data = data.replace(str(folder).encode(), b"<DIR>")
            out[str(p.relative_to(folder))] = hashlib.sha256(data).hexdigest()
    return out


def _cmd(argv: list[str]) -> list[str]:
    return [sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main(sys.argv[1:]))", *argv]


def _run(argv: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run(_cmd(argv), cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from ingest.demo_corpus import build_demo_corpus, train_demo_tokenizer

    tmp = tmp_path_factory.mktemp("crash")
    files = build_demo_corpus(tmp / "raw", max_docs=400, max_bytes=1_000_000)
    tok = tmp / "tok.json"
    train_demo_tokenizer(files, tok, vocab_size=2048)
    return tmp, [str(f) for f in files], str(tok)


@pytest.mark.slow
def test_kill9_then_rerun_gives_identical_outputs(corpus):
    tmp, inputs, tok = corpus
    ref = tmp / "ref"
    ref.mkdir()
    jobs = _jobs(str(ref / "c"), inputs, tok)
    durations = {name: _run(argv, tmp) for name, argv in jobs.items()}  # in order: each needs the one before
    final = _outputs(ref)
    rng = np.random.default_rng(99)
    kills = 0
    for name in jobs:
        for run in range(RUNS_PER_JOB):
            work = tmp / f"w-{name}-{run}"
            if work.exists():
                shutil.rmtree(work)
            work.mkdir()
            # Inputs of this job: everything the earlier jobs produced (copied from the reference).
            earlier = list(jobs)[: list(jobs).index(name)]
            if earlier:
                for p in ref.iterdir():
                    if p.is_file():
                        shutil.copy(p, work / p.name)
                # only keep what the earlier jobs wrote: drop this job's and later jobs' outputs
                _drop_outputs(work, name)
            argv = _jobs(str(work / "c"), inputs, tok)[name]
            proc = subprocess.Popen(_cmd(argv), cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            # Kill at a random point of the job's run time (measured on the uninterrupted run).
            time.sleep(float(rng.uniform(0.25, 0.95)) * durations[name])
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                kills += 1
            proc.wait()
            # Whatever exists under a final name now is complete: identical to the uninterrupted run's file.
            for rel, sha in _outputs(work).items():
                assert rel in final, f"{name} run {run}: unexpected file {rel}"
                assert sha == final[rel], f"{name} run {run}: {rel} is readable but differs from a finished run"
            _run(argv, tmp)  # rerun resumes / redoes and finishes
            got = _outputs(work)
            want = {k: v for k, v in final.items() if k in got}
            diff = sorted(k for k in got if got[k] != want.get(k))
            assert not diff, f"{name} run {run}: after the rerun {diff} differ from an uninterrupted run"
            assert _owned(name, got), f"{name} run {run}: rerun left its outputs missing: {sorted(got)}"
    assert kills >= 20, f"only {kills} runs were still working when killed; make the corpus larger"


OWN = {"ingest": (".bin", ".idx", ".documents.parquet"), "order": ("_doc_idx.npy", "_sample_idx.npy", "_shuffle_idx.npy"),
       "ngram": (".ngram",)}


def _owned(name: str, files: dict[str, str]) -> bool:
    return all(any(suffix in rel for rel in files) for suffix in OWN[name])


def _drop_outputs(work: Path, job: str) -> None:
    order_names = ("_indexmap_",)
    for p in list(work.iterdir()):
        if job == "order" and any(s in p.name for s in order_names):
            p.unlink()
        if job in ("order", "ngram") and p.name.endswith(".ngram"):
            shutil.rmtree(p)
        if job == "ngram" and p.is_dir():
            shutil.rmtree(p)
