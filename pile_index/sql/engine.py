"""Read-only SQL over a store's tables with DuckDB: documents, spans, occurrences, scores and ready views.

Safety (datasette's model), in this order:

1. Bounds before any parsing: at most ``max_sql_chars`` characters (setting ``max_sql_chars``), valid
   Unicode (no lone surrogate), and a first keyword that starts a read query (:data:`QUERY_KEYWORDS`).
2. A session of its own per query (a cursor on the sandbox's in-memory database, :class:`SqlSandbox`,
   which a service makes once per set of exposed files and reuses), and the parse inside it
   (``json_serialize_sql``, which serializes only SELECT-type statements): DuckDB parses with the GIL
   released, under the time limit. ``duckdb.extract_statements`` would hold the GIL for the whole parse
   (measured: 25 s for 2 MB of parentheses, every other request stalled). Exactly one statement, and it must
   be a query. A text that passed lately is not parsed again (:class:`_Checked`).
3. The exposed Parquet files become views over neutral names, once per sandbox: symlinks in a private folder
   of this process (``/tmp/pile-index-sql-PID-*/documents.parquet``), so views, file metadata and error
   messages never show where the store lives. Then DuckDB itself is locked down, before any query runs:
   ``allowed_paths`` = exactly those files, ``enable_external_access = false`` (no other file, no ATTACH, no
   COPY, no extension install), extension autoload off, spill files in a folder of their own,
   ``lock_configuration = true`` (no SET). Tables built for one query (``extra``) and the ready views over
   them live in its own session, so concurrent queries never see each other's. DuckDB resolves the links in
   ``allowed_paths``, so what reads settings or runs SQL from a string (:data:`HIDDEN_FUNCTIONS`) is refused
   at the parse.
4. A time limit (``sql_timeout_s``) interrupts the query's session (no other) from the one deadline thread
   all queries share; a caller whose own limit answers first (the API's ``request_timeout_s``) interrupts it
   through :class:`SqlCancel`, so no work goes on after the answer. A row limit (``sql_max_rows``, found by fetching one more row) sets
   ``truncated: true``; ``max_response_bytes`` bounds the JSON of the rows while it is produced.

Values are encoded to JSON by DuckDB itself (``to_json``), column type by column type, so nothing goes
through Python objects that cannot hold it (dates beyond year 9999, ``TIME '24:00:00'``, time zones,
BIGNUM): JSON numbers for integers, decimals and finite floats; ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` for the non-finite floats; DuckDB's text form (``::VARCHAR``) as a JSON string for dates,
times, timestamps, intervals, UUIDs, BLOBs (``\\xNN`` escapes), BITs and enums; lists, structs and maps as
JSON arrays and objects, recursively; JSON values embedded as they are (refused if they hold NaN).

Tables exposed when present beside the store: ``documents`` (``PREFIX.documents.parquet``), ``spans``,
``occurrences``, ``scores`` (``PREFIX.<name>.parquet``). Callers add Arrow tables built for one query
(training-row pieces of a step range, an n-gram's occurrences) with ``extra``; :data:`READY_VIEWS` are
created over them when their inputs are there.
"""

from __future__ import annotations

import atexit
import glob
import heapq
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import files
from ..errors import ConfigError, LimitError, NotFoundError, QueryError
from ..format.indexed import strip_prefix
from ..settings import default
from .quote import sql_string

log = logging.getLogger(__package__)  # one logger per package: log lines name the concept

EXPOSED_FILES = ("documents", "spans", "occurrences", "scores")
DATASET_TABLE = files.DATASET_TABLE  # the table a `dataset build` folder holds (pile_index.datasets)

# Defaults of the limits (the service's settings of the same names override them).
MAX_ROWS = 10_000
TIMEOUT_S = 10.0
MAX_SQL_CHARS = 100_000  # the worst parse at this size (nested parentheses, long lists): < 1 s, ~200 MB
MAX_RESPONSE_BYTES = 32 << 20

# The first keyword of every statement accepted; DuckDB's parse then confirms it is one query.
QUERY_KEYWORDS = ("SELECT", "WITH", "FROM", "VALUES", "TABLE", "DESCRIBE", "DESC", "SUMMARIZE", "SHOW",
                  "PIVOT", "UNPIVOT")

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

# Tables built for one query -> the parameters that add them (run_sql(table_options=...) rewords them,
# e.g. as CLI flags). Named when a query reads one of them, or a view over one, without it.
QUERY_TABLES: dict[str, str] = {"row_pieces": "steps=A:B", "ngram_occurrences": "ngram_tokens or ngram_text"}
SOURCE_TABLES: dict[str, str] = {"documents": "PREFIX.documents.parquet, written by ingest or attach"}

