"""Read-only SQL: what it refuses, the row and time limits, the ready views against brute force."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli.main import main as cli_main
from pile_index.errors import LimitError, QueryError
from pile_index.format import TokenStore, write_indexed
from pile_index.order import open_order, order_config
from pile_index.sql import DOCUMENT_SCHEMA, check_sql, exposed_files, row_pieces_table, run_sql


@pytest.fixture()
def store_prefix(tmp_path):
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 50, size=int(rng.integers(1, 20))) for _ in range(40)]
    prefix = tmp_path / "s"
    write_indexed(prefix, [d.astype(np.uint16) for d in docs], np.uint16)
    n = len(docs)
    pq.write_table(pa.table({
        "doc_id": np.arange(n, dtype=np.int64), "source_file": ["in.jsonl"] * n,
        "source_line": np.arange(1, n + 1, dtype=np.int64),
        "pile_set_name": [["Pile-CC", "Github", "ArXiv"][i % 3] for i in range(n)],
        "meta": [json.dumps({"i": i}) for i in range(n)],
        "n_tokens": np.array([d.size for d in docs], dtype=np.int64), "n_bytes": np.ones(n, dtype=np.int64),
        "token_hash": pa.array(np.arange(n, dtype=np.uint64)),
    }, schema=DOCUMENT_SCHEMA), f"{prefix}.documents.parquet")
    secret = tmp_path / "secret.csv"
    secret.write_text("a,b\n1,2\n")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    return str(prefix)


REFUSED_AT_PARSE = [
    "INSERT INTO documents VALUES (1)",
    "CREATE TABLE t AS SELECT 1",
    "DROP VIEW documents",
    "UPDATE documents SET n_bytes = 0",
    "DELETE FROM documents",
    "ATTACH 'x.db' AS x",
    "COPY (SELECT 1) TO 'out.csv'",
    "COPY documents TO 'out.parquet'",
    "EXPORT DATABASE 'dir'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "PRAGMA database_list",
    "SET threads = 1",
    "RESET threads",
    "CALL pragma_version()",
    "EXPLAIN SELECT 1",
    "DESCRIBE documents",
    "SELECT 1; SELECT 2",
    "SELECT 1; DROP VIEW documents",
    "WITH a AS (SELECT 1) INSERT INTO documents SELECT * FROM a",
    "",
    "   -- only a comment",
]


@pytest.mark.parametrize("sql", REFUSED_AT_PARSE)
def test_refused_statements(store_prefix, sql):
    with pytest.raises(QueryError):
        run_sql(sql, exposed_files(store_prefix))


def test_refused_file_access(store_prefix, tmp_path):
    files = exposed_files(store_prefix)
    for sql in [
        f"SELECT * FROM read_csv('{tmp_path}/secret.csv')",
        f"SELECT * FROM read_csv_auto('{tmp_path}/secret.csv')",
        f"SELECT * FROM '{tmp_path}/secret.csv'",
        f"SELECT * FROM read_parquet('{tmp_path}/other.parquet')",
        f"SELECT * FROM read_text('{tmp_path}/secret.csv')",
        f"SELECT * FROM glob('{tmp_path}/*')",
        "SELECT * FROM read_json('/etc/hostname')",
        "SELECT * FROM read_parquet('https://example.com/x.parquet')",
    ]:
        with pytest.raises(QueryError, match="(?i)permission|disabled|external"):
            run_sql(sql, files)


def test_exposed_file_is_readable_and_config_is_locked(store_prefix):
    files = exposed_files(store_prefix)
    assert set(files) == {"documents"}
    res = run_sql("SELECT count(*) AS n, sum(n_tokens) AS t FROM documents", files)
    store = TokenStore(store_prefix)
    assert res.rows == [[len(store), store.n_tokens]]
    locked = run_sql("SELECT value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
                     "'lock_configuration') ORDER BY name", files)
    assert locked.rows == [["false"], ["true"]]


def test_with_and_comments_allowed():
    assert check_sql("/* hi */ -- x\n (WITH a AS (SELECT 1 AS x) SELECT x FROM a)")
    res = run_sql("WITH a AS (SELECT range AS x FROM range(5)) SELECT sum(x) FROM a", {})
    assert res.rows == [[10]] and res.truncated is False


def test_row_limit_truncates():
    res = run_sql("SELECT range AS i FROM range(100)", {}, max_rows=7)
    assert res.truncated is True
    assert [r[0] for r in res.rows] == list(range(7))
    res = run_sql("SELECT range AS i FROM range(7)", {}, max_rows=7)
    assert res.truncated is False and len(res.rows) == 7


def test_time_limit_interrupts():
    with pytest.raises(LimitError) as e:
        run_sql("SELECT count(*) FROM range(1000000000000) a, range(1000) b", {}, timeout_s=0.3)
    assert e.value.setting == "sql_timeout_s"


def test_composition_views_against_brute_force(store_prefix):
    store = TokenStore(store_prefix)
    cfg = order_config(seed=7, seq_length=9, num_samples=40, batch_size=3)
    order = open_order(store, cfg, build=True)
    names = [["Pile-CC", "Github", "ArXiv"][i % 3] for i in range(len(store))]
    pieces = row_pieces_table(order, 2, 9, bucket_steps=3)
    want_pieces = sorted((k // 3, k, sp["doc_id"], sp["doc_start"], sp["doc_end"])
                         for k in range(6, 27) for sp in order.spans(k))
    got = sorted(zip(*[pieces.column(c).to_pylist() for c in ("step", "sample_index", "doc_id", "doc_start", "doc_end")]))
    assert got == want_pieces
    res = run_sql("SELECT step_start, pile_set_name, tokens FROM composition ORDER BY step_start, pile_set_name",
                  exposed_files(store_prefix), {"row_pieces": pieces})
    want: dict[tuple[int, str], int] = {}
    for step, _k, d, s, e in want_pieces:
        key = (2 + (step - 2) // 3 * 3, names[d])
        want[key] = want.get(key, 0) + e - s
    assert [tuple(r) for r in res.rows] == [(a, b, t) for (a, b), t in sorted(want.items())]
    # every bucket holds 3 steps x 3 rows x 10 tokens, except the last (steps 8..8)
    by_bucket = run_sql("SELECT step_start, step_end, tokens FROM composition_by_bucket", {}, {"row_pieces": pieces})
    assert by_bucket.rows == [[2, 5, 90], [5, 8, 90], [8, 9, 30]]
    seen = run_sql("SELECT doc_id, first_step, last_step FROM documents_seen", {}, {"row_pieces": pieces})
    first: dict[int, list[int]] = {}
    for step, _k, d, _s, _e in want_pieces:
        first.setdefault(d, []).append(step)
    assert seen.rows == [[d, min(v), max(v)] for d, v in sorted(first.items())]


def test_sql_cli(store_prefix, capsys):
    assert cli_main(["sql", store_prefix, "SELECT pile_set_name, count(*) AS n FROM documents GROUP BY 1 ORDER BY 1",
                     "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] == [["ArXiv", 13], ["Github", 13], ["Pile-CC", 14]]
    assert out["columns"][1] == {"name": "n", "type": "BIGINT"}
    assert out["truncated"] is False
    assert cli_main(["sql", store_prefix, "SELECT doc_id FROM documents", "--max-rows", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["truncated"] is True and out["rows"] == [[0], [1], [2]]
    assert cli_main(["sql", store_prefix, "DELETE FROM documents"]) == 2
    assert "only read queries" in capsys.readouterr().err


def test_extra_tables_by_name(store_prefix, tmp_path, capsys):
    folder = tmp_path / "scores"
    (folder / "part").mkdir(parents=True)
    pq.write_table(pa.table({"doc_id": [1, 2], "loss": [0.5, 1.5]}), folder / "a.parquet")
    pq.write_table(pa.table({"doc_id": [3], "loss": [2.0]}), folder / "part" / "b.parquet")
    files = exposed_files(store_prefix, {"scores": folder, "other": tmp_path / "other.parquet"})
    res = run_sql("SELECT count(*), sum(loss) FROM scores JOIN documents USING (doc_id)", files)
    assert res.rows == [[3, 4.0]]
    assert run_sql("SELECT x FROM other", files).rows == [[1]]
    with pytest.raises(QueryError):  # still nothing else
        run_sql(f"SELECT * FROM read_csv('{tmp_path}/secret.csv')", files)
    assert cli_main(["sql", store_prefix, "SELECT sum(loss) FROM scores", "--table", f"scores={folder}", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == [[4.0]]
    assert cli_main(["sql", store_prefix, "SELECT 1", "--table", "bad name=x"]) == 2
