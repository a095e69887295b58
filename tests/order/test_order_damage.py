"""Index maps and inverse files damaged in place (same size, mtime restored) or behind a forged check marker:
every look-up ends in a FormatError naming the file, never in a crash or a wrong number.

The CLI cases run in a subprocess, so an out-of-bounds read would show as a signal exit, not a dead test run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from pile_index.errors import FormatError
from pile_index.format import IndexedDataset
from pile_index.order import (OrderConfig, checked_marker_key, checked_marker_path, index_map_paths, inverse_paths,
                              load_index_mappings, open_order)
from tests.stores import ordered_store

ROOT = Path(__file__).resolve().parents[2]
SIZES = [40, 0, 1, 300, 7, 129, 64, 2, 90, 500, 33, 12, 0, 51]
CFG = OrderConfig(seed=5, seq_length=32, num_samples=100, batch_size=4)  # 3 epochs of 1,229 tokens
OPTS = ["--seed", "5", "--seq-length", "32", "--num-samples", "100", "--batch-size", "4"]
# in-range-looking garbage far outside every array: int32 for doc_idx / sample_idx, uint32 for shuffle_idx
HUGE = {"doc_idx": 2_000_000_000, "sample_idx": 2_000_000_000, "shuffle_idx": 4_000_000_000,
        "doc_idx_inverse": 2_000_000_000, "shuffle_idx_inverse": 4_000_000_000}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    prefix, order = ordered_store(tmp_path_factory.mktemp("damage"), SIZES, CFG)
    assert order.epochs == 3
    return prefix


def all_paths(prefix: str) -> dict[str, Path]:
    return {**index_map_paths(prefix, CFG), **inverse_paths(prefix, CFG)}


def copy_order(prefix: str, dest: Path) -> str:
    """The store, its maps and inverse files copied to ``dest``, checked once there (so the marker exists)."""
    dest.mkdir(parents=True, exist_ok=True)
    src = Path(prefix)
    for p in src.parent.glob(src.name + "*"):
        if not p.name.endswith("_checked.json"):
            shutil.copy2(p, dest / p.name)
    out = str(dest / src.name)
    load_index_mappings(out, CFG)
    assert checked_marker_path(index_map_paths(out, CFG)).is_file()
    return out


def damage_in_place(path: Path, fn) -> None:
    """Apply ``fn`` to the array in the file itself (no new inode), then set the mtime back."""
    st = path.stat()
    a = np.load(path, mmap_mode="r+")
    fn(a)
    a.flush()
    del a
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)


def forge_marker(prefix: str) -> None:
    """A marker that says the files as they are now passed the full check."""
    paths = index_map_paths(prefix, CFG)
    key = checked_marker_key(paths, IndexedDataset(prefix).sizes)
    checked_marker_path(paths).write_text(json.dumps(key))


def set_all(kind: str):
    def fn(a):
        if kind == "sample_idx":
            a[1:] = HUGE[kind]  # row 0 stays (0, 0) so the cheap load check passes
        else:
            a[:] = HUGE[kind]
    return fn


@pytest.mark.parametrize("kind", ["doc_idx", "sample_idx", "shuffle_idx"])
def test_marker_not_trusted_after_an_in_place_change(built, tmp_path, kind):
    prefix = copy_order(built, tmp_path)
    damage_in_place(all_paths(prefix)[kind], set_all(kind))
    with pytest.raises(FormatError, match=f"_{kind}.npy: entry"):
        load_index_mappings(prefix, CFG)


def test_damaged_maps_never_crash_the_cli(built, tmp_path):
    """sample / batch / doc-steps / order stats over each map damaged in place, with the mtime restored
    (the marker then fails on ctime) or with a forged marker (then the kernels' own checks answer)."""
    cases, expect = [], []
    for kind in ("doc_idx", "sample_idx", "shuffle_idx"):
        for how in ("mtime", "forged"):
            prefix = copy_order(built, tmp_path / f"{kind}-{how}")
            damage_in_place(all_paths(prefix)[kind], set_all(kind))
            if how == "forged":
                forge_marker(prefix)
            for argv in (["sample", prefix, *OPTS, "--step", "1", "--slot", "2"],
                         ["batch", prefix, *OPTS, "--step", "0", "--to", "2", "--out", f"{prefix}.rows.npy"],
                         ["doc-steps", prefix, *OPTS, "3"],
                         ["order", "stats", prefix, *OPTS]):
                cases.append(argv)
                expect.append((kind, how, argv[0]))
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import contextlib, io, json, sys\n"
        "from cli.main import main\n"
        "out = []\n"
        "for argv in json.load(open(sys.argv[1])):\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):\n"
        "        rc = main(argv)\n"
        "    out.append([rc, err.getvalue()])\n"
        "print(json.dumps(out))\n")
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(driver), str(tmp_path / "cases.json")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    results = json.loads(r.stdout.strip().splitlines()[-1])
    for (kind, how, cmd), (rc, err) in zip(expect, results, strict=True):
        lines = [x for x in err.splitlines() if "error:" in x]
        assert rc == 2 and len(lines) == 1 and "Traceback" not in err, (kind, how, cmd, rc, err)
        assert "FormatError" not in err and ".npy: entry " in lines[0], (kind, how, cmd, err)
        if cmd in ("sample", "batch") or how == "mtime":
            assert f"_{kind}.npy: entry " in lines[0], (kind, how, cmd, err)  # the damaged file is named
        assert "order build" in lines[0]  # and the fix


