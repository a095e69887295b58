"""Crash safety: SIGKILL ``ingest``, ``order build`` and ``ngram build`` at every atomic-write event, check
that every file under a final name is the finished one, rerun, and compare the bytes with an uninterrupted run.

The kill points are deterministic, the same on any machine however loaded: ``PILE_INDEX_KILL_AT=N`` makes
the job SIGKILL itself at its Nth atomic-write event (``pile_index.atomic``: temp created, temp complete,
renamed), and N walks 1, 2, ... until a run finishes. A kill while a temp is half-written leaves the same
final-name state as the kill at its creation, so these points cover every state between two writes.

To keep that cheap, one driver process (this file run as a script) imports the CLI once and forks one
child per kill point and per rerun; the reference outputs come from ordinary ``pile-index`` processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from pile_index.atomic import KILL_AT_ENV

EVENTS_PER_WRITE = 3  # temp created, temp complete, renamed
MAX_POINTS = 500  # a job still killed at this many events is a failure, not an endless loop
ROOT = Path(__file__).resolve().parents[1]
ORDER = ["--seed", "1234", "--seq-length", "64", "--num-samples", "6000", "--batch-size", "8"]
JOBS = ("ingest", "order", "ngram")  # in order: each needs the outputs of the ones before
# Written atomically but different run to run by design: the ingest report (timings) and the index maps'
# check marker (file mtimes). Under a final name they must still be complete JSON.
VARYING = (".ingest_report.json", "_checked.json")


def _argv(job: str, prefix: str, inputs: list[str], tok: str) -> list[str]:
    return {
        "ingest": ["ingest", *inputs, "--tokenizer", tok, "--out", prefix, "--append-eod", "--no-progress"],
        "order": ["order", "build", prefix, *ORDER, "--json"],
        "ngram": ["ngram", "build", prefix, "--no-progress", "--shard-tokens", "30000"],
    }[job]


def _files(folder: Path) -> list[str]:
    """Every file under ``folder`` that is not a temp, relative."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and ".tmp-" not in p.name)


def _temps(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp-" in p.name)


def _outputs(folder: Path) -> dict[str, str]:
    """Final-name files under ``folder`` -> sha256 (JSON naming its folder normalised; VARYING files left out)."""
    out = {}
    for rel in _files(folder):
        if not rel.endswith(VARYING):
            data = (folder / rel).read_bytes()
            if rel.endswith(".json"):
                data = data.replace(str(folder).encode(), b"<DIR>")
            out[rel] = hashlib.sha256(data).hexdigest()
    return out


def _unreadable_json(folder: Path) -> list[str]:
    bad = []
    for rel in _files(folder):
        if rel.endswith(".json"):
            try:
                json.loads((folder / rel).read_bytes())
            except ValueError:
                bad.append(rel)
    return bad


def _cli(argv: list[str], cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop(KILL_AT_ENV, None)
    cmd = [sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main(sys.argv[1:]))", *argv]
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)


# ---- the driver: runs as its own process (python tests/test_crash_safety.py SPEC.json) -------------------

def _prepare(work: Path, ref: Path, inputs_of_job: list[str]) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    for rel in inputs_of_job:
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ref / rel, work / rel)


def _fork_run(main, argv: list[str], kill_at: int | None, log: Path) -> tuple[bool, int]:
    """Run ``main(argv)`` in a forked child; returns (killed by SIGKILL, exit code)."""
    pid = os.fork()
    if pid == 0:  # child: never returns
        rc = 99
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            if kill_at is not None:
                os.environ[KILL_AT_ENV] = str(kill_at)
            rc = main(argv)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(rc)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return os.WTERMSIG(status) == signal.SIGKILL, -os.WTERMSIG(status)
    return False, os.WEXITSTATUS(status)