# DuckDB resolves the links in allowed_paths to the files they point at, so the settings would show the
# store's paths: the functions that read settings, and those that run SQL from a string, are refused.
HIDDEN_FUNCTIONS: dict[str, str] = {
    "current_setting": "the settings are fixed for the sandbox and name the server's files",
    "duckdb_settings": "the settings are fixed for the sandbox and name the server's files",
    "query": "write the query itself",
    "query_table": "name the table itself",
    "json_execute_serialized_sql": "write the query itself",
}

_LEADING = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*", re.S)
_KEYWORD = re.compile(r"[A-Za-z]*")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_MISSING_TABLE = re.compile(r"Table with name (\S+) does not exist!?(?:\s*Did you mean [^\n]*)?")
_TOO_LARGE = "pile-index: value over max_response_bytes"  # raised inside DuckDB by error(), recognised here
_NOT_JSON = "pile-index: JSON value holds NaN or Infinity"


@dataclass
class SqlResult:
    """Columns (name, DuckDB type), rows as one JSON array text, and whether the row limit cut them."""

    columns: list[dict[str, str]]
    rows_json: str
    row_count: int
    truncated: bool
    elapsed_s: float
    tables: list[str] = field(default_factory=list)

    @property
    def rows(self) -> list[list[Any]]:
        """The rows as Python values (JSON numbers as int/float; see :meth:`to_json` for the exact text)."""
        return json.loads(self.rows_json)

    def as_dict(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows, "row_count": self.row_count,
                "truncated": self.truncated, "elapsed_s": round(self.elapsed_s, 6), "tables": self.tables}

    def to_json(self) -> str:
        """The answer as one JSON document, the rows exactly as DuckDB encoded them."""
        head = json.dumps({"columns": self.columns}, ensure_ascii=False)[:-1]
        tail = json.dumps({"row_count": self.row_count, "truncated": self.truncated,
                           "elapsed_s": round(self.elapsed_s, 6), "tables": self.tables}, ensure_ascii=False)[1:]
        return f'{head}, "rows": {self.rows_json}, {tail}'


RETRY_S = 0.05  # how often a stopped query's session is interrupted again until the query ends


class SqlCancel:
    """Stops a running query from another thread: the time limit's deadline thread calls :meth:`interrupt`,
    and so can a caller whose own limit answered first. Interrupting before the connection exists stops it at
    once.

    DuckDB forgets an interrupt that comes while no statement runs (it clears the flag when the next one
    starts), and one query runs several statements (the parse, the tables of one query, the query). So once
    stopped, the session is interrupted again every :data:`RETRY_S` seconds from the deadline thread, as long
    as the query that armed it runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._watch: tuple[_Deadlines, int] | None = None
        self.reason: str | None = None

    def interrupt(self, reason: str = "cancelled") -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
            self._interrupt_locked()

    def _attach(self, con: duckdb.DuckDBPyConnection | None) -> None:
        with self._lock:
            self._con = con
            if self.reason is not None:
                self._interrupt_locked()

    def _interrupt_locked(self) -> None:
        """Interrupt the session if there is one, and have the deadline watch repeat it (the watch's lock is
        only ever taken inside this one, never the other way round)."""
        if self._con is not None:
            self._con.interrupt()
            if self._watch is not None:
                self._watch[0].again(self._watch[1], self)


class _Deadlines:
    """One daemon thread that interrupts queries past their time limit (a ``threading.Timer`` per query
    started a thread each time: ~160 us of a ~1 ms light query), and repeats the interrupt of a stopped
    query (:meth:`again`). :meth:`arm` returns a token for :meth:`disarm`; a disarmed deadline never fires."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, SqlCancel]] = []
        self._live: set[int] = set()
        self._seq = 0
        self._thread: threading.Thread | None = None

    def arm(self, timeout_s: float, cancel: SqlCancel) -> int:
        with self._cond:
            self._seq += 1
            token = self._seq
            self._live.add(token)
            self._push(time.monotonic() + timeout_s, token, cancel)
        with cancel._lock:
            cancel._watch = (self, token)
        return token

    def again(self, token: int, cancel: SqlCancel) -> None:
        """Interrupt ``cancel`` once more after :data:`RETRY_S`, if its query still runs."""
        with self._cond:
            if token in self._live:
                self._push(time.monotonic() + RETRY_S, token, cancel)

    def disarm(self, token: int) -> None:
        with self._cond:
            self._live.discard(token)

    def _push(self, due: float, token: int, cancel: SqlCancel) -> None:
        heapq.heappush(self._heap, (due, token, cancel))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pile-index-sql-deadlines", daemon=True)
            self._thread.start()
        self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)  # disarmed
                if not self._heap:
                    self._cond.wait()
                    continue
                due, token, cancel = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            cancel.interrupt("timeout")  # outside the lock: interrupting takes the query's own lock


_DEADLINES = _Deadlines()


