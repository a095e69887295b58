"""``pile-index export preshuffled|parquet`` and ``rows.parquet``'s ``input_ids`` on a tiny raw store.

The preshuffled export is compared byte for byte with an independent writer: GPT2Dataset rows assembled here
with plain numpy slicing over the three index maps (not the project's kernels), written by a test-local
MMIDIDX writer (``struct``, GPT-NeoX's builder layout: one item and one document per row)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from cli.main import main
from pile_index.datasets.build import build_rows_table
from pile_index.format import IndexedDataset
from pile_index.order import OrderConfig, export_parquet, index_map_paths, open_order
from pile_index.order import export as export_mod
from pile_index.sql import DOCUMENT_SCHEMA, DocumentTable
from tests.stores import sized_store

SIZES = [40, 0, 1, 300, 7, 129, 64, 2, 90, 500, 33, 12]
OPTS = ["--seed", "5", "--seq-length", "32", "--num-samples", "100", "--batch-size", "4"]
CFG = OrderConfig(seed=5, seq_length=32, num_samples=100, batch_size=4)
NAMES = ["Github", "ArXiv", "Pile-CC"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    prefix = str(folder / "raw")
    sized_store(prefix, SIZES)
    n = len(SIZES)
    pq.write_table(pa.table({
        "doc_id": np.arange(n, dtype=np.int64), "source_file": ["x"] * n, "source_line": np.arange(n) + 1,
        "pile_set_name": [NAMES[i % 3] for i in range(n)], "meta": [None] * n, "n_tokens": SIZES,
        "n_bytes": SIZES, "token_hash": np.zeros(n, np.uint64)}, schema=DOCUMENT_SCHEMA), f"{prefix}.documents.parquet")
    assert main(["order", "build", prefix, *OPTS, "--json"]) == 0
    return folder, prefix


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def gpt2dataset_rows(prefix: str, ks: range) -> list[np.ndarray]:
    """GPT2Dataset.__getitem__ for each k, from the .npy maps and the raw items (plain slicing)."""
    paths = index_map_paths(prefix, CFG)
    doc_idx, sample_idx, shuffle_idx = (np.load(paths[k]) for k in ("doc_idx", "sample_idx", "shuffle_idx"))
    ds = IndexedDataset(prefix)
    out = []
    for k in ks:
        u = shuffle_idx[k]
        (f, a), (last, b) = sample_idx[u], sample_idx[u + 1]
        if f == last:
            row = ds.get(int(doc_idx[f]))[a : b + 1]
        else:
            parts = [ds.get(int(doc_idx[f]))[a:]]
            parts += [ds.get(int(doc_idx[i])) for i in range(f + 1, last)]
            parts.append(ds.get(int(doc_idx[last]))[: b + 1])
            row = np.concatenate(parts)
        out.append(np.asarray(row, dtype=np.uint16))
    return out


def mmidx_bytes(rows: list[np.ndarray]) -> tuple[bytes, bytes]:
    """GPT-NeoX MMapIndexedDatasetBuilder fed add_item(row); end_document() per row: (.bin, .idx) bytes."""
    data = b"".join(r.astype(np.uint16).tobytes() for r in rows)
    sizes = [len(r) for r in rows]
    pointers, pos = [], 0
    for s in sizes:
        pointers.append(pos)
        pos += s * 2
    doc_idx = list(range(len(rows) + 1))
    idx = b"MMIDIDX\x00\x00" + struct.pack("<Q", 1) + struct.pack("<B", 8)  # version 1, dtype code 8 = uint16
    idx += struct.pack("<Q", len(sizes)) + struct.pack("<Q", len(doc_idx))
    idx += struct.pack(f"<{len(sizes)}i", *sizes) + struct.pack(f"<{len(sizes)}q", *pointers)
    idx += struct.pack(f"<{len(doc_idx)}q", *doc_idx)
    return data, idx


@pytest.mark.parametrize("steps", [None, "3:7"])
def test_export_preshuffled_is_byte_identical_to_a_gpt2dataset_builder(raw, capsys, monkeypatch, steps, tmp_path):
    folder, prefix = raw
    monkeypatch.setattr(export_mod, "CHUNK_TOKENS", 100)  # 3 rows a chunk: the chunk seams are exercised
    out = tmp_path / "pre"
    rc, text, _ = run(capsys, "export", "preshuffled", prefix, *OPTS, "--out", out,
                      *(["--steps", steps] if steps else []), "--json")
    assert rc == 0
    res = json.loads(text)
    lo, hi = (0, 25) if steps is None else (3, 7)
    assert res["steps"] == [lo, hi] and res["rows"] == (hi - lo) * 4 and res["skipped"] is False
    data, idx = mmidx_bytes(gpt2dataset_rows(prefix, range(lo * 4, hi * 4)))
    assert (tmp_path / "pre.bin").read_bytes() == data
    assert (tmp_path / "pre.idx").read_bytes() == idx
    if steps is None:  # the whole trained order: `order verify` agrees row by row, and a rerun does nothing
        rc, text, _ = run(capsys, "order", "verify", prefix, "--against", out, *OPTS, "--json")
        assert rc == 0 and json.loads(text)["equal"] is True and json.loads(text)["checked"] == 100
        rc, text, _ = run(capsys, "export", "preshuffled", prefix, *OPTS, "--out", out, "--json")
        assert rc == 0 and json.loads(text)["skipped"] is True
        # a preshuffled store exports its own slice: the same bytes as slicing the raw order
        rc, _, _ = run(capsys, "export", "preshuffled", out, "--preshuffled", "--seq-length", 32, "--batch-size", 4,
                       "--steps", "3:7", "--out", tmp_path / "slice", "--json")
        assert rc == 0
        assert (tmp_path / "slice.bin").read_bytes() == mmidx_bytes(gpt2dataset_rows(prefix, range(12, 28)))[0]


def test_export_preshuffled_refusals(raw, capsys, tmp_path):
    folder, prefix = raw
    out = tmp_path / "pre"
    assert run(capsys, "export", "preshuffled", prefix, *OPTS, "--out", out, "--steps", "0:2", "--json")[0] == 0
    rc, _, err = run(capsys, "export", "preshuffled", prefix, *OPTS, "--out", out, "--steps", "0:3")
    assert rc == 2 and "already exist and are not this export" in err and str(out) in err
    assert len(IndexedDataset(out)) == 8  # untouched
    (tmp_path / "stray.bin").write_bytes(b"")  # a file of something else under OUT's name
    rc, _, err = run(capsys, "export", "preshuffled", prefix, *OPTS, "--out", tmp_path / "stray")
    assert rc == 2 and "stray.bin already exist" in err and (tmp_path / "stray.bin").read_bytes() == b""
    rc, _, err = run(capsys, "export", "preshuffled", prefix, *OPTS, "--out", prefix)
    assert rc == 2 and "is the store being read" in err
    last = open_order(prefix, CFG).num_samples // 4
    rc, _, err = run(capsys, "export", "preshuffled", prefix, *OPTS, "--out", tmp_path / "x", "--steps", f"0:{last + 1}")
    assert rc == 2 and f"steps 0:{last + 1}" in err and f"B <= {last}" in err
    assert not (tmp_path / "x.bin").exists() and not (tmp_path / "x.idx").exists()


def test_export_parquet_rows_columns_and_resume(raw, capsys, tmp_path):
    folder, prefix = raw
    order = open_order(prefix, CFG)
    docs = DocumentTable(f"{prefix}.documents.parquet")
    out = tmp_path / "pq"
    rc, text, _ = run(capsys, "export", "parquet", prefix, *OPTS, "--out", out, "--rows-per-file", 30, "--json")
    assert rc == 0
    res = json.loads(text)
    assert res["written"] == 4 and res["skipped"] == 0 and res["rows"] == 100
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == [f"train-{i:05d}-of-00004.parquet" for i in range(4)]
    table = pads.dataset(out, format="parquet").to_table()  # the hidden job record is not read as data
    assert table.schema.field("input_ids").type.value_type == pa.uint16()
    assert table.column_names == ["uid", "step", "slot", "batch_idx", "input_ids", "doc_ids", "pile_set_names"]
    rows = table.to_pylist()
    assert [r["uid"] for r in rows] == list(range(100))  # contiguous 0-based ids, training order
    for r in rows:
        k = r["uid"]
        assert (r["step"], r["slot"]) == (k // 4, k % 4) and r["batch_idx"] == r["step"]
        assert r["input_ids"] == order.row(k).tolist()
        spans = order.spans(k)
        assert r["doc_ids"] == [s["doc_id"] for s in spans]
        assert r["pile_set_names"] == [docs.rows([d])[d]["pile_set_name"] for d in r["doc_ids"]]
    assert [pq.ParquetFile(out / n).metadata.num_rows for n in names] == [30, 30, 30, 10]

    # resume: a deleted file is written again, the others are skipped; the bytes are the same
    before = (out / names[1]).read_bytes()
    (out / names[1]).unlink()
    rc, text, _ = run(capsys, "export", "parquet", prefix, *OPTS, "--out", out, "--rows-per-file", 30, "--json")
    assert rc == 0 and (json.loads(text)["written"], json.loads(text)["skipped"]) == (1, 3)
    assert (out / names[1]).read_bytes() == before
    # another export into the same folder is refused, naming what differs
    rc, _, err = run(capsys, "export", "parquet", prefix, *OPTS, "--out", out, "--rows-per-file", 40)
    assert rc == 2 and "different Parquet export (differs in: rows_per_file)" in err
    # a truncated file is named, not skipped
    (out / names[0]).write_bytes(b"PAR1")
    rc, _, err = run(capsys, "export", "parquet", prefix, *OPTS, "--out", out, "--rows-per-file", 30)
    assert rc == 2 and names[0] in err and "delete it and rerun" in err


def test_export_parquet_of_a_preshuffled_store_and_a_step_range(raw, tmp_path, capsys):
    folder, prefix = raw
    order = open_order(prefix, CFG)
    assert run(capsys, "export", "preshuffled", prefix, *OPTS, "--out", tmp_path / "pre", "--json")[0] == 0
    pre = open_order(str(tmp_path / "pre"), OrderConfig(seed=0, seq_length=32, num_samples=100, batch_size=4),
                     preshuffled=True)
    res = export_parquet(pre, tmp_path / "pq", steps=(2, 5), progress=False)
    assert res["files"] and res["rows"] == 12
    t = pads.dataset(tmp_path / "pq").to_table()
    assert t.column_names == ["uid", "step", "slot", "batch_idx", "input_ids"]  # no document identity
    assert t["uid"].to_pylist() == list(range(8, 20))
    assert t["input_ids"].to_pylist() == order.rows(np.arange(8, 20)).tolist()


def test_dataset_rows_table_carries_input_ids(raw):
    folder, prefix = raw
    order = open_order(prefix, CFG)
    table, rows = build_rows_table(order, DocumentTable(f"{prefix}.documents.parquet"), np.array([9, 2]),
                                   np.array([96]), [0, 4, 8], 4)
    assert table.schema.field("input_ids").type == pa.list_(pa.uint16())
    assert table["input_ids"].to_pylist() == order.rows(np.array([2, 9, 96])).tolist()
    assert table["sample_index"].to_pylist() == [2, 9, 96]


def _killed_at(event: int, argv: list) -> None:
    """Run the CLI in a child that SIGKILLs itself at its ``event``-th atomic-write event."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from pile_index.atomic import KILL_AT_ENV

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), KILL_AT_ENV: str(event)}
    proc = subprocess.run([sys.executable, "-m", "cli.main", *map(str, argv)], cwd=root, env=env, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()


def test_export_preshuffled_killed_between_bin_and_idx_resumes(raw, tmp_path, capsys):
    """Events: job record 1-3, .bin 4-6 (6: renamed), .idx 7-9, job record marked complete 10-12."""
    folder, prefix = raw
    argv = ["export", "preshuffled", prefix, *OPTS, "--no-progress", "--json"]
    _killed_at(6, [*argv, "--out", tmp_path / "killed"])
    assert (tmp_path / "killed.bin").is_file() and not (tmp_path / "killed.idx").exists()
    rc, text, _ = run(capsys, *argv, "--out", tmp_path / "killed")
    assert rc == 0 and json.loads(text)["skipped"] is False
    assert run(capsys, *argv, "--out", tmp_path / "whole")[0] == 0
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"killed{ext}").read_bytes() == (tmp_path / f"whole{ext}").read_bytes()


