"""``/v1/documents/{doc_id}``: one item's tokens, text and metadata row."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from pile_index.sql import Document

from ..deps import CorpusDep
from ..params import ASCII_INT, MAX_INT, Id
from ..schemas import json_response

router = APIRouter(prefix="/v1/documents", tags=["documents"])


@router.get("/{doc_id}", response_model=Document, summary="Tokens, text and metadata of one document")
def get_document(
    corpus: CorpusDep,
    doc_id: Id,
    offset: Annotated[int, Query(ge=0, le=MAX_INT, description="first token to return"), ASCII_INT] = 0,
    limit: Annotated[int | None, Query(ge=0, le=MAX_INT, description="tokens to return (default: up to max_document_tokens)"), ASCII_INT] = None,
) -> Response:
    return json_response(corpus.document(doc_id, offset=offset, limit=limit))
