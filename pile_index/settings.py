"""Every limit, as data: one table of ``Setting(name, default, help)`` (datasette's SETTINGS).

The core enforces each limit before the work it bounds and names the setting in the ``LimitError``; the
service's settings object (``api/settings.py``) is built from this table and ``pile-index serve --setting
NAME VALUE`` sets any of them; the CLI commands that do the same work take the same defaults from here. Adding
a limit is one line below (and its row in the README's limits table, which a test compares with this one).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    """One named limit: its name, its default (the type of the default is the setting's type) and its help."""

    name: str
    default: int | float
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("max_rows_per_request", 1024, "rows of `/v1/batches`"),
    Setting("max_document_tokens", 100_000, "tokens of one `/v1/documents` page"),
    Setting("max_tokens_per_query", 4096, "tokens of an n-gram query"),
    Setting("max_text_chars", 100_000, "characters of a text query"),
    Setting("max_locate_page", 1000, "occurrences per locate page (and per span of a trace)"),
    Setting("max_queries_per_request", 10_000, "n-grams of one batch count (`POST /v1/ngrams/count` `queries`, "
                                              "`ngram count --file`)"),
    Setting("max_occurrences", 100_000, "occurrences a steps query (n-gram or document) expands"),
    Setting("max_view_rows", 1 << 24, "training rows one `row_pieces` table expands (SQL with steps A:B)"),
    Setting("sql_max_rows", 10_000, "rows an SQL answer returns before `truncated`"),
    Setting("sql_timeout_s", 10.0, "seconds an SQL query runs (parse to last row encoded) before it is interrupted"),
    Setting("max_sql_chars", 100_000, "characters of one SQL text, checked before it is parsed"),
    Setting("sql_workers", 2, "SQL queries running at once, on a thread pool of their own (more wait for a free "
                              "worker)"),
    Setting("max_response_bytes", 32 << 20, "bytes of JSON rows one SQL answer holds"),
    Setting("max_body_bytes", 1 << 20, "bytes of one request body, checked before any route reads it (every POST)"),
    Setting("request_timeout_s", 60.0, "seconds any request may run"),
    Setting("max_connections", 1000, "open connections; past it, the one waiting longest for its request head is "
                                     "closed (408)"),
    Setting("header_timeout_s", 10.0, "seconds a connection may take to send a complete request head (new, or idle "
                                      "keep-alive)"),
    Setting("explorer_max_chart_rows", 1 << 20, "training rows the explorer's overview chart reads"),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


def default(name: str) -> int | float:
    """The default of setting ``name`` (KeyError for a name not in the table: a programming error)."""
    return BY_NAME[name].default
