"""Tables over a corpus: the documents table and read-only DuckDB SQL.

- :mod:`.docstore`: ``PREFIX.documents.parquet`` (``DOCUMENT_SCHEMA``) read through DuckDB;
- :mod:`.documents`: the documents table and tokenizer beside a store, one document's view;
- :mod:`.engine`: the SQL sandbox (``run_sql``), the exposed files and the ``row_pieces`` view.
"""

from .docstore import DOCUMENT_SCHEMA, DocumentTable, token_hashes
from .documents import (Document, DocumentMeta, document_view, documents_for, public_metadata, store_tokenizer_path,
                        tokenizer_for)
from .engine import SqlCancel, SqlSandbox, SqlSandboxes, check_sql, exposed_files, row_pieces_table, run_sql

__all__ = [
    "DOCUMENT_SCHEMA", "Document", "DocumentMeta", "DocumentTable", "SqlCancel", "SqlSandbox", "SqlSandboxes", "check_sql", "document_view",
    "documents_for", "exposed_files", "public_metadata", "row_pieces_table", "run_sql", "store_tokenizer_path", "token_hashes", "tokenizer_for",
]
