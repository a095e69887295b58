"""``pile-index ingest --tokens-column``: Parquet token rows in training order -> a preshuffled store, checked
row by row against raw + index maps with ``order verify --against``."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli.main import main
from pile_index.format import IndexedDataset
from pile_index.order import OrderConfig
from tests.stores import ordered_store

SIZES = [40, 0, 1, 300, 7, 129, 64, 2, 90, 500, 33, 12]
OPTS = ["--seed", "5", "--seq-length", "32", "--num-samples", "100", "--batch-size", "4"]
CFG = OrderConfig(seed=5, seq_length=32, num_samples=100, batch_size=4)
ROWS_PER_FILE = 40  # 10 steps a file, as the community layout has 1,000 steps a file


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rows")
    prefix, order = ordered_store(folder, SIZES, CFG)
    return folder, prefix, order.rows(np.arange(100))


def write_layout(folder, rows: np.ndarray, uid_shift: int = 0, column: str = "token_ids") -> None:
    """The community layout: uid, batch_idx, token_ids (int64 lists, as ``datasets`` writes), a file per 10 steps."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, k0 in enumerate(range(0, len(rows), ROWS_PER_FILE)):
        part = rows[k0 : k0 + ROWS_PER_FILE]
        uid = np.arange(k0, k0 + len(part)) + (uid_shift if i else 0)
        pq.write_table(pa.table({"uid": uid, "batch_idx": uid // 4,
                                 column: pa.array(part.astype(np.int64).tolist(), pa.list_(pa.int64()))}),
                       folder / f"train-{(i + 1) * 10:06d}.parquet", row_group_size=16)


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_token_rows_become_a_preshuffled_store_that_verifies(raw, tmp_path, capsys):
    folder, prefix, rows = raw
    write_layout(tmp_path / "hub", rows)
    out = tmp_path / "pre"
    rc, text, _ = run(capsys, "ingest", tmp_path / "hub", "--tokens-column", "token_ids", "--out", out, "--json")
    assert rc == 0
    res = json.loads(text)
    assert (res["rows"], res["tokens_per_row"], res["dtype"], res["index_column"]) == (100, 33, "uint16", "uid")
    assert [p.rsplit("/", 1)[-1] for p in res["files_read"]] == ["train-000010.parquet", "train-000020.parquet",
                                                                 "train-000030.parquet"]
    store = IndexedDataset(out)
    assert len(store) == 100 and store.doc_idx.tolist() == list(range(101))
    rc, text, _ = run(capsys, "order", "verify", prefix, "--against", out, *OPTS, "--json")
    assert rc == 0 and json.loads(text) == {"start": 0, "stop": 100, "checked": 100, "equal": True,
                                            "first_mismatch": None}
    # the same rows through `export preshuffled` give the same bytes
    assert run(capsys, "export", "preshuffled", prefix, *OPTS, "--out", tmp_path / "exp", "--json")[0] == 0
    assert (tmp_path / "exp.bin").read_bytes() == (tmp_path / "pre.bin").read_bytes()
    assert (tmp_path / "exp.idx").read_bytes() == (tmp_path / "pre.idx").read_bytes()

    # one changed token: verify names the row, step and slot
    bad = rows.copy()
    bad[57, 3] ^= 1
    write_layout(tmp_path / "bad", bad)
    assert run(capsys, "ingest", tmp_path / "bad", "--tokens-column", "token_ids", "--out", tmp_path / "b")[0] == 0
    rc, text, _ = run(capsys, "order", "verify", prefix, "--against", tmp_path / "b", *OPTS, "--json")
    m = json.loads(text)["first_mismatch"]
    assert rc == 1 and (m["sample_index"], m["step"], m["slot"], m["position"]) == (57, 14, 1, 3)


def test_export_parquet_ingests_back_to_the_same_store(raw, tmp_path, capsys):
    folder, prefix, _ = raw
    assert run(capsys, "export", "parquet", prefix, *OPTS, "--out", tmp_path / "pq", "--rows-per-file", 30,
               "--json")[0] == 0
    assert run(capsys, "ingest", tmp_path / "pq", "--tokens-column", "input_ids", "--out", tmp_path / "back",
               "--json")[0] == 0
    assert run(capsys, "export", "preshuffled", prefix, *OPTS, "--out", tmp_path / "exp", "--json")[0] == 0
    assert (tmp_path / "back.bin").read_bytes() == (tmp_path / "exp.bin").read_bytes()


def _refused(capsys, tmp_path, *argv) -> str:
    out = tmp_path / "refused"
    rc, _, err = run(capsys, "ingest", *argv, "--out", out)
    assert rc == 2, err
    assert not list(tmp_path.glob("refused*"))  # nothing written
    return err


def test_bad_token_rows_are_refused_with_one_line(raw, tmp_path, capsys):
    folder, prefix, rows = raw
    write_layout(tmp_path / "gap", rows, uid_shift=1)
    err = _refused(capsys, tmp_path, tmp_path / "gap", "--tokens-column", "token_ids")
    assert "train-000020.parquet: row 1 has uid 41, expected 40" in err and "contiguous 0..n-1" in err

    ragged = tmp_path / "ragged.parquet"
    pq.write_table(pa.table({"token_ids": [[1, 2, 3], [4, 5, 6], [7, 8]]}), ragged)
    err = _refused(capsys, tmp_path, ragged, "--tokens-column", "token_ids")
    assert "ragged.parquet: row 3 has 2 token ids, the rows before it 3" in err

    big = tmp_path / "big.parquet"
    pq.write_table(pa.table({"token_ids": [[1, 2, 3], [4, 70000, 6]]}), big)
    err = _refused(capsys, tmp_path, big, "--tokens-column", "token_ids")
    assert "big.parquet: row 2 holds token id 70,000 at position 1" in err and "int32" in err
    assert run(capsys, "ingest", big, "--tokens-column", "token_ids", "--tokens-dtype", "int32",
               "--out", tmp_path / "wide")[0] == 0
    assert IndexedDataset(tmp_path / "wide").dtype == np.int32

    err = _refused(capsys, tmp_path, big, "--tokens-column", "ids")
    assert "no column 'ids'" in err and "token_ids (list<element: int64>)" in err
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"text": "x"}\n')
    assert "from .parquet files only" in _refused(capsys, tmp_path, jsonl, "--tokens-column", "token_ids")
    assert "--append-eod" in _refused(capsys, tmp_path, big, "--tokens-column", "token_ids", "--append-eod")
    assert "needs --tokenizer" in _refused(capsys, tmp_path, big)
