"""``/v1/ngrams/{count,locate,steps,trace}``: exact n-gram counts (one or a batch), positions, training steps,
and a passage traced to its maximal spans in the store."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field, StrictInt

from pile_index.errors import QueryError
from pile_index.ngram.results import NgramCount, NgramCounts, NgramLocate, NgramSteps, NgramTrace
from pile_index.ngram.trace import DEFAULT_MIN_TOKENS, DEFAULT_OCCURRENCES

from ..deps import CorpusDep
from ..params import ASCII_INT, MAX_INT, Text
from ..schemas import json_response


router = APIRouter(prefix="/v1/ngrams", tags=["ngrams"])


class NgramQuery(BaseModel):
    tokens: list[StrictInt] | None = Field(None, description="the n-gram as token ids (JSON integers)")
    text: Text | None = Field(None, description="the n-gram as text, encoded with the service's tokenizer")


class NgramCountQuery(NgramQuery):
    queries: list[list[StrictInt] | Text] | None = Field(
        None, description="a batch instead of one n-gram: each item token ids or text (at most "
        "max_queries_per_request); the answer's counts keep their order")


TokensQ = Annotated[str | None, Query(description="comma-separated token ids (ASCII digits), e.g. 12092,13,309")]
TextQ = Annotated[Text | None, Query(description="text, encoded with the service's tokenizer")]
OffsetQ = Annotated[int, Query(ge=0, le=MAX_INT, description="first occurrence to return"), ASCII_INT]
LimitQ = Annotated[int | None, Query(ge=0, le=MAX_INT, description="occurrences to return (default: 100, at most max_locate_page)"), ASCII_INT]
BucketQ = Annotated[int | None, Query(ge=1, le=MAX_INT, description="steps per histogram bucket"), ASCII_INT]


@router.get("/count", response_model=NgramCount, summary="Exact count of an n-gram")
def get_count(corpus: CorpusDep, tokens: TokensQ = None, text: TextQ = None) -> Response:
    return json_response(corpus.count(tokens, text))


@router.post("/count", response_model=NgramCount | NgramCounts,
             summary="Exact count of an n-gram, or of a batch ({\"queries\": [...]}) (JSON body)")
def post_count(corpus: CorpusDep, q: NgramCountQuery) -> Response:
    if q.queries is not None:
        if q.tokens is not None or q.text is not None:
            raise QueryError("pass either queries (a batch) or one n-gram (tokens or text), not both")
        return json_response(corpus.count_many(q.queries))
    return json_response(corpus.count(q.tokens, q.text))


@router.get("/locate", response_model=NgramLocate, summary="Occurrences of an n-gram as (doc_id, offset), paginated")
def get_locate(corpus: CorpusDep, tokens: TokensQ = None, text: TextQ = None, offset: OffsetQ = 0,
               limit: LimitQ = None) -> Response:
    return json_response(corpus.locate(tokens, text, offset, limit))


@router.post("/locate", response_model=NgramLocate, summary="Occurrences of an n-gram (JSON body)")
def post_locate(corpus: CorpusDep, q: NgramQuery, offset: OffsetQ = 0, limit: LimitQ = None) -> Response:
    return json_response(corpus.locate(q.tokens, q.text, offset, limit))


@router.get("/steps", response_model=NgramSteps, summary="Training steps whose rows hold an n-gram")
def get_steps(corpus: CorpusDep, tokens: TokensQ = None, text: TextQ = None, bucket_steps: BucketQ = None) -> Response:
    return json_response(corpus.steps(tokens, text, bucket_steps))


@router.post("/steps", response_model=NgramSteps, summary="Training steps whose rows hold an n-gram (JSON body)")
def post_steps(corpus: CorpusDep, q: NgramQuery, bucket_steps: BucketQ = None) -> Response:
    return json_response(corpus.steps(q.tokens, q.text, bucket_steps))


class TraceQuery(NgramQuery):
    min_tokens: StrictInt = Field(DEFAULT_MIN_TOKENS, ge=1, le=MAX_INT, description="shortest span kept")
    max_count: StrictInt | None = Field(None, ge=1, le=MAX_INT, description="most occurrences of a kept span")
    occurrences: StrictInt = Field(DEFAULT_OCCURRENCES, ge=0, le=MAX_INT,
                                   description="occurrences listed per span (at most max_locate_page)")


MinTokensQ = Annotated[int, Query(ge=1, le=MAX_INT, description="shortest span kept"), ASCII_INT]
MaxCountQ = Annotated[int | None, Query(ge=1, le=MAX_INT, description="most occurrences of a kept span"), ASCII_INT]
OccurrencesQ = Annotated[int, Query(ge=0, le=MAX_INT, description="occurrences listed per span"), ASCII_INT]


@router.get("/trace", response_model=NgramTrace, summary="A passage's maximal spans that occur in the store")
def get_trace(corpus: CorpusDep, tokens: TokensQ = None, text: TextQ = None,
              min_tokens: MinTokensQ = DEFAULT_MIN_TOKENS, max_count: MaxCountQ = None,
              occurrences: OccurrencesQ = DEFAULT_OCCURRENCES) -> Response:
    return json_response(corpus.trace(tokens, text, min_tokens=min_tokens, max_count=max_count,
                                      occurrences=occurrences))


@router.post("/trace", response_model=NgramTrace, summary="A passage's maximal spans that occur in the store (JSON body)")
def post_trace(corpus: CorpusDep, q: TraceQuery) -> Response:
    return json_response(corpus.trace(q.tokens, q.text, min_tokens=q.min_tokens, max_count=q.max_count,
                                      occurrences=q.occurrences))