def test_export_parquet_killed_mid_file_resumes_to_the_same_bytes(raw, tmp_path, capsys):
    """SIGKILL at the 8th atomic-write event (job record: 1-3, file 0: 4-6, file 1's temp complete: 8), then rerun."""
    folder, prefix = raw
    argv = ["export", "parquet", prefix, *OPTS, "--rows-per-file", 30, "--no-progress"]
    _killed_at(8, [*argv, "--out", tmp_path / "killed"])
    finals = sorted(p.name for p in (tmp_path / "killed").iterdir() if ".tmp-" not in p.name)
    assert finals == [".export.json", "train-00000-of-00004.parquet"]  # nothing half-written under a final name
    assert run(capsys, *argv, "--out", tmp_path / "killed")[0] == 0
    assert run(capsys, *argv, "--out", tmp_path / "whole")[0] == 0
    names = [f"train-{i:05d}-of-00004.parquet" for i in range(4)]
    assert [(tmp_path / "killed" / n).read_bytes() for n in names] == [(tmp_path / "whole" / n).read_bytes()
                                                                      for n in names]


def test_export_parquet_loads_with_hf_datasets(raw, tmp_path, capsys, monkeypatch):
    datasets = pytest.importorskip("datasets")
    folder, prefix = raw
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert run(capsys, "export", "parquet", prefix, *OPTS, "--out", tmp_path / "pq", "--rows-per-file", 30)[0] == 0
    ds = datasets.load_dataset("parquet", data_dir=str(tmp_path / "pq"), split="train", cache_dir=str(tmp_path / "c"))
    assert ds["uid"] == list(range(100)) and ds[7]["input_ids"] == open_order(prefix, CFG).row(7).tolist()
