"""Service settings: one object, every limit a named setting with a default and help (datasette's SETTINGS).

An error that hits a limit names the setting (``LimitError(..., setting=NAME)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass
class Settings:
    """Everything the service needs to start; limits are per request."""

    prefixes: list[str] = field(default_factory=list, metadata={"help": "token store prefixes (PREFIX.bin/.idx)"})
    tokenizer: str | None = field(default=None, metadata={"help": "tokenizer.json path or hub id, for text"})
    preshuffled: bool = field(default=False, metadata={"help": "the store is a preshuffled store (item k = sample k)"})
    order_preset: str | None = field(default=None, metadata={"help": "training-order preset, e.g. 'pythia'"})
    seed: int | None = field(default=None, metadata={"help": "training-order seed"})
    seq_length: int | None = field(default=None, metadata={"help": "training-order sequence length (tokens)"})
    num_samples: int | None = field(default=None, metadata={"help": "training-order num_samples"})
    name: str | None = field(default=None, metadata={"help": "training-order dataset name (cache file names)"})
    batch_size: int | None = field(default=None, metadata={"help": "rows per training step"})
    train_steps: int | None = field(default=None, metadata={"help": "steps counted as trained (default num_samples // batch_size)"})
    datasets: list[str] = field(default_factory=list, metadata={"help": "dataset folders (dataset build --out) to serve"})
    max_rows_per_request: int = field(default=1024, metadata={"help": "rows one request may return"})
    max_document_tokens: int = field(default=100_000, metadata={"help": "tokens one document response returns"})
    max_tokens_per_query: int = field(default=4096, metadata={"help": "tokens in one n-gram query"})
    max_text_chars: int = field(default=100_000, metadata={"help": "characters of text in one query"})
    max_locate_page: int = field(default=1000, metadata={"help": "occurrences per locate page"})
    max_occurrences: int = field(default=100_000, metadata={"help": "occurrences one steps query may expand"})
    explorer_max_chart_rows: int = field(default=1 << 20, metadata={"help": "training rows the explorer's "
                                         "overview reads for its composition chart (the first steps past it)"})
    sql_max_rows: int = field(default=10_000, metadata={"help": "rows an SQL query returns before truncation"})
    sql_workers: int = field(default=2, metadata={"help": "SQL queries run at once, on a thread pool of their own "
                             "(more wait for a free worker), so heavy queries cannot take the threads look-ups run on"})
    sql_timeout_s: float = field(default=10.0, metadata={"help": "seconds an SQL query may run (parse to last row encoded)"})
    max_sql_chars: int = field(default=100_000, metadata={"help": "characters of one SQL text, checked before it is parsed"})
    max_response_bytes: int = field(default=32 << 20, metadata={"help": "bytes of JSON rows one SQL answer may hold"})
    max_body_bytes: int = field(default=1 << 20, metadata={"help": "bytes of one request body, checked before it is parsed"})
    request_timeout_s: float = field(default=60.0, metadata={"help": "seconds any request may run"})
    max_connections: int = field(default=1000, metadata={"help": "open connections the server holds; past it, the "
                                 "one waiting longest for its request head is closed"})
    header_timeout_s: float = field(default=10.0, metadata={"help": "seconds a connection may take to send a "
                                    "complete request head (new, or idle keep-alive)"})

    @classmethod
    def describe(cls) -> dict[str, str]:
        """Setting name -> help text, for docs and the /v1/settings route."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}
