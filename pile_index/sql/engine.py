"""Read-only SQL over a store's tables with DuckDB: documents, spans, occurrences, scores and ready views.

Safety (datasette's model: read-only and bounded in rows and time): every query gets a fresh in-memory connection
that can only read the files it was given. The SQL must be one statement whose parse type is SELECT and
whose first keyword is SELECT or WITH (so no INSERT/CREATE/COPY/ATTACH/PRAGMA/SET/INSTALL/LOAD/EXPLAIN);
then, after the exposed Parquet files are registered as views, DuckDB itself is locked down:
``allowed_paths`` = exactly those files, ``enable_external_access = false`` (no other file, no ATTACH, no
COPY, no extension install), extension autoload off, ``lock_configuration = true`` (no SET). A row limit
(``sql_max_rows``) cuts the result with ``truncated: true``; a time limit (``sql_timeout_s``) interrupts
the query from a timer thread (``connection.interrupt()``) and raises a LimitError naming the setting.

Tables exposed when present beside the store: ``documents`` (``PREFIX.documents.parquet``), ``spans``,
``occurrences``, ``scores`` (``PREFIX.<name>.parquet``). Callers add Arrow tables built for one query
(training-row pieces of a step range, an n-gram's occurrences) with ``extra``; :data:`READY_VIEWS` are
created over them when their inputs are there.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from ..errors import ConfigError, LimitError, NotFoundError, QueryError
from ..format.indexed import strip_prefix

log = logging.getLogger(__package__)  # one logger per package: log lines name the concept

EXPOSED_FILES = ("documents", "spans", "occurrences", "scores")
MAX_VIEW_ROWS = 1 << 24  # training rows one row_pieces table may expand (16.8M rows, ~1 GB of pieces)

# name -> (tables it needs, SQL). Created only when every needed table is registered.
READY_VIEWS: dict[str, tuple[tuple[str, ...], str]] = {
    # Training composition: tokens and rows per pile_set_name in each step bucket of the row pieces given.
    "composition": (
        ("row_pieces", "documents"),
        """SELECT p.bucket_start AS step_start, p.bucket_end AS step_end,
                  coalesce(d.pile_set_name, '(unknown)') AS pile_set_name,
                  sum(p.doc_end - p.doc_start)::BIGINT AS tokens, count(DISTINCT p.sample_index) AS rows,
                  count(DISTINCT p.doc_id) AS documents
           FROM row_pieces p LEFT JOIN documents d USING (doc_id)
           GROUP BY ALL ORDER BY step_start, tokens DESC""",
    ),
    "composition_by_bucket": (
        ("row_pieces",),
        """SELECT bucket_start AS step_start, bucket_end AS step_end, sum(doc_end - doc_start)::BIGINT AS tokens,
                  count(DISTINCT sample_index) AS rows, count(DISTINCT doc_id) AS documents
           FROM row_pieces GROUP BY ALL ORDER BY step_start""",
    ),
    # Documents seen in the step range: first/last step, rows and tokens fed.
    "documents_seen": (
        ("row_pieces",),
        """SELECT doc_id, min(step) AS first_step, max(step) AS last_step, count(*) AS rows,
                  sum(doc_end - doc_start)::BIGINT AS tokens_in_rows
           FROM row_pieces GROUP BY doc_id ORDER BY doc_id""",
    ),
    # An n-gram's occurrence time series: in-row occurrences per step bucket.
    "ngram_timeseries": (
        ("ngram_occurrences",),
        """SELECT bucket_start AS step_start, bucket_end AS step_end, count(*) AS occurrences,
                  count(DISTINCT doc_id) AS documents
           FROM ngram_occurrences WHERE in_row AND trained GROUP BY ALL ORDER BY step_start""",
    ),
}

_LEADING = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*", re.S)


@dataclass
class SqlResult:
    """Columns (name, DuckDB type), rows as JSON-ready lists, and whether the row limit cut them."""

    columns: list[dict[str, str]]
    rows: list[list[Any]]
    truncated: bool
    elapsed_s: float
    tables: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows, "row_count": len(self.rows),
                "truncated": self.truncated, "elapsed_s": round(self.elapsed_s, 6), "tables": self.tables}


def check_sql(sql: str) -> str:
    """Return the single SELECT/WITH statement in ``sql``; QueryError for anything else."""
    if not sql or not sql.strip():
        raise QueryError("the SQL is empty; pass one SELECT ... or WITH ... SELECT statement")
    try:
        stmts = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise QueryError(f"the SQL does not parse: {e}") from e
    if len(stmts) != 1:
        raise QueryError(f"expected exactly one statement, found {len(stmts)}; remove the extra ';' statements")
    stmt = stmts[0]
    head = sql[_LEADING.match(sql).end():]
    keyword = re.match(r"[A-Za-z]*", head).group(0).upper()
    if stmt.type != duckdb.StatementType.SELECT or keyword not in ("SELECT", "WITH"):
        kind = str(stmt.type).split(".")[-1]
        raise QueryError(
            f"only read queries are allowed: found a {kind} statement starting with {keyword or head[:10]!r}; "
            f"expected SELECT ... or WITH ... SELECT (no writes, ATTACH, COPY, PRAGMA, SET, INSTALL/LOAD)"
        )
    return sql


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def exposed_files(prefix: str, tables: Mapping[str, str | os.PathLike] | None = None) -> dict[str, list[Path]]:
    """Name -> Parquet files: the store tables that exist beside ``prefix`` (documents, spans, occurrences,
    scores as ``PREFIX.<name>.parquet``), plus ``tables`` the caller names (a file, or a folder whose
    ``*.parquet`` files, recursively, form one table; e.g. a scores dataset). Only these files are readable."""
    base = strip_prefix(prefix)
    out: dict[str, list[Path]] = {}
    for name in EXPOSED_FILES:
        p = Path(f"{base}.{name}.parquet")
        if p.is_file():
            out[name] = [p.resolve()]
    for name, path in (tables or {}).items():
        if not _NAME.match(name) or name in READY_VIEWS:
            raise ConfigError(f"table name {name!r}: expected a SQL identifier (letters, digits, _) that is not a "
                              f"ready view ({', '.join(READY_VIEWS)})")
        p = Path(path)
        files = sorted(p.rglob("*.parquet")) if p.is_dir() else [p]
        if not files or not all(f.is_file() for f in files):
            raise NotFoundError(f"table {name}: {p} is not a Parquet file or a folder holding some")
        out[name] = [f.resolve() for f in files]
    return out


def _sql_str(s: str) -> str:
    return s.replace("'", "''")


def open_connection(files: Mapping[str, Path | list[Path]], extra: Mapping[str, pa.Table] | None = None,
                    threads: int = 2, memory_limit: str = "4GB") -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """A locked-down in-memory connection with ``files`` as views and ``extra`` Arrow tables registered."""
    con = duckdb.connect(":memory:", config={"threads": threads, "memory_limit": memory_limit})
    tables: list[str] = []
    try:
        allowed: list[Path] = []
        for name, paths in files.items():
            paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
            listing = ", ".join(f"'{_sql_str(str(p))}'" for p in paths)
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{listing}], union_by_name = true)")
            tables.append(name)
            allowed += [Path(p) for p in paths]
        for name, table in (extra or {}).items():
            con.register(f"_arrow_{name}", table)
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM _arrow_{name}")
            tables.append(name)
        for name, (needs, body) in READY_VIEWS.items():
            if all(n in tables for n in needs):
                con.execute(f"CREATE VIEW {name} AS {body}")
                tables.append(name)
        listing = ", ".join(f"'{_sql_str(str(p))}'" for p in allowed)
        con.execute(f"SET allowed_paths = [{listing}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con, tables


def _jsonable(v: Any) -> Any:
    if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        return v.isoformat()
    if isinstance(v, _dt.timedelta):
        return v.total_seconds()
    if isinstance(v, decimal.Decimal):  # DECIMAL and HUGEINT sums: exact ints stay ints
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def run_sql(
    sql: str,
    files: Mapping[str, Path | list[Path]],
    extra: Mapping[str, pa.Table] | None = None,
    max_rows: int = 10_000,
    timeout_s: float = 10.0,
) -> SqlResult:
    """Run one read-only query; at most ``max_rows`` rows (``truncated`` says if more existed) within
    ``timeout_s`` seconds (LimitError ``sql_timeout_s`` otherwise)."""
    check_sql(sql)
    if max_rows < 0:
        raise QueryError(f"max_rows={max_rows:,}: expected >= 0")
    con, tables = open_connection(files, extra)
    timed_out = threading.Event()

    def _interrupt() -> None:
        timed_out.set()
        con.interrupt()

    timer = threading.Timer(timeout_s, _interrupt)
    t0 = time.perf_counter()
    timer.start()
    try:
        rel = con.sql(sql)
        reader = rel.to_arrow_reader(min(max(max_rows + 1, 1), 100_000))
        batches: list[pa.RecordBatch] = []
        n = 0
        schema = reader.schema
        for batch in reader:
            batches.append(batch)
            n += batch.num_rows
            if n > max_rows:
                break
        types = {name: str(t) for name, t in zip(rel.columns, rel.types)}
    except duckdb.InterruptException as e:
        raise LimitError(
            f"the query ran longer than sql_timeout_s={timeout_s:g} seconds and was stopped; narrow it "
            f"(WHERE, LIMIT) or raise the setting", "sql_timeout_s") from e
    except duckdb.Error as e:
        if timed_out.is_set():
            raise LimitError(f"the query ran longer than sql_timeout_s={timeout_s:g} seconds and was stopped",
                             "sql_timeout_s") from e
        raise QueryError(f"the query failed: {e}") from e
    finally:
        timer.cancel()
        elapsed = time.perf_counter() - t0
        con.close()
    table = pa.Table.from_batches(batches, schema=schema)
    truncated = table.num_rows > max_rows
    table = table.slice(0, max_rows)
    columns = [{"name": f.name, "type": types.get(f.name, str(f.type))} for f in table.schema]
    cols = [table.column(i).to_pylist() for i in range(table.num_columns)]
    rows = [[_jsonable(c[r]) for c in cols] for r in range(table.num_rows)]
    return SqlResult(columns=columns, rows=rows, truncated=truncated, elapsed_s=elapsed, tables=tables)


def row_pieces_table(order: Any, step_lo: int, step_hi: int, bucket_steps: int | None = None,
                     max_rows: int = MAX_VIEW_ROWS) -> pa.Table:
    """The document pieces of every training row in steps [step_lo, step_hi) as an Arrow table:
    step, slot, sample_index, doc_id, doc_start, doc_end (document tokens [doc_start, doc_end) are in the
    row), bucket_start, bucket_end. Built from the index maps with numpy (GPT2Dataset.__getitem__'s
    arithmetic, vectorised; no Python loop over rows). Needs a raw store with index maps."""
    if getattr(order, "preshuffled", False) or not hasattr(order, "maps"):
        raise ConfigError("the training-row views need document identity: open the raw store with its index "
                          "maps (order options without --preshuffled)")
    bs = int(order.batch_size)
    last_step = int(order.num_samples) // bs
    if not 0 <= step_lo < step_hi <= last_step:
        raise QueryError(f"steps {step_lo:,}:{step_hi:,}: expected 0 <= A < B <= {last_step:,} (steps with full batches)")
    n_rows = (step_hi - step_lo) * bs
    if n_rows > max_rows:
        raise LimitError(f"steps {step_lo:,}:{step_hi:,} are {n_rows:,} rows; at most {max_rows:,} rows "
                         f"(MAX_VIEW_ROWS) go into row_pieces: narrow the step range")
    width = max(1, -(-(step_hi - step_lo) // 100)) if bucket_steps is None else int(bucket_steps)
    if width < 1:
        raise ConfigError(f"bucket_steps={width:,}: expected >= 1")
    maps = order.maps
    sizes = np.asarray(order.store.sizes)
    ks = np.arange(step_lo * bs, step_hi * bs, dtype=np.int64)
    u = np.asarray(maps.shuffle_idx[ks], dtype=np.int64)
    si = np.asarray(maps.sample_idx)
    f, a = si[u, 0].astype(np.int64), si[u, 1].astype(np.int64)
    last, b = si[u + 1, 0].astype(np.int64), si[u + 1, 1].astype(np.int64)
    cnt = last - f + 1
    row = np.repeat(np.arange(ks.size), cnt)
    p = np.repeat(f - (np.cumsum(cnt) - cnt), cnt) + np.arange(int(cnt.sum()))
    doc = np.asarray(maps.doc_idx, dtype=np.int64)[p]
    start = np.where(p == f[row], a[row], 0)
    end = np.where(p == last[row], b[row] + 1, sizes[doc].astype(np.int64))
    keep = end > start
    row, doc, start, end = row[keep], doc[keep], start[keep], end[keep]
    k = ks[row]
    step = k // bs
    bucket = step_lo + ((step - step_lo) // width) * width
    return pa.table({"step": step, "slot": k % bs, "sample_index": k, "doc_id": doc, "doc_start": start,
                     "doc_end": end, "bucket_start": bucket, "bucket_end": np.minimum(bucket + width, step_hi)})
