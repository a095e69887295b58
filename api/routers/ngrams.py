"""``/v1/ngrams/{count,locate,steps}``: exact n-gram counts, positions and training steps."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, StrictInt

from pile_index import Corpus
from pile_index.ngram import locate_page, ngram_steps

from ..deps import CorpusDep, SettingsDep
from ..params import ASCII_INT, MAX_INT, Text, query_ids
from ..settings import Settings


router = APIRouter(prefix="/v1/ngrams", tags=["ngrams"])


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


def _count(corpus: Corpus, settings: Settings, tokens, text) -> NgramCount:
    ids = query_ids(corpus, settings, tokens, text)
    return NgramCount(tokens=ids.tolist(), count=corpus.ngram.count(ids))


def _locate(corpus: Corpus, settings: Settings, tokens, text, offset: int, limit: int | None) -> NgramLocate:
    ids = query_ids(corpus, settings, tokens, text)
    return NgramLocate(**locate_page(corpus.ngram, ids, offset, limit, settings.max_locate_page))


def _steps(corpus: Corpus, settings: Settings, tokens, text, bucket_steps: int | None) -> NgramSteps:
    ids = query_ids(corpus, settings, tokens, text)
    out = ngram_steps(corpus.ngram, corpus.order, ids, documents=corpus.documents, bucket_steps=bucket_steps,
                      max_occurrences=settings.max_occurrences)
    return NgramSteps(**out)


TokensQ = Annotated[str | None, Query(description="comma-separated token ids (ASCII digits), e.g. 12092,13,309")]
TextQ = Annotated[Text | None, Query(description="text, encoded with the service's tokenizer")]
OffsetQ = Annotated[int, Query(ge=0, le=MAX_INT, description="first occurrence to return"), ASCII_INT]
LimitQ = Annotated[int | None, Query(ge=0, le=MAX_INT, description="occurrences to return (default: 100, at most max_locate_page)"), ASCII_INT]
BucketQ = Annotated[int | None, Query(ge=1, le=MAX_INT, description="steps per histogram bucket"), ASCII_INT]


@router.get("/count", response_model=NgramCount, summary="Exact count of an n-gram")
def get_count(corpus: CorpusDep, settings: SettingsDep, tokens: TokensQ = None, text: TextQ = None) -> NgramCount:
    return _count(corpus, settings, tokens, text)


@router.post("/count", response_model=NgramCount, summary="Exact count of an n-gram (JSON body)")
def post_count(corpus: CorpusDep, settings: SettingsDep, q: NgramQuery) -> NgramCount:
    return _count(corpus, settings, q.tokens, q.text)


@router.get("/locate", response_model=NgramLocate, summary="Occurrences of an n-gram as (doc_id, offset), paginated")
def get_locate(corpus: CorpusDep, settings: SettingsDep,
               tokens: TokensQ = None, text: TextQ = None, offset: OffsetQ = 0,
               limit: LimitQ = None) -> NgramLocate:
    return _locate(corpus, settings, tokens, text, offset, limit)


@router.post("/locate", response_model=NgramLocate, summary="Occurrences of an n-gram (JSON body)")
def post_locate(corpus: CorpusDep, settings: SettingsDep,
                q: NgramQuery, offset: OffsetQ = 0, limit: LimitQ = None) -> NgramLocate:
    return _locate(corpus, settings, q.tokens, q.text, offset, limit)


@router.get("/steps", response_model=NgramSteps, summary="Training steps whose rows hold an n-gram")
def get_steps(corpus: CorpusDep, settings: SettingsDep,
              tokens: TokensQ = None, text: TextQ = None, bucket_steps: BucketQ = None) -> NgramSteps:
    return _steps(corpus, settings, tokens, text, bucket_steps)


@router.post("/steps", response_model=NgramSteps, summary="Training steps whose rows hold an n-gram (JSON body)")
def post_steps(corpus: CorpusDep, settings: SettingsDep, q: NgramQuery, bucket_steps: BucketQ = None) -> NgramSteps:
    return _steps(corpus, settings, q.tokens, q.text, bucket_steps)