def test_damaged_map_behind_a_forged_marker_is_an_api_error(built, tmp_path):
    prefix = copy_order(built, tmp_path)
    damage_in_place(all_paths(prefix)["shuffle_idx"], set_all("shuffle_idx"))
    forge_marker(prefix)
    settings = Settings(prefixes=[prefix], seed=5, seq_length=32, num_samples=100, batch_size=4)
    with TestClient(create_app(settings)) as client:
        for url in ("/v1/samples/1/2", "/v1/batches/0", "/v1/documents/3/steps"):
            r = client.get(url)
            assert r.status_code == 500 and r.json()["error"]["type"] == "bad_store", url
            assert "_shuffle_idx" in r.json()["error"]["message"], url


@pytest.mark.parametrize("how", ["repeat", "other_doc", "swap", "huge"])
def test_damaged_doc_idx_inverse_is_a_named_error(built, tmp_path, how):
    prefix = copy_order(built, tmp_path)
    good = open_order(prefix, CFG)
    want_other = good.doc_steps(3)
    positions = np.load(all_paths(prefix)["doc_idx_inverse"])
    other = int(positions[3 * 3])  # a position of document 3

    def fn(a):
        s = slice(5 * 3, 6 * 3)  # document 5's 3 entries (3 epochs)
        if how == "repeat":  # the case: one row listed twice
            a[s.start + 1] = a[s.start]
        elif how == "other_doc":
            a[s.start + 1] = other
        elif how == "swap":
            a[s.start], a[s.start + 1] = int(a[s.start + 1]), int(a[s.start])
        else:
            a[s.start] = HUGE["doc_idx_inverse"]

    damage_in_place(all_paths(prefix)["doc_idx_inverse"], fn)
    order = open_order(prefix, CFG)
    with pytest.raises(FormatError, match=r"_doc_idx_inverse\.npy: entry 1[56]: .*doc_idx is damaged"):
        order.doc_steps(5)
    with pytest.raises(FormatError, match=r"_doc_idx_inverse\.npy"):
        order.stats()
    assert order.doc_steps(3) == want_other  # what the damage does not touch still answers


def test_damaged_shuffle_idx_inverse_is_a_named_error(built, tmp_path):
    prefix = copy_order(built, tmp_path)
    good = open_order(prefix, CFG)
    rows = good.doc_rows(np.array([5]))
    k = int(rows["sample_index"][0])
    u = int(good.maps.shuffle_idx[k])
    damage_in_place(all_paths(prefix)["shuffle_idx_inverse"], lambda a: a.__setitem__(u, (k + 1) % a.shape[0]))
    with pytest.raises(FormatError, match=rf"_shuffle_idx_inverse\.npy: entry {u:,}: .*shuffle_idx is damaged"):
        open_order(prefix, CFG).doc_steps(5)


def test_inverse_build_refuses_a_damaged_doc_idx_behind_a_forged_marker(built, tmp_path):
    prefix = copy_order(built, tmp_path)
    for p in inverse_paths(prefix, CFG).values():
        p.unlink()
    damage_in_place(all_paths(prefix)["doc_idx"], lambda a: a.__setitem__(7, HUGE["doc_idx"]))
    forge_marker(prefix)
    with pytest.raises(FormatError, match=r"_doc_idx\.npy: entry 7: expected a document index"):
        open_order(prefix, CFG, build=True)
    assert not any(p.exists() for p in inverse_paths(prefix, CFG).values())


def _ref_row(ds, doc_idx, sample_idx, shuffle_idx, k):
    """GPT2Dataset.__getitem__ over the given (possibly damaged) arrays, bounds-checked by Python."""
    u = int(shuffle_idx[k])
    f, a = int(sample_idx[u][0]), int(sample_idx[u][1])
    last, b = int(sample_idx[u + 1][0]), int(sample_idx[u + 1][1])
    if f == last:
        return np.asarray(ds.get(int(doc_idx[f])))[a : b + 1]
    parts = [np.asarray(ds.get(int(doc_idx[f])))[a:]]
    parts += [np.asarray(ds.get(int(doc_idx[i]))) for i in range(f + 1, last)]
    parts.append(np.asarray(ds.get(int(doc_idx[last])))[: b + 1])
    return np.concatenate(parts)