def _check_text(sql: str, max_sql_chars: int) -> str:
    """The checks that need no parser, in linear time: size, encoding, first keyword. Returns the keyword."""
    if not isinstance(sql, str):
        raise QueryError(f"sql: expected text, got {type(sql).__name__}")
    if len(sql) > max_sql_chars:
        raise LimitError(f"the SQL is {len(sql):,} characters; at most max_sql_chars={max_sql_chars:,} are "
                         f"parsed: shorten it (a long IN list can be a join or a range)", "max_sql_chars")
    try:
        sql.encode("utf-8")
    except UnicodeEncodeError as e:
        raise QueryError(f"the SQL holds {sql[e.start]!r} at character {e.start:,}, a lone surrogate that is "
                         f"not text; send valid Unicode") from e
    if "\x00" in sql:
        raise QueryError(f"the SQL holds a NUL character at character {sql.index(chr(0)):,}; remove it")
    if not sql.strip():
        raise QueryError("the SQL is empty; pass one SELECT ... or WITH ... SELECT statement")
    head = sql[_LEADING.match(sql).end():]
    if not head.strip(" \t\r\n;)"):
        raise QueryError("the SQL holds only comments; pass one SELECT ... or WITH ... SELECT statement")
    keyword = _KEYWORD.match(head).group(0).upper()
    if keyword not in QUERY_KEYWORDS:
        shown = keyword or head[:10]
        raise QueryError(f"only read queries are allowed: the statement starts with {shown!r}; start it with "
                         f"one of {', '.join(QUERY_KEYWORDS)} (no writes, ATTACH, COPY, PRAGMA, SET, "
                         f"INSTALL/LOAD, EXPLAIN, CALL)")
    return keyword


def _check_statement(con: duckdb.DuckDBPyConnection, sql: str, keyword: str) -> None:
    """DuckDB's own parse, with the GIL released: exactly one statement, a query, and none of
    :data:`HIDDEN_FUNCTIONS`."""
    pattern = sql_string(f'"function_name":"({"|".join(HIDDEN_FUNCTIONS)})"')
    (error, kind, message), n, hidden = con.execute(
        "SELECT json_extract_string(j, ['$.error', '$.error_type', '$.error_message']), "
        f"json_array_length(j, '$.statements'), regexp_extract(j, {pattern}, 1, 'i') "
        "FROM (SELECT json_serialize_sql($1::VARCHAR) AS j)", [sql]).fetchall()[0]
    if error == "true":
        if kind == "parser":
            raise QueryError(f"the SQL does not parse: {' '.join(message.split())}")
        raise QueryError(f"only read queries are allowed: the statement starting with {keyword!r} is not a query; "
                         f"expected SELECT ... or WITH ... SELECT (DESCRIBE, SUMMARIZE and SHOW too)")
    if n == 0:
        raise QueryError("the SQL is empty; pass one SELECT ... or WITH ... SELECT statement")
    if n != 1:
        raise QueryError(f"expected exactly one statement, found {n}; remove the extra ';' statements")
    if hidden:
        raise QueryError(f"{hidden.lower()}() is not available here: {HIDDEN_FUNCTIONS[hidden.lower()]}")


class _Checked:
    """Texts that passed :func:`_check_statement` lately (a bounded LRU): the parse depends on the text alone,
    so a repeated query (a page's figures, a dashboard) skips it (~1 ms of a 2.7 ms ``SELECT 1``, measured).
    Only texts of at most :attr:`MAX_CHARS` characters are kept, so the cache holds at most ~4 MB."""

    SIZE = 1024
    MAX_CHARS = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._texts: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, sql: str) -> bool:
        with self._lock:
            if sql in self._texts:
                self._texts.move_to_end(sql)
                return True
            return False

    def add(self, sql: str) -> None:
        if len(sql) <= self.MAX_CHARS:
            with self._lock:
                self._texts[sql] = None
                if len(self._texts) > self.SIZE:
                    self._texts.popitem(last=False)


_CHECKED = _Checked()


def check_sql(sql: str, max_sql_chars: int = MAX_SQL_CHARS) -> str:
    """Return ``sql`` if it is one read query of at most ``max_sql_chars`` characters; QueryError (LimitError
    for the size) otherwise. :func:`run_sql` makes the same checks inside its sandbox."""
    keyword = _check_text(sql, max_sql_chars)
    con = duckdb.connect(":memory:")
    try:
        _check_statement(con, sql, keyword)
    finally:
        con.close()
    return sql


def _folder_listing(folder: Path, limit: int = 12) -> str:
    items = []
    for p in sorted(folder.iterdir()):
        if p.is_dir():
            n = sum(1 for _ in p.rglob("*.parquet"))
            items.append(f"{p.name}/ ({n:,} .parquet)" if n else f"{p.name}/")
        else:
            items.append(p.name)
    if len(items) > limit:
        items = items[:limit] + [f"... {len(items) - limit:,} more"]
    return ", ".join(items) or "nothing"


