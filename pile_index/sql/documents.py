"""One document (item) as users see it: tokens, decoded text, metadata row.

A store may carry its tokenizer beside it as ``PREFIX.tokenizer.json`` (ingest writes it), so text is
available without naming the tokenizer again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from .docstore import DocumentTable
from ..errors import NotFoundError, QueryError
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


def public_metadata(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A documents-table row for JSON: ``meta`` parsed, ``token_hash`` as 16 hex digits (JSON ints lose u64)."""
    if row is None:
        return None
    out = {k: v for k, v in row.items() if k != "doc_id"}
    if out.get("meta") is not None:
        try:
            out["meta"] = json.loads(out["meta"])
        except ValueError:
            pass  # keep the raw string: it is what the input held
    if out.get("token_hash") is not None:
        out["token_hash"] = f"{int(out['token_hash']):016x}"
    return out


def document_view(
    store: TokenStore,
    doc_id: int,
    offset: int = 0,
    limit: int | None = None,
    documents: DocumentTable | None = None,
    tokenizer: Tokenizer | None = None,
) -> dict[str, Any]:
    """``{"doc_id", "n_tokens", "offset", "tokens", "text", "metadata"}`` for item ``doc_id``."""
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
    return {"doc_id": doc_id, "n_tokens": size, "offset": offset, "tokens": ids, "text": text, "metadata": meta}