def test_fuzz_values_changed_in_place_behind_a_forged_marker(built, tmp_path):
    """300 random value changes in the five files, the marker forged each time: every query (rows, spans,
    doc_rows, stats) ends in a FormatError or in the answer the files give. A damaged inverse file alone
    must give exactly the undamaged answer or an error (every entry a query follows is checked)."""
    prefix = copy_order(built, tmp_path)
    paths = all_paths(prefix)
    pristine = {k: np.load(p) for k, p in paths.items()}
    good = open_order(prefix, CFG)
    all_docs = np.arange(len(SIZES))
    want_doc_rows = good.doc_rows(all_docs)
    want_stats = good.stats()
    ds = IndexedDataset(prefix)
    rng = np.random.default_rng(11)
    kinds = list(paths)
    outcomes = {"error": 0, "answer": 0}
    for i in range(300):
        kind = kinds[i % len(kinds)]
        for k, p in paths.items():  # back to pristine, in place
            damage_in_place(p, lambda a, k=k: a.__setitem__(slice(None), pristine[k]))
        flat = pristine[kind].reshape(-1)
        j = int(rng.integers(0, flat.size))
        choice = int(rng.integers(0, 4))
        if choice == 0:
            value = HUGE[kind]
        elif choice == 1:
            value = int(flat[int(rng.integers(0, flat.size))])  # another entry's value: in range, wrong
        elif choice == 2:
            value = int(flat[j]) + int(rng.choice([-1, 1]))
        else:
            value = 0 if kind in ("shuffle_idx", "shuffle_idx_inverse") else -1 if flat[j] != -1 else 0
        if kind in ("shuffle_idx", "shuffle_idx_inverse"):
            value %= 2**32
        damage_in_place(paths[kind], lambda a: a.reshape(-1).__setitem__(j, value))
        forge_marker(prefix)
        try:
            order = open_order(prefix, CFG)
            ks = np.arange(order.num_samples)
            rows = order.rows(ks)
            spans = [order.spans(int(k)) for k in ks]
            doc_rows = order.doc_rows(all_docs)
            stats = order.stats()
        except FormatError:
            outcomes["error"] += 1
            continue
        outcomes["answer"] += 1
        arrays = {k: np.load(p) for k, p in paths.items()}
        for k in ks:
            want = _ref_row(ds, arrays["doc_idx"], arrays["sample_idx"], arrays["shuffle_idx"], int(k))
            np.testing.assert_array_equal(rows[k], want)
            assert sum(s["doc_end"] - s["doc_start"] for s in spans[k]) == CFG.seq_length + 1
        if kind.endswith("_inverse"):
            for key, v in want_doc_rows.items():
                np.testing.assert_array_equal(doc_rows[key], v)
            assert stats == want_stats
    assert outcomes["error"] > 100 and outcomes["answer"] > 10, outcomes


def test_inverse_build_refuses_a_document_repeated_in_doc_idx(built, tmp_path):
    # in range, but one document 4 times in 3 epochs (behind a forged marker): counting it would write past
    # its slots of the inverse file
    prefix = copy_order(built, tmp_path)
    for p in inverse_paths(prefix, CFG).values():
        p.unlink()
    doc_idx = np.load(all_paths(prefix)["doc_idx"])
    j = int(np.flatnonzero(doc_idx != doc_idx[0])[0])
    damage_in_place(all_paths(prefix)["doc_idx"], lambda a: a.__setitem__(j, a[0]))
    forge_marker(prefix)
    with pytest.raises(FormatError, match=r"_doc_idx\.npy: entry \d+: expected every document as often as there "
                                          r"are epochs"):
        open_order(prefix, CFG, build=True)


@pytest.mark.parametrize("kind", ["doc_idx", "sample_idx", "shuffle_idx"])
def test_row_pieces_table_over_a_damaged_map_is_a_named_error(built, tmp_path, kind):
    """The SQL row_pieces table walks rows like every other look-up, so a damaged map behind a forged marker
    is a FormatError naming the file, not a numpy IndexError or pieces read from wrapped indices."""
    from pile_index.sql import row_pieces_table

    prefix = copy_order(built, tmp_path)
    damage_in_place(all_paths(prefix)[kind], set_all(kind))
    forge_marker(prefix)
    order = open_order(prefix, CFG)
    with pytest.raises(FormatError, match=rf"_{kind}\.npy: entry .*order build"):
        row_pieces_table(order, 0, order.num_samples // CFG.batch_size)