def table_files(name: str, path: str | os.PathLike) -> list[Path]:
    """The Parquet files of table ``name``: a file; a folder holding one table (a ``dataset build`` folder:
    its ``dataset.parquet``; else its only ``.parquet`` file, with no sub-folder holding more); or a glob the
    caller wrote (``DIR/parts/*.parquet``, ``DIR/**/*.parquet``), matched in sorted order."""
    text = os.fspath(path)
    if glob.has_magic(text):
        files = sorted(Path(f) for f in glob.glob(text, recursive=True) if Path(f).is_file())
        if not files:
            raise NotFoundError(f"table {name}: the pattern {text} matches no file")
        return files
    p = Path(text)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise NotFoundError(f"table {name}: {p} does not exist; expected a Parquet file, a dataset folder or a glob")
    if (p / DATASET_TABLE).is_file():
        return [p / DATASET_TABLE]
    top = sorted(f for f in p.glob("*.parquet") if f.is_file())
    nested = any(d.is_dir() and next(d.rglob("*.parquet"), None) is not None for d in p.iterdir())
    if len(top) == 1 and not nested:
        return top
    example = top[0] if top else p / "x.parquet"
    raise ConfigError(
        f"table {name}: the folder {p} holds {_folder_listing(p)}, not one table; name one file "
        f"({name}={example}) or write a glob for several ({name}={p}/*.parquet, or {p}/**/*.parquet with "
        f"sub-folders)")


def exposed_files(prefix: str, tables: Mapping[str, str | os.PathLike] | None = None) -> dict[str, list[Path]]:
    """Name -> Parquet files: the store tables that exist beside ``prefix`` (documents, spans, occurrences,
    scores as ``PREFIX.<name>.parquet``), plus ``tables`` the caller names (see :func:`table_files`).
    Only these files are readable."""
    base = strip_prefix(prefix)
    out: dict[str, list[Path]] = {}
    for name in EXPOSED_FILES:
        p = Path(f"{base}.{name}.parquet")
        if p.is_file():
            out[name] = [p.resolve()]
    for name, path in (tables or {}).items():
        if not _NAME.match(name) or name in READY_VIEWS or name in QUERY_TABLES:
            raise ConfigError(f"table name {name!r}: expected a SQL identifier (letters, digits, _) that is not a "
                              f"view or table built per query ({', '.join([*READY_VIEWS, *QUERY_TABLES])})")
        out[name] = [f.resolve() for f in table_files(name, path)]
    return out


class _Aliases:
    """Neutral names for exposed files: symlinks in a private folder (mode 0700) of this process, made once
    per file. The folder goes at exit; folders left by processes that died are removed on first use."""

    PREFIX = "pile-index-sql-"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._dir: Path | None = None
        self._links: dict[Path, Path] = {}

    def _folder(self) -> Path:
        # A forked child makes its own; so does a process whose folder a temp cleaner removed.
        if self._dir is None or self._pid != os.getpid() or not self._dir.is_dir():
            tmp = Path(tempfile.gettempdir())
            _remove_stale(tmp, self.PREFIX)
            try:
                self._dir = Path(tempfile.mkdtemp(prefix=f"{self.PREFIX}{os.getpid()}-", dir=tmp))
            except OSError as e:
                raise ConfigError(f"cannot make the SQL folder in {tmp}: {e}; set TMPDIR to a writable folder") from e
            self._pid = os.getpid()
            self._links = {}
            atexit.register(shutil.rmtree, self._dir, True)
        return self._dir

    def link(self, table: str, target: Path) -> Path:
        """The neutral path standing for ``target`` (``FOLDER/<table>.parquet``, or ``<table>-N.parquet``)."""
        with self._lock:
            folder = self._folder()
            if target in self._links and os.path.lexists(self._links[target]):
                return self._links[target]
            taken = {p.name for t, p in self._links.items() if t != target}
            name, n = f"{table}.parquet", 0
            while name in taken:
                n += 1
                name = f"{table}-{n}.parquet"
            link = folder / name
            os.symlink(target, link)
            self._links[target] = link
            return link

    def spill_folder(self) -> Path:
        """A fresh folder name for one connection's spill files (DuckDB makes it only if it spills)."""
        with self._lock:
            return self._folder() / f"spill-{uuid.uuid4().hex}"


def _remove_stale(tmp: Path, prefix: str) -> None:
    """Remove this user's alias folders whose process is gone (killed before its exit handler ran)."""
    try:
        entries = list(tmp.glob(f"{prefix}*"))
    except OSError:
        return
    for d in entries:
        pid = d.name[len(prefix):].split("-", 1)[0]
        try:
            if not pid.isdigit() or d.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except OSError:  # alive under another user, or not ours to inspect
            continue


_ALIASES = _Aliases()


