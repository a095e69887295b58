"""One document (item) as users see it: tokens, decoded text, metadata row.

A store may carry its tokenizer beside it as ``PREFIX.tokenizer.json`` (ingest writes it), so text is
available without naming the tokenizer again. :class:`Document` and :class:`DocumentMeta` are the typed answers
the CLI (``pile-index doc``) and the API (``/v1/documents/{doc_id}``, each span of a sample) share.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from .docstore import DocumentTable
from ..errors import LimitError, NotFoundError, QueryError
from ..files import tokenizer_path
from ..format.store import TokenStore
from ..format.tokenizer import load_tokenizer


def store_tokenizer_path(prefix: str) -> Path:
    return tokenizer_path(prefix)


def tokenizer_for(store: TokenStore, name: str | None) -> Tokenizer | None:
    """The tokenizer named by the user, else the one stored beside the store, else None."""
    if name:
        return load_tokenizer(name)
    p = store_tokenizer_path(store.prefix)
    return load_tokenizer(p) if p.is_file() else None


def documents_for(store: TokenStore) -> DocumentTable | None:
    """The store's documents table, or None when there is none. Anything under its name (a damaged file, a
    folder, a symlink loop or a dangling link) is opened and checked, so it is a FormatError, never None."""
    p = store.documents_path()
    return DocumentTable(p, n_items=len(store)) if os.path.lexists(p) else None


@dataclass(frozen=True, slots=True)
class DocumentMeta:
    """A document's row of the documents table as users see it (``meta`` parsed, ``token_hash`` as hex)."""

    source_file: str | None = None
    source_line: int | None = None
    pile_set_name: str | None = None
    meta: Any = None
    n_tokens: int | None = None
    n_bytes: int | None = None
    token_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Document:
    """One page of a document (item): its tokens from ``offset``, their text and its metadata row."""

    doc_id: int
    n_tokens: int = field(metadata={"description": "tokens of the whole document"})
    offset: int
    tokens: list[int]
    text: str | None = field(metadata={"description": "the page decoded (null without a tokenizer)"})
    metadata: DocumentMeta | None = field(metadata={"description": "null without a documents table"})


def public_metadata(row: dict[str, Any] | None) -> DocumentMeta | None:
    """A documents-table row for JSON: ``meta`` parsed, ``token_hash`` as 16 hex digits (JSON ints lose u64)."""
    if row is None:
        return None
    out = {k: v for k, v in row.items() if k in _META_FIELDS}
    if out.get("meta") is not None:
        try:
            out["meta"] = json.loads(out["meta"])
        except ValueError:
            pass  # keep the raw string: it is what the input held
    if out.get("token_hash") is not None:
        out["token_hash"] = f"{int(out['token_hash']):016x}"
    return DocumentMeta(**out)


_META_FIELDS = frozenset(DocumentMeta.__dataclass_fields__)


def document_view(
    store: TokenStore,
    doc_id: int,
    offset: int = 0,
    limit: int | None = None,
    documents: DocumentTable | None = None,
    tokenizer: Tokenizer | None = None,
    max_tokens: int | None = None,
) -> Document:
    """Item ``doc_id`` from token ``offset``: ``limit`` tokens (None: up to ``max_tokens``, else all).
    LimitError ``max_document_tokens`` when ``limit`` is above ``max_tokens`` (None: no bound)."""
    if limit is not None and max_tokens is not None and limit > max_tokens:
        raise LimitError(f"limit={limit:,} tokens exceeds max_document_tokens={max_tokens:,}; page with offset",
                         "max_document_tokens")
    if limit is None:
        limit = max_tokens
    n = len(store)
    if not 0 <= doc_id < n:
        raise NotFoundError(f"doc_id {doc_id:,} does not exist; the store has doc_ids 0..{n - 1:,}")
    size = int(store.sizes[doc_id])
    if not 0 <= offset < max(size, 1):
        raise QueryError(f"offset {offset:,} is out of range: document {doc_id:,} has {size:,} tokens, so offset "
                         f"must be 0..{max(size - 1, 0):,}")
    length = size - offset if limit is None else min(limit, size - offset)
    tokens = store.get(doc_id, offset, length)
    ids = [int(t) for t in tokens.tolist()]
    text = tokenizer.decode(ids, skip_special_tokens=False) if tokenizer is not None else None
    meta = None
    if documents is not None:
        meta = public_metadata(documents.rows([doc_id]).get(doc_id))
    return Document(doc_id=doc_id, n_tokens=size, offset=offset, tokens=ids, text=text, metadata=meta)
