"""The document table of a store (``PREFIX.documents.parquet``) read through DuckDB.

One row per item: ``doc_id`` (= item index), ``source_file``, ``source_line``, ``pile_set_name``,
``meta`` (JSON string), ``n_tokens``, ``n_bytes``, ``token_hash`` (64-bit hash of the item's token bytes).
Connections are read-only in-memory DuckDB databases that scan the Parquet file.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ..errors import FormatError, NotFoundError

DOCUMENT_SCHEMA = pa.schema(
    [
        ("doc_id", pa.int64()),
        ("source_file", pa.string()),
        ("source_line", pa.int64()),
        ("pile_set_name", pa.string()),
        ("meta", pa.string()),
        ("n_tokens", pa.int64()),
        ("n_bytes", pa.int64()),
        ("token_hash", pa.uint64()),
    ]
)


class DocumentTable:
    """Look-ups of document rows by ``doc_id``; thread-safe (one cursor per call)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise NotFoundError(f"{self.path}: no documents table; build it with `pile-index ingest` or `attach`")
        self._con = duckdb.connect(":memory:")
        self._lock = threading.Lock()
        try:
            cols = {r[0] for r in self._con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(self.path)]).fetchall()}
        except duckdb.Error as e:
            raise FormatError(f"{self.path}: not a readable Parquet file ({e})") from e
        missing = {f.name for f in DOCUMENT_SCHEMA} - cols
        if missing:
            raise FormatError(f"{self.path}: columns {sorted(missing)} are missing; expected {DOCUMENT_SCHEMA.names}")
        with self._lock:
            self._con.execute(f"CREATE VIEW documents AS SELECT * FROM read_parquet('{_sql_str(self.path)}')")
            self.count = int(self._con.execute("SELECT count(*) FROM documents").fetchall()[0][0])

    def rows(self, doc_ids: list[int]) -> dict[int, dict[str, Any]]:
        """doc_id -> row for every id present (missing ids are absent from the result)."""
        if not doc_ids:
            return {}
        with self._lock:
            cur = self._con.cursor()
        tbl = cur.sql(
            "SELECT * FROM documents WHERE doc_id IN (SELECT unnest($ids::BIGINT[]))", params={"ids": list(map(int, doc_ids))}
        ).to_arrow_table()
        return {int(r["doc_id"]): r for r in tbl.to_pylist()}

    def row(self, doc_id: int) -> dict[str, Any]:
        r = self.rows([doc_id]).get(int(doc_id))
        if r is None:
            raise NotFoundError(f"doc_id {doc_id:,} is not in {self.path} ({self.count:,} documents)")
        return r

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor on the connection that has the ``documents`` view."""
        with self._lock:
            return self._con.cursor()

    def close(self) -> None:
        """Close the DuckDB connection (cursors taken from it close with it)."""
        with self._lock:
            self._con.close()


def _sql_str(path: Path) -> str:
    return str(path).replace("'", "''")