def _connect(threads: int, memory_limit: str) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(":memory:", config={
        "threads": threads, "memory_limit": memory_limit, "temp_directory": str(_ALIASES.spill_folder()),
        "autoinstall_known_extensions": False, "autoload_known_extensions": False,
    })


def _expose_files(con: duckdb.DuckDBPyConnection, files: Mapping[str, Path | list[Path]], tables: list[str],
                  aliases: dict[str, tuple[str, str]]) -> None:
    """Views over ``files`` under neutral names, then the lockdown. Fills ``tables`` (names) and ``aliases``
    (neutral path -> table, real path; for error messages)."""
    allowed: list[str] = []
    for name, paths in files.items():
        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        links = [str(_ALIASES.link(name, Path(os.path.abspath(p)))) for p in paths]
        for link, p in zip(links, paths):
            aliases[link] = (name, str(p))
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{', '.join(map(sql_string, links))}], "
                    f"union_by_name = true)")
        tables.append(name)
        allowed += links
    # GLOBAL: TimeZone is a session setting, and every query runs on a cursor (a session) of its own.
    con.execute(f"SET GLOBAL TimeZone = 'UTC'; SET allowed_paths = [{', '.join(map(sql_string, allowed))}]; "
                "SET enable_external_access = false; SET lock_configuration = true")


def _expose_extra(cur: duckdb.DuckDBPyConnection, extra: Mapping[str, pa.Table | Callable[[], pa.Table]] | None,
                  tables: list[str]) -> None:
    """``extra`` Arrow tables and the ready views over them, on one query's cursor: both are local to it
    (registered tables and TEMP views live in the cursor's session), so concurrent queries never see another's."""
    for name, table in (extra or {}).items():
        cur.register(name, table() if callable(table) else table)
        tables.append(name)
    for name, (needs, body) in READY_VIEWS.items():
        if all(n in tables for n in needs):
            cur.execute(f"CREATE TEMP VIEW {name} AS {body}")
            tables.append(name)


class SqlSandbox:
    """The locked DuckDB database over one set of exposed files, made once and shared by threads: the views
    over the files are created and the configuration locked when it is made, and each query runs on a cursor
    of its own (its own session: its tables, views and interrupt are its own), closed after it. Making the
    database costs ~35 ms; a cursor, 4 us (measured), which is what a reused sandbox saves per query.

    The database's ``threads`` and ``memory_limit`` bound all of its queries together."""

    def __init__(self, files: Mapping[str, Path | list[Path]], *, threads: int = 2, memory_limit: str = "4GB",
                 reveal_paths: bool = False):
        self.tables: list[str] = []
        self.aliases: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._active = 0
        self._retired = False
        self._con: duckdb.DuckDBPyConnection | None = _connect(threads, memory_limit)
        try:
            _expose_files(self._con, files, self.tables, self.aliases)
        except (duckdb.Error, OSError) as e:
            self._con.close()
            self._con = None
            raise _query_error(e, self.tables, self.aliases, {}, reveal_paths) from e
        except BaseException:
            self._con.close()
            raise

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new session on the database (close it after the query: :meth:`release` does)."""
        with self._lock:
            if self._con is None:
                raise ConfigError("the SQL sandbox is closed; open the service's tables again")
            self._active += 1
            return self._con.cursor()

    def release(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Close a cursor of :meth:`cursor`; a retired sandbox closes with its last cursor."""
        cur.close()
        with self._lock:
            self._active -= 1
            if self._retired and self._active == 0:
                self._close()

    def retire(self) -> None:
        """Close now, or once the queries still running end."""
        with self._lock:
            self._retired = True
            if self._active == 0:
                self._close()

    close = retire

    def _close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


class SqlSandboxes:
    """A service's sandboxes, one per set of exposed files (their paths, inodes, sizes and modification
    times): made on first use, reused by every later query over the same files; a changed file set makes a
    new one and retires the old. Thread-safe."""

    def __init__(self, *, threads: int = 2, memory_limit: str = "4GB"):
        self._lock = threading.Lock()
        self._threads, self._memory_limit = threads, memory_limit
        self._key: tuple | None = None
        self._current: SqlSandbox | None = None
        self._closed = False

    def get(self, files: Mapping[str, Path | list[Path]], reveal_paths: bool = False) -> SqlSandbox:
        key = _files_key(files)
        with self._lock:
            if self._closed:
                raise ConfigError("the service's SQL sandboxes are closed")
            if key != self._key or self._current is None:
                made = SqlSandbox(files, threads=self._threads, memory_limit=self._memory_limit,
                                  reveal_paths=reveal_paths)
                if self._current is not None:
                    self._current.retire()
                self._key, self._current = key, made
            return self._current

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._current is not None:
                self._current.retire()
            self._current = None


