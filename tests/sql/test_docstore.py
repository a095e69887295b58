"""The documents table: look-ups from the columns in memory (DocumentTable.load) equal the DuckDB query's."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pile_index.sql import DOCUMENT_SCHEMA, DocumentTable


def _table(n: int, doc_id=None) -> pa.Table:
    return pa.table({
        "doc_id": pa.array(np.arange(n) if doc_id is None else doc_id, pa.int64()),
        "source_file": pa.array([None if i % 7 == 3 else f"{i % 3:02d}.jsonl.zst" for i in range(n)]),
        "source_line": pa.array([None if i % 5 == 1 else 10 + i for i in range(n)], pa.int64()),
        "pile_set_name": pa.array([None if i % 11 == 2 else ["Pile-CC", "Github", "ArXiv"][i % 3] for i in range(n)]),
        "meta": pa.array([None if i % 4 == 0 else json.dumps({"i": i, "é": "€"}) for i in range(n)]),
        "n_tokens": pa.array(range(n), pa.int64()),
        "n_bytes": pa.array([3 * i for i in range(n)], pa.int64()),
        "token_hash": pa.array([(1 << 64) - 1 - i for i in range(n)], pa.uint64()),
    }, schema=DOCUMENT_SCHEMA)


def test_loaded_rows_equal_the_query_rows(tmp_path):
    n = 50
    path = tmp_path / "d.parquet"
    pq.write_table(_table(n), path, row_group_size=7)  # several row groups: chunked columns
    queried, loaded = DocumentTable(path, n_items=n), DocumentTable(path, n_items=n)
    assert loaded.load() is True and loaded.load() is True
    ids = [*range(n), -1, n, n + 5, 3, 3]
    want = queried.rows(ids)
    assert set(want) == set(range(n))
    got = loaded.rows(ids)
    assert got == want
    for d in range(n):  # same values, same types (u64 hashes past 2**63 included)
        assert [(k, type(v)) for k, v in got[d].items()] == [(k, type(v)) for k, v in want[d].items()]
    assert loaded.rows([]) == {}
    queried.close()
    loaded.close()


def test_a_table_out_of_doc_id_order_keeps_the_query(tmp_path):
    n = 10
    path = tmp_path / "d.parquet"
    pq.write_table(_table(n, doc_id=np.arange(n)[::-1].copy()), path)
    table = DocumentTable(path, n_items=n)
    assert table.load() is False
    assert table.rows([0, 9])[0]["source_line"] == 10 + 9  # row 9 of the file holds doc_id 0
    table.close()