def _drive(spec: dict) -> dict:
    os.environ.pop(KILL_AT_ENV, None)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # no Rust thread pool in the process that forks
    from cli.main import main

    tmp, ref = Path(spec["tmp"]), Path(spec["ref"])
    results = {}
    for job in JOBS:
        res: dict = {"points": [], "finished_at": None}
        warm = tmp / f"warm-{job}"  # loads numba's cache etc. into this process once, for every child
        _prepare(warm, ref, spec["before"][job])
        res["warm_rc"] = main(_argv(job, str(warm / "c"), spec["inputs"], spec["tok"]))
        res["warm"] = _outputs(warm)
        for n in range(1, MAX_POINTS + 1):
            work = tmp / f"w-{job}-{n}"
            _prepare(work, ref, spec["before"][job])
            argv = _argv(job, str(work / "c"), spec["inputs"], spec["tok"])
            killed, rc = _fork_run(main, argv, n, tmp / f"log-{job}-{n}.txt")
            if not killed:
                res.update(finished_at=n, finished_rc=rc, finished=_outputs(work), finished_temps=_temps(work))
                shutil.rmtree(work)
                break
            point = {"n": n, "after_kill": _outputs(work), "temps_after_kill": _temps(work),
                     "unreadable_after_kill": _unreadable_json(work)}
            _, point["rerun_rc"] = _fork_run(main, argv, None, tmp / f"log-{job}-{n}-rerun.txt")
            point.update(after_rerun=_outputs(work), temps_after_rerun=_temps(work))
            res["points"].append(point)
            shutil.rmtree(work)
        results[job] = res
    return results


# ---- the tests ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from ingest.demo_corpus import build_demo_corpus, train_demo_tokenizer

    tmp = tmp_path_factory.mktemp("crash")
    files = build_demo_corpus(tmp / "raw", max_docs=120, max_bytes=300_000)
    tok = tmp / "tok.json"
    train_demo_tokenizer(files, tok, vocab_size=2048)
    return tmp, [str(f) for f in files], str(tok)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill-point driver forks one child per point (POSIX)")
def test_kill9_at_every_write_then_rerun_gives_identical_outputs(corpus):
    tmp, inputs, tok = corpus
    ref = tmp / "ref"
    ref.mkdir()
    before, after = {}, {}
    for job in JOBS:  # the uninterrupted reference, one ordinary process per job
        before[job] = _files(ref)
        _cli(_argv(job, str(ref / "c"), inputs, tok), tmp)
        after[job] = (_outputs(ref), sorted(set(_files(ref)) - set(before[job])))
    spec = {"tmp": str(tmp), "ref": str(ref), "inputs": inputs, "tok": tok, "before": before,
            "out": str(tmp / "results.json")}
    (tmp / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop(KILL_AT_ENV, None)
    proc = subprocess.run([sys.executable, __file__, str(tmp / "spec.json")], cwd=tmp, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((tmp / "results.json").read_text())

    for job in JOBS:
        want, written = after[job]
        res = results[job]
        assert res["finished_at"] is not None, f"{job}: still killed at write event {MAX_POINTS}"
        assert res["warm_rc"] == 0 and res["warm"] == want, f"{job}: an in-process run differs from the CLI's"
        assert res["finished_rc"] == 0 and res["finished"] == want and not res["finished_temps"], job
        points = res["points"]
        # Every output goes through the atomic layer: at least three kill points per file the job writes.
        assert len(points) == res["finished_at"] - 1 >= EVENTS_PER_WRITE * len(written), (job, len(points), written)
        for p in points:
            where = f"{job} killed at write event {p['n']}"
            for rel, sha in p["after_kill"].items():  # whatever is under a final name is the finished file
                assert want.get(rel) == sha, f"{where}: {rel} is readable but differs from a finished run"
            assert not p["unreadable_after_kill"], f"{where}: partial {p['unreadable_after_kill']}"
            assert p["rerun_rc"] == 0, f"{where}: the rerun failed (log-{job}-{p['n']}-rerun.txt under {tmp})"
            assert p["after_rerun"] == want, f"{where}: after the rerun the outputs differ from an uninterrupted run"
            assert not p["temps_after_rerun"], f"{where}: the rerun left temp files {p['temps_after_rerun']}"
        # The kills did leave temp files behind (the created and complete events), and the reruns removed them.
        with_temps = sum(bool(p["temps_after_kill"]) for p in points)
        assert with_temps >= 2 * len(written), (job, with_temps, written)


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


def test_first_write_into_a_folder_removes_temps_of_dead_writers_only(tmp_path):
    from pile_index.atomic import _host, write_bytes

    host, dead = _host(), _dead_pid()
    stale = [
        f".corpus.bin.tmp-{host}-{dead}-abcd_123",  # atomic_open temp of a writer that is gone
        f".corpus.documents.parquet.tmp-{host}-{dead}-x1y2z3w4.parquet",  # atomic_path temp, same
        ".corpus.bin.tmp-k2j4h5g6",  # unstamped temp of an earlier version
        ".corpus.documents.parquet.tmp-q8w7e6r5.parquet",
    ]
    kept = [
        f".corpus.bin.tmp-{host}-{os.getppid()}-abcdefgh",  # a live writer
        f".corpus.bin.tmp-{host}-{os.getpid()}-abcdefgh",  # this process
        f".corpus.bin.tmp-other-host-{dead}-abcdefgh",  # another machine sharing the folder
        "corpus.bin.tmp-notours",
        ".notes.tmp-1.txt",
    ]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"partial")
    write_bytes(tmp_path / "other.json", b"{}")  # any atomic write into the folder cleans it
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["other.json"])


