"""Read-only SQL: what it refuses, the row and time limits, the ready views against brute force."""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli.main import main as cli_main
from pile_index.sql import engine as sql_mod
from pile_index.errors import ConfigError, LimitError, NotFoundError, QueryError
from pile_index.format import TokenStore, write_indexed
from pile_index.order import open_order, order_config
from pile_index.sql import DOCUMENT_SCHEMA, SqlCancel, check_sql, exposed_files, row_pieces_table, run_sql


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
    "PIVOT documents ON pile_set_name",  # a SELECT keyword, but DuckDB runs it as two statements
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
    box = sql_mod.SqlSandbox(files)  # the sandbox as run_sql builds it (settings are hidden from queries)
    cur = box.cursor()
    try:
        locked = cur.sql("SELECT value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
                         "'lock_configuration', 'TimeZone') ORDER BY name").fetchall()
    finally:
        box.release(cur)
        box.close()
    assert locked == [("UTC",), ("false",), ("true",)]


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
    files = exposed_files(store_prefix, {"scores": f"{folder}/**/*.parquet", "other": tmp_path / "other.parquet"})
    res = run_sql("SELECT count(*), sum(loss) FROM scores JOIN documents USING (doc_id)", files)
    assert res.rows == [[3, 4.0]]
    assert run_sql("SELECT x FROM other", files).rows == [[1]]
    with pytest.raises(QueryError):  # still nothing else
        run_sql(f"SELECT * FROM read_csv('{tmp_path}/secret.csv')", files)
    assert cli_main(["sql", store_prefix, "SELECT sum(loss) FROM scores", "--table", f"scores={folder}/*.parquet",
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == [[2.0]]
    assert cli_main(["sql", store_prefix, "SELECT 1", "--table", "bad name=x"]) == 2


@pytest.fixture()
def dataset_folder(tmp_path):
    """A `dataset build` folder: dataset.parquet (4 rows) beside rows/checkpoints tables, parts/ and summary/."""
    out = tmp_path / "dataset"
    (out / "parts").mkdir(parents=True)
    (out / "summary").mkdir()
    rows = pa.table({"sample_index": [0, 1, 0, 1], "revision": ["step1", "step1", "step2", "step2"],
                     "loss": [1.0, 2.0, 3.0, 4.0]})
    pq.write_table(rows, out / "dataset.parquet")
    pq.write_table(pa.table({"sample_index": [0, 1]}), out / "rows.parquet")
    pq.write_table(pa.table({"revision": ["step1", "step2"]}), out / "checkpoints.parquet")
    for i in range(2):  # the score parts hold the same rows again
        pq.write_table(rows.slice(2 * i, 2), out / "parts" / f"r{i:03d}-c0000000.parquet")
    pq.write_table(pa.table({"revision": ["step1"], "mean": [1.5]}), out / "summary" / "cohort_means.parquet")
    return out


def test_folder_is_one_table_not_every_parquet_under_it(store_prefix, dataset_folder, tmp_path, capsys):
    # A dataset folder is its dataset.parquet: 4 rows, not the 4 + 2 + 2 + 4 + 1 of every file below it.
    files = exposed_files(store_prefix, {"scores": dataset_folder})
    assert files["scores"] == [(dataset_folder / "dataset.parquet").resolve()]
    assert run_sql("SELECT count(*) FROM scores", files).rows == [[4]]
    assert cli_main(["sql", store_prefix, "SELECT count(*) FROM scores", "--table", f"scores={dataset_folder}/",
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == [[4]]
    # A folder with one Parquet file and nothing below is that file.
    one = tmp_path / "one"
    one.mkdir()
    pq.write_table(pa.table({"x": [7]}), one / "t.parquet")
    assert run_sql("SELECT x FROM t", exposed_files(store_prefix, {"t": one})).rows == [[7]]
    # Any other folder is refused with what it holds; a glob is taken as written.
    with pytest.raises(ConfigError, match=r"holds r000-c0000000.parquet, r001-c0000000.parquet, not one table"):
        exposed_files(store_prefix, {"parts": dataset_folder / "parts"})
    files = exposed_files(store_prefix, {"parts": f"{dataset_folder}/parts/*.parquet"})
    assert run_sql("SELECT count(*) FROM parts", files).rows == [[4]]
    with pytest.raises(NotFoundError, match="matches no file"):
        exposed_files(store_prefix, {"parts": f"{dataset_folder}/nope/*.parquet"})
    extra = tmp_path / "extra"
    (extra / "sub").mkdir(parents=True)
    pq.write_table(pa.table({"x": [1]}), extra / "a.parquet")
    pq.write_table(pa.table({"x": [2]}), extra / "sub" / "b.parquet")
    with pytest.raises(ConfigError, match=r"holds a.parquet, sub/ \(1 .parquet\), not one table"):
        exposed_files(store_prefix, {"t": extra})
    assert cli_main(["sql", store_prefix, "SELECT 1", "--table", f"t={extra}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"t={extra}/*.parquet" in err


def test_ready_view_without_its_option_names_the_option(store_prefix, tmp_path, capsys):
    files = exposed_files(store_prefix)
    with pytest.raises(QueryError) as e:
        run_sql("SELECT * FROM composition", files)
    msg = str(e.value)
    assert "row_pieces" in msg and "steps=A:B" in msg and "pg_" not in msg and "Did you mean" not in msg
    with pytest.raises(QueryError, match=r"ngram_tokens or ngram_text"):
        run_sql("SELECT * FROM ngram_timeseries", files)
    with pytest.raises(QueryError, match=r"no table row_pieces .*steps=A:B"):
        run_sql("SELECT count(*) FROM row_pieces", files)
    # The store has no documents table: composition says so, and which option adds the rest.
    with pytest.raises(QueryError, match=r"documents \(PREFIX.documents.parquet, written by ingest or attach\)"):
        run_sql("SELECT * FROM composition", {})
    with pytest.raises(QueryError, match=r"no table nope; the tables of this query are: documents"):
        run_sql("SELECT * FROM nope", files)
    # The CLI names its own flags.
    assert cli_main(["sql", store_prefix, "SELECT * FROM composition"]) == 2
    err = capsys.readouterr().err
    assert "--steps A:B" in err and err.count("\n") == 1


@pytest.mark.parametrize("sql,first", [
    ("DESCRIBE documents", ["doc_id", "BIGINT"]),
    ("  describe SELECT 1 AS x", ["x", "INTEGER"]),
    ("SHOW documents", ["doc_id", "BIGINT"]),
    ("SHOW TABLES", ["documents"]),
    ("SUMMARIZE documents", ["doc_id", "BIGINT"]),
    ("FROM documents SELECT doc_id LIMIT 1", [0]),
    ("VALUES (1, 'a')", [1, "a"]),
])
def test_describe_summarize_show_are_read_queries(store_prefix, sql, first):
    res = run_sql(sql, exposed_files(store_prefix))
    assert res.rows[0][:len(first)] == first


def test_describe_stays_in_the_sandbox(store_prefix, tmp_path):
    for sql in [f"DESCRIBE SELECT * FROM read_parquet('{tmp_path}/other.parquet')",
                f"SUMMARIZE SELECT * FROM read_csv('{tmp_path}/secret.csv')"]:
        with pytest.raises(QueryError, match="(?i)permission|disabled|external"):
            run_sql(sql, exposed_files(store_prefix))


def test_refusal_does_not_contradict_itself():
    with pytest.raises(QueryError) as e:
        run_sql("EXPLAIN SELECT 1", {})
    assert "'EXPLAIN'" in str(e.value) and "SELECT statement" not in str(e.value)


def test_sql_text_is_bounded_before_any_parsing(monkeypatch):
    with pytest.raises(LimitError) as e:
        run_sql("SELECT 1 -- " + "x" * 100, {}, max_sql_chars=100)
    assert e.value.setting == "max_sql_chars" and "112 characters" in str(e.value)
    with pytest.raises(LimitError):  # 2 MB of parentheses: refused before DuckDB sees them
        run_sql("SELECT " + "(" * 1_000_000 + "1" + ")" * 1_000_000, {})
    # The parse that runs is DuckDB's own inside the query (GIL released, under the time limit), never
    # duckdb.extract_statements, which holds the GIL for the whole parse.
    def refuse(*a, **k):
        raise AssertionError("extract_statements holds the GIL")
    monkeypatch.setattr(duckdb, "extract_statements", refuse)
    monkeypatch.setattr(duckdb.DuckDBPyConnection, "extract_statements", refuse, raising=False)
    assert run_sql("SELECT 40 + 2", {}).rows == [[42]]
    with pytest.raises(QueryError, match="exactly one statement, found 2"):
        run_sql("SELECT 1; SELECT 2", {})
    with pytest.raises(QueryError, match="does not parse"):
        run_sql("SELECT (1", {})


def test_lone_surrogate_in_sql_is_a_query_error():
    with pytest.raises(QueryError, match="at character 8, a lone surrogate"):
        run_sql("SELECT '\ud800'", {})
    with pytest.raises(QueryError, match="NUL"):
        run_sql("SELECT 1 \x00; DROP VIEW documents", {})


def test_cancel_stops_the_query_at_once():
    cancel = SqlCancel()
    threading.Timer(0.2, cancel.interrupt).start()  # another thread's limit answered first
    with pytest.raises(LimitError, match="stopped"):
        run_sql("SELECT count(*) FROM range(1000000000000) a, range(1000) b", {}, timeout_s=600, cancel=cancel)


# Each DuckDB value and the exact JSON text it becomes (strings where JSON has no type).
ENCODED = [
    ("123::VARINT", "123"),
    ("(10::VARINT) ^ 30::VARINT", None),  # a DOUBLE in DuckDB: any valid number
    ("170141183460469231731687303715884105727::HUGEINT", "170141183460469231731687303715884105727"),
    ("18446744073709551615::UBIGINT", "18446744073709551615"),
    ("12345678901234567890.123456789::DECIMAL(38,9)", "12345678901234567890.123456789"),
    ("0.1::DOUBLE", "0.1"),
    ("'NaN'::DOUBLE", '"NaN"'),
    ("'inf'::FLOAT", '"Infinity"'),
    ("'-inf'::DOUBLE", '"-Infinity"'),
    ("NULL::DOUBLE", "null"),
    ("TIMETZ '12:00:00+05'", '"12:00:00+05"'),
    ("TIME '24:00:00'", '"24:00:00"'),
    ("DATE 'infinity'", '"infinity"'),
    ("TIMESTAMP '294247-01-10 04:00:54'", '"294247-01-10 04:00:54"'),
    ("DATE '-5000-01-01'", '"5001-01-01 (BC)"'),
    ("TIMESTAMP_NS '2020-01-02 03:04:05.123456789'", '"2020-01-02 03:04:05.123456789"'),
    ("TIMESTAMPTZ '2020-01-02 03:04:05+02'", '"2020-01-02 01:04:05+00"'),
    ("INTERVAL '1 month 2 days 3 hours'", '"1 month 2 days 03:00:00"'),
    ("'\\xAA\\x5C'::BLOB", '"\\\\xAA\\\\x5C"'),
    ("'8d0b3c2a-1b2c-4d5e-8f90-123456789abc'::UUID", '"8d0b3c2a-1b2c-4d5e-8f90-123456789abc"'),
    ("'a\"b\\c€'", '"a\\"b\\\\c€"'),
    ("[1.0, 'nan'::DOUBLE, NULL]", '[1.0,"NaN",null]'),
    ("{'x': 'inf'::DOUBLE, 'y': [12345678901234567890.5::DECIMAL(38,1)]}",
     '{"x":"Infinity","y":[12345678901234567890.5]}'),
    ("MAP {'a': 'nan'::DOUBLE}", '{"a":"NaN"}'),
    ("[{'we''ird \"k\" é': 'nan'::DOUBLE}, NULL]", '[{"we\'ird \\"k\\" é":"NaN"},null]'),
    ("MAP {1: 'x'}", '{"1":"x"}'),
    ("row(1, 'nan'::DOUBLE)", '[1,"NaN"]'),
    ("union_value(k := 'nan'::DOUBLE)", '{"k":"NaN"}'),
    ("[[1.5::FLOAT]]::FLOAT[1][]", "[[1.5]]"),
    ("'{\"a\": [1, 123456789012345678901234567890]}'::JSON", '{"a": [1, 123456789012345678901234567890]}'),
    ("true", "true"),
]


@pytest.mark.parametrize("expr,text", ENCODED)
def test_values_are_encoded_faithfully(expr, text):
    res = run_sql(f"SELECT {expr} AS v", {})
    got = res.rows_json[1:-1]
    assert got.startswith("[") and got.endswith("]")
    if text is not None:
        assert got[1:-1] == text
    json.loads(res.to_json(), parse_constant=_no_constant)  # strict JSON: no NaN / Infinity tokens


def _no_constant(name):
    raise AssertionError(f"{name} is not JSON")


def test_values_json_cannot_carry_are_refused():
    with pytest.raises(QueryError, match="NaN or Infinity"):
        run_sql("SELECT to_json(['nan'::DOUBLE]) AS j", {})
    assert run_sql("""SELECT '["nan", "Infinity"]'::JSON AS j""", {}).rows == [[["nan", "Infinity"]]]


def test_response_bytes_are_bounded_while_encoding():
    # One value larger than the whole answer may be stops the query before it is encoded.
    with pytest.raises(LimitError) as e:
        run_sql("SELECT repeat('€', 12000000) FROM range(4)", {})  # 36 MB a value
    assert e.value.setting == "max_response_bytes"
    # Many small rows: refused as soon as their JSON passes the bound; exactly at the bound it passes.
    res = run_sql("SELECT range AS i, 'é' AS s FROM range(1000)", {})
    size = len(res.rows_json.encode())
    assert run_sql("SELECT range AS i, 'é' AS s FROM range(1000)", {}, max_response_bytes=size).rows == res.rows
    with pytest.raises(LimitError, match="max_response_bytes=2,500 bytes"):
        run_sql("SELECT range AS i, 'é' AS s FROM range(1000)", {}, max_response_bytes=2_500)
    with pytest.raises(LimitError):
        run_sql("SELECT range AS i, 'é' AS s FROM range(1000)", {}, max_response_bytes=size - 1)
    # The row limit cuts first: the bytes of rows not returned do not count.
    res = run_sql("SELECT repeat('x', 100) FROM range(1000)", {}, max_rows=2, max_response_bytes=300)
    assert res.truncated and res.row_count == 2


def test_no_path_of_the_store_reaches_sql(store_prefix, tmp_path, capsys):
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    files = exposed_files(store_prefix, {"other": tmp_path / "other.parquet"})
    answers = []
    for sql in [
        "SELECT * FROM duckdb_views()",
        "SELECT * FROM duckdb_databases()",
        "SELECT * FROM duckdb_tables()",
        "SELECT * FROM duckdb_temporary_files()",
        "SHOW ALL TABLES",
        "DESCRIBE documents",
    ]:
        answers.append(run_sql(sql, files).rows_json)
    view = run_sql("SELECT sql FROM duckdb_views() WHERE view_name = 'documents'", files).rows[0][0]
    link = view.split("'")[1]
    assert re.search(r"/pile-index-sql-[^/]+/documents(-\d+)?\.parquet$", link) and str(tmp_path) not in link
    answers.append(run_sql(f"SELECT * FROM parquet_metadata('{link}')", files).rows_json)
    # DuckDB resolves allowed_paths to the real files: what reads settings, or runs SQL from a string, is refused.
    for sql in ["SELECT current_setting('allowed_paths')", "SELECT \"CURRENT_SETTING\"('allowed_paths')",
                "SELECT system.main.current_setting('allowed_paths')", "FROM duckdb_settings()",
                "SELECT * FROM query('SELECT 1')", "SUMMARIZE FROM main.duckdb_settings()",
                "SELECT 1 WHERE 'x' IN (SELECT value FROM duckdb_settings())"]:
        with pytest.raises(QueryError, match="is not available here"):
            run_sql(sql, files)
    with pytest.raises(QueryError) as e:  # an error about an exposed file names its table, not its path
        run_sql("SELECT 1", exposed_files(store_prefix, {"broken": tmp_path / "broken.parquet"}))
    answers.append(str(e.value))
    assert "<table broken>" in str(e.value) and "\n" not in str(e.value)
    text = "\n".join(answers)
    assert str(tmp_path) not in text and str(tmp_path.resolve()) not in text
    assert link in text  # the views read the files under neutral names
    # The CLI user named the file: its error names it.
    assert cli_main(["sql", store_prefix, "SELECT * FROM broken", "--table", f"broken={tmp_path}/broken.parquet"]) == 2
    assert f"{tmp_path}/broken.parquet" in capsys.readouterr().err


def test_alias_folders_of_dead_processes_are_removed(tmp_path, monkeypatch):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"pile-index-sql-{int(dead.stdout)}-abc"
    (stale / "spill-1").mkdir(parents=True)
    alive = tmp_path / f"pile-index-sql-{os.getpid()}-def"
    alive.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    aliases = sql_mod._Aliases()
    link = aliases.link("t", tmp_path / "other.parquet")
    assert not stale.exists() and alive.exists()
    assert link.parent.parent == tmp_path and link.name == "t.parquet"


def test_reused_sandbox_answers_8_threads_each_its_own(store_prefix):
    """One sandbox serves concurrent queries: each sees its own per-query tables and views, never another's."""
    files = exposed_files(store_prefix)
    sandboxes = sql_mod.SqlSandboxes()
    assert sandboxes.get(files) is sandboxes.get(files)  # made once, reused
    n_docs = len(TokenStore(store_prefix))
    barrier = threading.Barrier(8)
    got: dict[int, list] = {}
    failed: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            answers = []
            for r in range(6):
                n = 1 + t * 10 + r  # this thread's occurrences in this round
                occ = pa.table({"bucket_start": [0] * n, "bucket_end": [5] * n, "doc_id": list(range(n)),
                                "in_row": [True] * n, "trained": [True] * n})
                barrier.wait()
                res = run_sql("SELECT (SELECT sum(occurrences) FROM ngram_timeseries), (SELECT count(*) FROM "
                              "ngram_occurrences), (SELECT count(*) FROM documents)",
                              files, {"ngram_occurrences": occ}, sandboxes=sandboxes)
                answers.append((res.rows, res.tables))
            got[t] = answers
        except BaseException as e:  # reported by the main thread
            failed.append(e)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not failed, failed
    for t in range(8):
        assert got[t] == [([[1 + t * 10 + r, 1 + t * 10 + r, n_docs]],
                           ["documents", "ngram_occurrences", "ngram_timeseries"]) for r in range(6)]
    # A later query on the same sandbox has none of the tables of the queries before it.
    with pytest.raises(QueryError, match="this query has no table ngram_occurrences"):
        run_sql("SELECT count(*) FROM ngram_occurrences", files, sandboxes=sandboxes)
    box = sandboxes.get(files)
    assert run_sql("SELECT count(*) FROM documents", files, sandboxes=sandboxes).rows == [[n_docs]]
    # The lockdown holds on the reused database, and a changed file makes a new sandbox.
    for sql in ["SELECT * FROM read_parquet('%s')" % store_prefix.replace("'", "''") + ".documents.parquet",
                "SELECT 1 FROM duckdb_settings()"]:
        with pytest.raises(QueryError):
            run_sql(sql, files, sandboxes=sandboxes)
    pq.write_table(pq.read_table(f"{store_prefix}.documents.parquet").slice(0, 5), f"{store_prefix}.documents.parquet")
    assert run_sql("SELECT count(*) FROM documents", files, sandboxes=sandboxes).rows == [[5]]
    assert sandboxes.get(files) is not box
    sandboxes.close()
    with pytest.raises(ConfigError, match="closed"):
        run_sql("SELECT 1", files, sandboxes=sandboxes)


def test_timeout_interrupts_only_its_own_query_on_a_shared_sandbox(store_prefix):
    files = exposed_files(store_prefix)
    sandboxes = sql_mod.SqlSandboxes()
    cancel = SqlCancel()
    out: dict[str, object] = {}

    def slow() -> None:
        try:
            run_sql("SELECT count(*) FROM range(1000000000000) a, range(1000) b", files, timeout_s=600,
                    cancel=cancel, sandboxes=sandboxes)
        except LimitError as e:
            out["slow"] = str(e)

    th = threading.Thread(target=slow)
    th.start()
    assert run_sql("SELECT 41 + 1", files, sandboxes=sandboxes).rows == [[42]]  # answered beside the slow one
    cancel.interrupt()
    th.join(60)
    assert "stopped" in out["slow"]
    assert run_sql("SELECT 41 + 1", files, sandboxes=sandboxes).rows == [[42]]
    sandboxes.close()


def test_sql_string_round_trips_through_duckdb(tmp_path):
    """The one literal quoting (view definitions, SET lists, read_parquet paths): DuckDB reads it back as is."""
    import duckdb

    from pile_index.sql.quote import sql_string

    con = duckdb.connect(":memory:")
    for value in ["plain", "it's", "''", "a\"b", "back\\slash", "ü ☃", tmp_path / "o'neil dir" / "x.parquet"]:
        assert con.execute(f"SELECT {sql_string(value)}").fetchone()[0] == str(value)
    folder = tmp_path / "it's here"
    folder.mkdir()
    pq.write_table(pa.table({"x": [1, 2]}), folder / "t.parquet")
    assert con.execute(f"SELECT sum(x) FROM read_parquet({sql_string(folder / 't.parquet')})").fetchone()[0] == 3
    con.close()


def test_deadlines_fire_in_order_and_never_when_disarmed():
    """The one deadline thread: an armed deadline interrupts its query's cancel with "timeout"; a disarmed one
    never does, even when it is due before one that fires."""

    class Flag(SqlCancel):
        def __init__(self) -> None:
            super().__init__()
            self.fired = threading.Event()

        def interrupt(self, reason: str = "cancelled") -> None:
            super().interrupt(reason)
            self.fired.set()

    deadlines = sql_mod._Deadlines()
    quiet, loud = Flag(), Flag()
    with deadlines._cond:  # the thread cannot look before both calls are done (the condition's lock is re-entrant)
        token = deadlines.arm(0.0, quiet)
        deadlines.disarm(token)  # due at once, but disarmed first ...
    deadlines.arm(0.05, loud)  # ... and this one, due later, fires
    assert loud.fired.wait(60) and loud.reason == "timeout"
    assert not quiet.fired.is_set() and quiet.reason is None
    assert deadlines._live == {token + 1}  # live until its query ends and disarms it


def test_an_interrupt_between_statements_is_repeated_until_the_query_ends():
    """DuckDB forgets an interrupt that comes while no statement runs; a stopped query is interrupted again,
    so a statement that starts after the interrupt (the next of one query's statements) is stopped too."""
    import duckdb

    deadlines = sql_mod._Deadlines()
    cur = duckdb.connect(":memory:").cursor()
    cancel = SqlCancel()
    token = deadlines.arm(600, cancel)
    cancel._attach(cur)
    cancel.interrupt()  # no statement runs: DuckDB drops this one
    out: dict[str, BaseException] = {}

    def slow() -> None:
        try:
            cur.sql("SELECT count(*) FROM range(1000000000000) a, range(1000) b").fetchall()
        except BaseException as e:  # noqa: BLE001 - the test reads it
            out["e"] = e

    th = threading.Thread(target=slow)
    th.start()
    th.join(60)
    stopped = not th.is_alive()
    deadlines.disarm(token)
    while th.is_alive():  # a failing run must still end
        cur.interrupt()
        th.join(1)
    assert stopped, "the statement that started after the interrupt kept running"
    assert isinstance(out.get("e"), duckdb.InterruptException)
