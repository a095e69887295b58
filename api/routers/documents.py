"""``/v1/documents/{doc_id}``: one item's tokens, text and metadata row."""

from __future__ import annotations


from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from pile_index.errors import LimitError
from pile_index.sql import document_view

from ..deps import CorpusDep, SettingsDep
from ..params import ASCII_INT, MAX_INT, Id
from ..schemas import DocumentMeta


router = APIRouter(prefix="/v1/documents", tags=["documents"])




class Document(BaseModel):
    doc_id: int
    n_tokens: int
    offset: int
    tokens: list[int]
    text: str | None
    metadata: DocumentMeta | None


@router.get("/{doc_id}", response_model=Document, summary="Tokens, text and metadata of one document")
def get_document(
    corpus: CorpusDep,
    settings: SettingsDep,
    doc_id: Id,
    offset: Annotated[int, Query(ge=0, le=MAX_INT, description="first token to return"), ASCII_INT] = 0,
    limit: Annotated[int | None, Query(ge=0, le=MAX_INT, description="tokens to return (default: up to max_document_tokens)"), ASCII_INT] = None,
) -> Document:
    cap = settings.max_document_tokens
    if limit is not None and limit > cap:
        raise LimitError(f"limit={limit:,} tokens exceeds max_document_tokens={cap:,}; page with offset", "max_document_tokens")
    view = document_view(corpus.store, doc_id, offset=offset, limit=cap if limit is None else limit,
                         documents=corpus.documents, tokenizer=corpus.tokenizer)
    return Document(**view)