_HOOK_SCRIPT = """
import json, os, signal, sys
from pile_index.atomic import write_bytes

def job(folder):  # two atomic writes: six events
    write_bytes(folder + "/a.bin", b"a" * 10)
    write_bytes(folder + "/b.bin", b"b" * 10)

states = []
for n in range(1, 8):
    work = os.path.join(sys.argv[1], str(n))
    os.mkdir(work)
    for kill_at in (str(n), None):  # the run killed at event n, then the rerun
        pid = os.fork()
        if pid == 0:
            if kill_at:
                os.environ["PILE_INDEX_KILL_AT"] = kill_at
            job(work)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        states.append([n, pid, os.waitstatus_to_exitcode(status), sorted(os.listdir(work))])
print(json.dumps(states))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks one child per kill point (POSIX)")
def test_kill_hook_kills_at_the_nth_write_event_and_a_rerun_cleans_up(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop(KILL_AT_ENV, None)
    out = subprocess.run([sys.executable, "-c", _HOOK_SCRIPT, str(tmp_path)], env=env, capture_output=True,
                         text=True, check=True).stdout
    k = -signal.SIGKILL
    want_after_kill = {  # event n -> (exit code, files): a's three events, then b's
        1: (k, [".a.bin.tmp"]), 2: (k, [".a.bin.tmp"]), 3: (k, ["a.bin"]),
        4: (k, [".b.bin.tmp", "a.bin"]), 5: (k, [".b.bin.tmp", "a.bin"]), 6: (k, ["a.bin", "b.bin"]),
        7: (0, ["a.bin", "b.bin"]),  # only six events: the run finishes
    }
    states = json.loads(out)
    for (n, pid, rc, names), (_, _, rerun_rc, rerun_names) in zip(states[::2], states[1::2]):
        short = [x.split(".tmp-")[0] + ".tmp" if ".tmp-" in x else x for x in names]
        assert (rc, short) == want_after_kill[n], (n, names)
        temps = [x for x in names if ".tmp-" in x]
        assert all(f"-{pid}-" in x for x in temps), (n, names)  # the temp names its writer
        assert (rerun_rc, rerun_names) == (0, ["a.bin", "b.bin"]), (n, rerun_names)  # the rerun removed it


if __name__ == "__main__":  # the driver (see the module docstring)
    _spec = json.loads(Path(sys.argv[1]).read_text())
    Path(_spec["out"]).write_text(json.dumps(_drive(_spec)))
