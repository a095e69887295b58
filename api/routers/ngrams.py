"""``/v1/ngrams/{count,locate,steps}``: exact n-gram counts, positions and training steps."""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, StrictInt

from pile_index.errors import ConfigError, LimitError, QueryError
from pile_index.ngram import NgramIndex, ngram_steps, query_tokens

from ..params import ASCII_INT, MAX_INT, Text


router = APIRouter(prefix="/v1/ngrams", tags=["ngrams"])
_open_lock = threading.Lock()


class NgramQuery(BaseModel):
    tokens: list[StrictInt] | None = Field(None, description="the n-gram as token ids (JSON integers)")
    text: Text | None = Field(None, description="the n-gram as text, encoded with the service's tokenizer")


class NgramCount(BaseModel):
    tokens: list[int]
    count: int = Field(description="occurrences inside documents (rows of a preshuffled store); overlaps count")


class Occurrence(BaseModel):
    doc_id: int
    offset: int = Field(description="token offset of the occurrence in the document")


class NgramLocate(BaseModel):
    tokens: list[int]
    count: int
    offset: int
    limit: int
    occurrences: list[Occurrence]
    next_offset: int | None = Field(description="offset of the next page; null on the last page")


class NgramSteps(BaseModel):
    tokens: list[int]
    count: int = Field(description="occurrences inside documents")
    count_in_rows: int = Field(description="(occurrence, trained row) pairs where the row holds the whole n-gram")
    count_split_by_row_boundary: int = Field(description="occurrences cut by a trained row's boundary")
    count_in_untrained_rows: int
    documents_seen: int
    first_step: int | None
    last_step: int | None
    train_steps: int
    batch_size: int
    bucket_steps: int
    histogram: list[int] = Field(description="count_in_rows per bucket of bucket_steps steps")
    by_source: dict[str, int] = Field(description="count_in_rows per pile_set_name (needs a documents table)")
    by_source_available: bool


def ngram_index(pi: Any) -> NgramIndex:
    """The store's n-gram index, opened on first use (AppState.ngram)."""
    if pi.ngram is None:
        with _open_lock:
            if pi.ngram is None:
                pi.ngram = NgramIndex(pi.store)
    return pi.ngram


def training_order(pi: Any) -> Any:
    """The service's training order (AppState.order, opened from the order settings on first use)."""
    return pi.order


def query_ids(pi: Any, tokens: list[int] | str | None, text: str | None):
    s = pi.settings
    if text is not None and pi.tokenizer is None:
        raise ConfigError("the service has no tokenizer: start it with --tokenizer, or query with tokens")
    return query_tokens(tokens=tokens, text=text, tokenizer=pi.tokenizer, max_tokens=s.max_tokens_per_query,
                        max_text_chars=s.max_text_chars)


def _count(pi: Any, tokens, text) -> NgramCount:
    ids = query_ids(pi, tokens, text)
    return NgramCount(tokens=ids.tolist(), count=ngram_index(pi).count(ids))


def _locate(pi: Any, tokens, text, offset: int, limit: int | None) -> NgramLocate:
    cap = pi.settings.max_locate_page
    limit = min(100, cap) if limit is None else limit
    if limit > cap:
        raise LimitError(f"limit={limit:,} exceeds max_locate_page={cap:,}; page with offset", "max_locate_page")
    if offset < 0 or limit < 0:
        raise QueryError(f"offset={offset:,} and limit={limit:,} must be >= 0")
    ids = query_ids(pi, tokens, text)
    idx = ngram_index(pi)
    count = idx.count(ids)
    doc, off = idx.locate(ids, offset=offset, limit=limit)
    nxt = offset + int(doc.size)
    return NgramLocate(tokens=ids.tolist(), count=count, offset=offset, limit=limit,
                       occurrences=[Occurrence(doc_id=int(d), offset=int(o)) for d, o in zip(doc, off)],
                       next_offset=nxt if nxt < count else None)


def _steps(pi: Any, tokens, text, bucket_steps: int | None) -> NgramSteps:
    ids = query_ids(pi, tokens, text)
    out = ngram_steps(ngram_index(pi), training_order(pi), ids, documents=pi.documents, bucket_steps=bucket_steps,
                      max_occurrences=pi.settings.max_occurrences)
    return NgramSteps(**out)


TokensQ = Annotated[str | None, Query(description="comma-separated token ids (ASCII digits), e.g. 12092,13,309")]
TextQ = Annotated[Text | None, Query(description="text, encoded with the service's tokenizer")]
OffsetQ = Annotated[int, Query(ge=0, le=MAX_INT, description="first occurrence to return"), ASCII_INT]
LimitQ = Annotated[int | None, Query(ge=0, le=MAX_INT, description="occurrences to return (default: 100, at most max_locate_page)"), ASCII_INT]
BucketQ = Annotated[int | None, Query(ge=1, le=MAX_INT, description="steps per histogram bucket"), ASCII_INT]


@router.get("/count", response_model=NgramCount, summary="Exact count of an n-gram")
def get_count(request: Request, tokens: TokensQ = None, text: TextQ = None) -> NgramCount:
    return _count(request.app.state.pi, tokens, text)


@router.post("/count", response_model=NgramCount, summary="Exact count of an n-gram (JSON body)")
def post_count(request: Request, q: NgramQuery) -> NgramCount:
    return _count(request.app.state.pi, q.tokens, q.text)


@router.get("/locate", response_model=NgramLocate, summary="Occurrences of an n-gram as (doc_id, offset), paginated")
def get_locate(request: Request, tokens: TokensQ = None, text: TextQ = None, offset: OffsetQ = 0,
               limit: LimitQ = None) -> NgramLocate:
    return _locate(request.app.state.pi, tokens, text, offset, limit)


@router.post("/locate", response_model=NgramLocate, summary="Occurrences of an n-gram (JSON body)")
def post_locate(request: Request, q: NgramQuery, offset: OffsetQ = 0, limit: LimitQ = None) -> NgramLocate:
    return _locate(request.app.state.pi, q.tokens, q.text, offset, limit)


@router.get("/steps", response_model=NgramSteps, summary="Training steps whose rows hold an n-gram")
def get_steps(request: Request, tokens: TokensQ = None, text: TextQ = None, bucket_steps: BucketQ = None) -> NgramSteps:
    return _steps(request.app.state.pi, tokens, text, bucket_steps)


@router.post("/steps", response_model=NgramSteps, summary="Training steps whose rows hold an n-gram (JSON body)")
def post_steps(request: Request, q: NgramQuery, bucket_steps: BucketQ = None) -> NgramSteps:
    return _steps(request.app.state.pi, q.tokens, q.text, bucket_steps)