def _files_key(files: Mapping[str, Path | list[Path]]) -> tuple:
    out = []
    for name, paths in files.items():
        for p in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
            try:
                st = os.stat(p)
                out.append((name, str(p), st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append((name, str(p), None, None, None))  # the sandbox's view reports it
    return tuple(out)


_NATIVE = frozenset({"boolean", "tinyint", "smallint", "integer", "bigint", "hugeint", "utinyint", "usmallint",
                     "uinteger", "ubigint", "uhugeint", "bignum", "varint", "decimal", "varchar", "date", "time",
                     "time_ns", "time with time zone", "timestamp", "timestamp_s", "timestamp_ms", "timestamp_ns",
                     "timestamp with time zone", "timestamptz_ns", "interval", "uuid", "blob", "bit", "enum",
                     "null", "geometry"})


def _children(t: duckdb.typing.DuckDBPyType) -> list[tuple[str, Any]]:
    return list(t.children)


def _needs_care(t: Any) -> bool:
    """True when plain ``to_json`` would not give strict JSON for a value of type ``t``."""
    kind = t.id
    if str(t) == "JSON":  # a VARCHAR alias; its text is embedded, so it is checked
        return True
    if kind in ("list", "array"):
        return _needs_care(_children(t)[0][1])
    if kind == "map":
        return _needs_care(_children(t)[1][1])
    if kind in ("struct", "tuple"):
        return any(_needs_care(c) for _, c in _children(t))
    if kind == "union":
        return any(_needs_care(c) for _, c in _children(t)[1:])
    return kind not in _NATIVE


_JSON_STRING = r'"(?:[^"\\]|\\.)*"'  # a JSON string literal, escapes included (RE2)


def _json_expr(x: str, t: Any, depth: int = 0) -> str:
    """SQL giving the JSON text (VARCHAR; NULL for null) of ``x``, of DuckDB type ``t``; see the module
    docstring. Nested values are assembled as text: ``to_json`` over JSON values would re-read their
    numbers as doubles (measured: a DECIMAL(38,9) came back rounded)."""
    if not _needs_care(t):
        return f"to_json({x})::VARCHAR"
    kind = t.id
    if kind in ("double", "float"):
        return (f"CASE WHEN {x} IS NULL OR isfinite({x}) THEN to_json({x})::VARCHAR WHEN isnan({x}) THEN '\"NaN\"' "
                f"WHEN {x} > 0 THEN '\"Infinity\"' ELSE '\"-Infinity\"' END")
    e = f"_e{depth}"

    def item(v: str, vt: Any) -> str:
        return f"coalesce({_json_expr(v, vt, depth + 1)}, 'null')"

    if kind in ("list", "array"):
        inner = item(e, _children(t)[0][1])
        return f"'[' || array_to_string(list_transform({x}, lambda {e}: {inner}), ',') || ']'"
    if kind == "map":
        inner = f"to_json({e}.key::VARCHAR)::VARCHAR || ':' || {item(f'{e}.value', _children(t)[1][1])}"
        return f"'{{' || array_to_string(list_transform(map_entries({x}), lambda {e}: {inner}), ',') || '}}'"
    if kind in ("struct", "tuple"):
        named = kind == "struct"
        parts = [(sql_string(json.dumps(k, ensure_ascii=False) + ":") + ", " if named else "")
                 + item(f"struct_extract_at({x}, {i})", c) for i, (k, c) in enumerate(_children(t), 1)]
        body = ", ',', ".join(parts)
        start, end = ("'{'", "'}'") if named else ("'['", "']'")
        return f"CASE WHEN {x} IS NULL THEN NULL ELSE concat({start}, {body}, {end}) END"
    if kind == "union":
        arms = " ".join(f"WHEN union_tag({x}) = {sql_string(k)} THEN concat({sql_string('{' + json.dumps(k, ensure_ascii=False) + ':')}, "
                        f"{item(f'union_extract({x}, {sql_string(k)})', c)}, '}}')" for k, c in _children(t)[1:])
        return f"CASE WHEN {x} IS NULL THEN NULL {arms} END"
    # JSON and VARIANT values (and any type added later) are embedded as their JSON text, unless it holds NaN
    # or Infinity, which DuckDB's JSON accepts and JSON does not: with the strings blanked out, any 'nan' or
    # 'inf' left is such a number.
    text = f"{x}::VARCHAR" if str(t) == "JSON" else f"to_json({x})::VARCHAR"
    return (f"CASE WHEN regexp_matches(lower(regexp_replace({text}, {sql_string(_JSON_STRING)}, '', 'g')), 'nan|inf') "
            f"THEN error({sql_string(_NOT_JSON)}) ELSE {text} END")


def _column_json(x: str, t: Any, max_bytes: int) -> str:
    """A column's JSON; a text or BLOB value longer than the whole answer may be stops the query before it
    is encoded (its length is known without reading it)."""
    if t.id not in ("varchar", "blob"):
        return _json_expr(x, t)
    size = "strlen" if t.id == "varchar" else "octet_length"
    return f"CASE WHEN {size}({x}) > {int(max_bytes)} THEN error({sql_string(_TOO_LARGE)}) ELSE {_json_expr(x, t)} END"


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, max_rows: int, max_bytes: int,
           cancel: SqlCancel) -> tuple[list[dict[str, str]], str, int, bool]:
    """Run the query; return columns, the rows' JSON text, the row count and whether rows were cut."""
    rel = con.sql(sql)
    columns = [{"name": n, "type": str(t)} for n, t in zip(rel.columns, rel.types)]
    values = ", ',', ".join(f"coalesce({_column_json(f'#{i}', t, max_bytes)}, 'null')"
                            for i, t in enumerate(rel.types, 1))
    encoded = rel.project(f"concat('[', {values}, ']')")  # read until one row past max_rows (no rel.limit: +0.5 ms)
    parts: list[str] = []
    n_rows, size, truncated = 0, 1, False  # size of '[' + ','.join(parts) + ']': '[', then each row and a ',' or ']'
    for batch in encoded.to_arrow_reader(2048):
        if cancel.reason is not None:
            break
        room = max_rows - n_rows
        if batch.num_rows > room:  # the one row past the limit says the answer was cut
            truncated = True
            batch = batch.slice(0, room)
        col = batch.column(0)
        size += (pc.sum(pc.binary_length(col)).as_py() or 0) + batch.num_rows
        if max(size, 2) > max_bytes:
            raise LimitError(_too_large(max_bytes), "max_response_bytes")
        parts.extend(col.to_pylist())
        n_rows += batch.num_rows
        if truncated:
            break
    return columns, "[" + ",".join(parts) + "]", n_rows, truncated


def _too_large(max_bytes: int) -> str:
    return (f"the answer's rows exceed max_response_bytes={max_bytes:,} bytes of JSON; select fewer or shorter "
            f"values (LIMIT, left(text, n)) or raise the setting")


def _query_error(e: Exception, tables: list[str], aliases: Mapping[str, tuple[str, str]],
                 table_options: Mapping[str, str], reveal_paths: bool) -> QueryError:
    # One line: DuckDB's first paragraph (the "LINE 1: ..." context after it may quote our own SQL).
    msg = " ".join(str(e).split("\n\n")[0].split())
    for link, (name, real) in aliases.items():  # never show the neutral folder; the real path only if asked
        msg = msg.replace(link, real if reveal_paths else f"<table {name}>")
    m = _MISSING_TABLE.search(msg)
    if m:
        name = m.group(1).strip('"')
        if name in READY_VIEWS:
            needs = READY_VIEWS[name][0]
            lacking = [_how_to_add(n, table_options) for n in needs if n not in tables]
            return QueryError(f"the view {name} reads {' and '.join(needs)}; this query lacks "
                              f"{'; '.join(lacking)}")
        if name in QUERY_TABLES or name in SOURCE_TABLES:
            return QueryError(f"this query has no table {_how_to_add(name, table_options)}")
        known = ", ".join(tables) or "none"
        return QueryError(f"the query failed: no table {name}; the tables of this query are: {known} (and the "
                          f"views {', '.join(READY_VIEWS)} when the tables they read are there)")
    return QueryError(f"the query failed: {msg}")


def _how_to_add(table: str, table_options: Mapping[str, str]) -> str:
    if table in QUERY_TABLES:
        return f"{table} (built per query: add it with {table_options.get(table, QUERY_TABLES[table])})"
    return f"{table} ({SOURCE_TABLES.get(table, 'not exposed')})"


def run_sql(
    sql: str,
    files: Mapping[str, Path | list[Path]],
    extra: Mapping[str, pa.Table | Callable[[], pa.Table]] | None = None,
    max_rows: int = MAX_ROWS,
    timeout_s: float = TIMEOUT_S,
    *,
    max_sql_chars: int = MAX_SQL_CHARS,
    max_response_bytes: int = MAX_RESPONSE_BYTES,
    cancel: SqlCancel | None = None,
    table_options: Mapping[str, str] | None = None,
    reveal_paths: bool = False,
    sandboxes: SqlSandboxes | None = None,
) -> SqlResult:
    """Run one read-only query; at most ``max_rows`` rows (``truncated`` says if more existed) and
    ``max_response_bytes`` bytes of JSON rows (LimitError ``max_response_bytes``) within ``timeout_s``
    seconds (LimitError ``sql_timeout_s``), counted from before the parse to the last row encoded.

    ``extra`` values may be callables, built only once the SQL passed its checks. ``cancel`` lets another
    thread stop the query. ``table_options`` rewords how each of :data:`QUERY_TABLES` is added (e.g. as
    command-line flags) in the error for a query that reads one without it. Errors name the exposed files by
    table (``<table documents>``) unless ``reveal_paths``. ``sandboxes``: a service's reused databases (see
    :class:`SqlSandboxes`); without it the query gets a database of its own, closed after it."""
    keyword = _check_text(sql, max_sql_chars)
    if max_rows < 0:
        raise QueryError(f"max_rows={max_rows:,}: expected >= 0")
    cancel = cancel or SqlCancel()
    t0 = time.perf_counter()
    deadline = _DEADLINES.arm(timeout_s, cancel)
    own: SqlSandbox | None = None
    box: SqlSandbox | None = None
    cur: duckdb.DuckDBPyConnection | None = None
    tables: list[str] = []
    aliases: Mapping[str, tuple[str, str]] = {}
    try:
        if sandboxes is not None:
            box = sandboxes.get(files, reveal_paths)
        else:
            box = own = SqlSandbox(files, reveal_paths=reveal_paths)
        tables, aliases = list(box.tables), box.aliases
        cur = box.cursor()
        cancel._attach(cur)
        if sql not in _CHECKED:
            _check_statement(cur, sql, keyword)
            _CHECKED.add(sql)
        _expose_extra(cur, extra, tables)
        if cancel.reason is None:
            columns, rows_json, n_rows, truncated = _fetch(cur, sql, max_rows, max_response_bytes, cancel)
    except (duckdb.Error, OSError, pa.ArrowException) as e:
        if cancel.reason is not None:
            raise _stopped(cancel.reason, timeout_s) from e
        if _TOO_LARGE in str(e):
            raise LimitError(_too_large(max_response_bytes), "max_response_bytes") from e
        if _NOT_JSON in str(e):
            raise QueryError("a JSON or VARIANT value of the answer holds NaN or Infinity, which JSON cannot "
                             "carry; cast the column to VARCHAR") from e
        raise _query_error(e, tables, aliases, table_options or {}, reveal_paths) from e
    finally:
        _DEADLINES.disarm(deadline)
        cancel._attach(None)
        elapsed = time.perf_counter() - t0
        if cur is not None:
            box.release(cur)
        if own is not None:
            own.close()
    if cancel.reason is not None:
        raise _stopped(cancel.reason, timeout_s)
    return SqlResult(columns=columns, rows_json=rows_json, row_count=n_rows, truncated=truncated,
                     elapsed_s=elapsed, tables=tables)


def _stopped(reason: str, timeout_s: float) -> LimitError:
    if reason == "timeout":
        return LimitError(f"the query ran longer than sql_timeout_s={timeout_s:g} seconds and was stopped; narrow "
                          f"it (WHERE, LIMIT) or raise the setting", "sql_timeout_s")
    return LimitError(f"the query was stopped ({reason})", None)


def row_pieces_table(order: Any, step_lo: int, step_hi: int, bucket_steps: int | None = None,
                     max_rows: int | None = None) -> pa.Table:
    """The document pieces of every training row in steps [step_lo, step_hi) as an Arrow table:
    step, slot, sample_index, doc_id, doc_start, doc_end (document tokens [doc_start, doc_end) are in the
    row), bucket_start, bucket_end. The pieces of the order's one walk (``TrainingOrder.pieces``, GPT2Dataset.
    __getitem__'s; no Python loop over rows). Needs a raw store with index maps. At most ``max_rows`` rows
    (default: the setting max_view_rows, 16.8M rows, ~1 GB of pieces), checked before anything is read."""
    if getattr(order, "preshuffled", False) or not hasattr(order, "maps"):
        raise ConfigError("the training-row views need document identity: open the raw store with its index "
                          "maps (order options without `preshuffled`)")
    last_step = int(order.full_steps)
    if not 0 <= step_lo < step_hi <= last_step:
        raise QueryError(f"steps {step_lo:,}:{step_hi:,}: expected 0 <= A < B <= {last_step:,} (steps with full batches)")
    k0, k1 = order.step_rows(step_lo, step_hi - 1)
    n_rows = k1 - k0
    max_rows = default("max_view_rows") if max_rows is None else int(max_rows)
    if n_rows > max_rows:
        raise LimitError(f"steps {step_lo:,}:{step_hi:,} are {n_rows:,} rows; at most max_view_rows={max_rows:,} "
                         f"rows go into row_pieces: narrow the step range", "max_view_rows")
    width = max(1, -(-(step_hi - step_lo) // 100)) if bucket_steps is None else int(bucket_steps)
    if width < 1:
        raise ConfigError(f"bucket_steps={width:,}: expected >= 1")
    ks = np.arange(k0, k1, dtype=np.int64)
    row, doc, start, length = order.pieces(ks)
    end = start + length
    k = ks[row]
    step, slot = order.step_slot(k)
    bucket = step_lo + ((step - step_lo) // width) * width
    return pa.table({"step": step, "slot": slot, "sample_index": k, "doc_id": doc, "doc_start": start,
                     "doc_end": end, "bucket_start": bucket, "bucket_end": np.minimum(bucket + width, step_hi)})
