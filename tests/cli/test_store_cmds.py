"""`pile-index info` / `doc` and the document view, on a tiny store with a documents table."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli.main import main
from pile_index import TokenStore, write_indexed
from pile_index.format import corpus_info, token_stats
from pile_index.sql import DOCUMENT_SCHEMA


@pytest.fixture()
def store_prefix(tmp_path):
    docs = [np.array([5, 0, 7]), np.array([], dtype=np.uint16), np.array([9, 9, 0, 0, 3])]
    prefix = tmp_path / "s"
    write_indexed(prefix, docs, np.uint16)
    rows = {
        "doc_id": [0, 1, 2], "source_file": ["a.jsonl"] * 3, "source_line": [1, 3, 4],
        "pile_set_name": ["Github", None, "Wikipedia (en)"], "meta": ['{"pile_set_name": "Github"}', None, '{"x": 1}'],
        "n_tokens": [3, 0, 5], "n_bytes": [10, 0, 20], "token_hash": [2**64 - 1, 0, 12345],
    }
    pq.write_table(pa.table(rows, schema=DOCUMENT_SCHEMA), f"{prefix}.documents.parquet")
    return str(prefix)


def test_token_stats_counts_eod(store_prefix):
    store = TokenStore(store_prefix)
    assert token_stats(store, use_cache=False) == {"min_token": 0, "max_token": 9, "eod_count": 3}
    info = asdict(corpus_info(store, scan=False))  # served from the cache written above
    assert info["eod_count"] == 3 and info["items"] == 3 and info["documents"] == 3 and info["empty_items"] == 1


def test_info_json(store_prefix, capsys):
    assert main(["info", store_prefix, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tokens"] == 8 and out["dtype"] == "uint16" and out["min_token"] == 0 and out["max_token"] == 9
    assert out["has_documents_table"] is True


def test_doc_json_with_metadata(store_prefix, capsys):
    assert main(["doc", store_prefix, "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tokens"] == [9, 9, 0, 0, 3] and out["text"] is None
    assert out["metadata"]["pile_set_name"] == "Wikipedia (en)" and out["metadata"]["meta"] == {"x": 1}
    assert out["metadata"]["source_line"] == 4
    assert main(["doc", store_prefix, "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metadata"]["token_hash"] == "ffffffffffffffff"


def test_doc_out_of_range_is_a_clear_error(store_prefix, capsys):
    assert main(["doc", store_prefix, "3"]) == 2
    assert "doc_id 3 does not exist; the store has doc_ids 0..2" in capsys.readouterr().err


def test_info_on_corrupt_store_names_the_file(tmp_path, capsys):
    write_indexed(tmp_path / "c", [np.arange(4)], np.uint16)
    (tmp_path / "c.bin").write_bytes(b"\x00")
    assert main(["info", str(tmp_path / "c")]) == 2
    assert "c.bin: size" in capsys.readouterr().err
