"""``/v1/sql``: one read-only SELECT/WITH over the store's tables (documents, spans, occurrences, scores)
and, on request, views built for the query (training composition of a step range, an n-gram's time series).

The query runs in a worker thread of its own bounded pool (``sql_workers`` at once, apart from the threads the
other routes run on, so slow queries cannot hold up look-ups), on the service's reused SQL sandbox; when the
request's own time limit (``request_timeout_s``) answers first,
the route interrupts the DuckDB connection, so no work goes on after the 504. The answer is the JSON text the
core encoded (exact; never re-validated or re-encoded here)."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field, StrictInt

from pile_index import Corpus
from pile_index.errors import LimitError, QueryError
from pile_index.ngram import occurrences_table, query_tokens
from pile_index.sql import SqlCancel, SqlSandboxes, exposed_files, row_pieces_table, run_sql

from ..deps import StateDep
from ..params import ASCII_INT, MAX_INT, Text
from ..settings import Settings
from ..state import AppState


router = APIRouter(prefix="/v1", tags=["sql"])


class SqlQuery(BaseModel):
    sql: Text = Field(description="one SELECT or WITH ... SELECT statement (or DESCRIBE, SUMMARIZE, SHOW); at most "
                      "max_sql_chars characters")
    max_rows: StrictInt | None = Field(None, ge=0, le=MAX_INT, description="row limit (at most sql_max_rows)")
    steps: str | None = Field(None, description="A:B adds row_pieces of steps A..B-1 and the views composition, "
                              "composition_by_bucket, documents_seen")
    ngram_tokens: list[StrictInt] | None = Field(None, description="adds ngram_occurrences and the view ngram_timeseries")
    ngram_text: Text | None = Field(None, description="as ngram_tokens, from text")
    bucket_steps: StrictInt | None = Field(None, ge=1, le=MAX_INT, description="steps per bucket in the views")


class SqlColumn(BaseModel):
    name: str
    type: str


class SqlResponse(BaseModel):
    columns: list[SqlColumn]
    rows: list[list[Any]] = Field(description="values as JSON: numbers for integers, decimals and finite floats; "
                                  "\"NaN\", \"Infinity\", \"-Infinity\"; DuckDB's text form for dates, times, "
                                  "intervals, UUIDs, BLOBs; arrays and objects for lists, structs, maps")
    row_count: int
    truncated: bool = Field(description="true when the query had more rows than the limit")
    elapsed_s: float
    tables: list[str] = Field(description="tables and views the query could read")


def _views(corpus: Corpus, q: SqlQuery) -> dict[str, Any]:
    """Arrow tables built for this query (training-row pieces of a step range, an n-gram's occurrences), as
    callables: the core builds them only once the SQL passed its checks."""
    extra: dict[str, Any] = {}
    if q.steps:
        lo, sep, hi = q.steps.partition(":")
        try:
            a, b = int(lo), int(hi)
        except ValueError as e:
            raise QueryError(f"steps={q.steps!r}: expected A:B, e.g. 0:1000") from e
        extra["row_pieces"] = lambda: row_pieces_table(corpus.order, a, b, q.bucket_steps, corpus.limit("max_view_rows"))
    if q.ngram_tokens is not None or q.ngram_text is not None:
        def occurrences() -> Any:
            ids = corpus.query(q.ngram_tokens, q.ngram_text)
            return occurrences_table(corpus.ngram, corpus.order, ids, q.bucket_steps, corpus.limit("max_occurrences"))
        extra["ngram_occurrences"] = occurrences
    return extra


def run_query(corpus: Corpus, s: Settings, q: SqlQuery, cancel: SqlCancel,
              sandboxes: SqlSandboxes | None = None) -> bytes:
    """The answer's JSON bytes (called in a worker thread by the routes, directly by the explorer's pages);
    ``sandboxes``: the service's reused databases (without: one made for this query)."""
    if q.max_rows is not None and q.max_rows > s.sql_max_rows:
        raise LimitError(f"max_rows={q.max_rows:,} exceeds sql_max_rows={s.sql_max_rows:,}", "sql_max_rows")
    res = run_sql(q.sql, exposed_files(corpus.store.prefix), _views(corpus, q),
                  max_rows=s.sql_max_rows if q.max_rows is None else q.max_rows, timeout_s=s.sql_timeout_s,
                  max_sql_chars=s.max_sql_chars, max_response_bytes=s.max_response_bytes, cancel=cancel,
                  sandboxes=sandboxes)
    return res.to_json().encode("utf-8")


async def _serve(state: AppState, q: SqlQuery) -> Response:
    cancel = SqlCancel()
    try:
        body = await anyio.to_thread.run_sync(run_query, state.corpus, state.settings, q, cancel, state.sql,
                                              abandon_on_cancel=True, limiter=state.sql_limiter)
    except anyio.get_cancelled_exc_class():  # the request time limit answered (or the client left): stop DuckDB
        cancel.interrupt("the request ended")
        raise
    return Response(body, media_type="application/json")


@router.get("/sql", response_model=SqlResponse, summary="Read-only SQL over the store's tables")
async def get_sql(state: StateDep,
                  sql: str = Query(..., description="one SELECT or WITH statement"),
                  max_rows: Annotated[int | None, Query(ge=0, le=MAX_INT), ASCII_INT] = None,
                  steps: str | None = Query(None, description="A:B: add row_pieces and the composition views"),
                  ngram_tokens: str | None = Query(None, description="comma-separated ids: add ngram_occurrences"),
                  ngram_text: str | None = Query(None, description="text: add ngram_occurrences"),
                  bucket_steps: Annotated[int | None, Query(ge=1, le=MAX_INT), ASCII_INT] = None) -> Response:
    toks = None if ngram_tokens is None else query_tokens(tokens=ngram_tokens).tolist()  # ASCII digits only
    q = SqlQuery(sql=sql, max_rows=max_rows, steps=steps, ngram_tokens=toks, ngram_text=ngram_text,
                 bucket_steps=bucket_steps)
    return await _serve(state, q)


@router.post("/sql", response_model=SqlResponse, summary="Read-only SQL over the store's tables (JSON body)")
async def post_sql(state: StateDep, q: SqlQuery) -> Response:
    return await _serve(state, q)
