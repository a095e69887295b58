"""``/v1/ngrams/{count,locate,steps,trace}``: exact n-gram counts (one or a batch), positions, training steps,
and a passage traced to its maximal spans in the store."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, StrictInt

from pile_index import Corpus
from pile_index.errors import LimitError, QueryError
from pile_index.ngram import locate_page, ngram_steps
from pile_index.ngram.trace import DEFAULT_MIN_TOKENS, DEFAULT_OCCURRENCES, trace

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


class NgramCountQuery(NgramQuery):
    queries: list[list[StrictInt] | Text] | None = Field(
        None, description="a batch instead of one n-gram: each item token ids or text (at most "
        "max_queries_per_request); the answer's counts keep their order")


class NgramCounts(BaseModel):
    counts: list[NgramCount] = Field(description="one per query, in the order given")


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


def _count_many(corpus: Corpus, settings: Settings, queries: list) -> NgramCounts:
    cap = settings.max_queries_per_request
    if len(queries) > cap:
        raise LimitError(f"queries holds {len(queries):,} n-grams; the limit is max_queries_per_request={cap:,}: "
                         f"split the batch", "max_queries_per_request")
    ids = []
    for i, q in enumerate(queries):
        try:
            ids.append(query_ids(corpus, settings, None if isinstance(q, str) else q, q if isinstance(q, str) else None))
        except (QueryError, LimitError) as e:
            raise type(e)(f"queries[{i:,}]: {e}", *([e.setting] if isinstance(e, LimitError) else [])) from e
    counts = corpus.ngram.count_many(ids)
    return NgramCounts(counts=[NgramCount(tokens=q.tolist(), count=c) for q, c in zip(ids, counts.tolist())])


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


@router.post("/count", response_model=NgramCount | NgramCounts,
             summary="Exact count of an n-gram, or of a batch ({\"queries\": [...]}) (JSON body)")
def post_count(corpus: CorpusDep, settings: SettingsDep, q: NgramCountQuery) -> NgramCount | NgramCounts:
    if q.queries is not None:
        if q.tokens is not None or q.text is not None:
            raise QueryError("pass either queries (a batch) or one n-gram (tokens or text), not both")
        return _count_many(corpus, settings, q.queries)
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


class TraceOccurrence(BaseModel):
    doc_id: int
    offset: int = Field(description="token offset of the occurrence in the document")
    pile_set_name: str | None = Field(description="the document's source (null without a documents table)")


class TraceSpan(BaseModel):
    start: int = Field(description="first token of the span in the passage")
    end: int = Field(description="one past its last token")
    length: int
    tokens: list[int]
    text: str | None = Field(description="the span decoded (null without a tokenizer)")
    count: int = Field(description="occurrences inside documents")
    occurrences: list[TraceOccurrence] = Field(description="the first `occurrences` of them, in index order")
    first_step: int | None = Field(description="first training step whose row holds the whole span")
    last_step: int | None
    count_in_rows: int | None = Field(description="(occurrence, trained row) pairs holding the whole span")
    steps_computed: bool = Field(description="false without a training order, or when count > max_occurrences")


class NgramTrace(BaseModel):
    tokens: list[int]
    n_tokens: int
    min_tokens: int
    max_count: int | None
    occurrences_per_span: int
    maximal_spans: int = Field(description="maximal occurring spans before the filters")
    dropped_short: int = Field(description="maximal spans shorter than min_tokens")
    dropped_frequent: int = Field(description="maximal spans (long enough) with count > max_count")
    spans: list[TraceSpan] = Field(description="the kept maximal spans, by position (they may overlap)")


class TraceQuery(NgramQuery):
    min_tokens: StrictInt = Field(DEFAULT_MIN_TOKENS, ge=1, le=MAX_INT, description="shortest span kept")
    max_count: StrictInt | None = Field(None, ge=1, le=MAX_INT, description="most occurrences of a kept span")
    occurrences: StrictInt = Field(DEFAULT_OCCURRENCES, ge=0, le=MAX_INT,
                                   description="occurrences listed per span (at most max_locate_page)")


def _trace(corpus: Corpus, settings: Settings, tokens, text, min_tokens: int, max_count: int | None,
           occurrences: int) -> NgramTrace:
    cap = settings.max_locate_page
    if occurrences > cap:
        raise LimitError(f"occurrences={occurrences:,} exceeds max_locate_page={cap:,}", "max_locate_page")
    ids = query_ids(corpus, settings, tokens, text)
    out = trace(corpus.ngram, ids, order=corpus.order if corpus.has_order else None, documents=corpus.documents,
                tokenizer=corpus.tokenizer, min_tokens=min_tokens, max_count=max_count, occurrences=occurrences,
                max_occurrences=settings.max_occurrences)
    return NgramTrace(**out)


MinTokensQ = Annotated[int, Query(ge=1, le=MAX_INT, description="shortest span kept"), ASCII_INT]
MaxCountQ = Annotated[int | None, Query(ge=1, le=MAX_INT, description="most occurrences of a kept span"), ASCII_INT]
OccurrencesQ = Annotated[int, Query(ge=0, le=MAX_INT, description="occurrences listed per span"), ASCII_INT]


@router.get("/trace", response_model=NgramTrace, summary="A passage's maximal spans that occur in the store")
def get_trace(corpus: CorpusDep, settings: SettingsDep, tokens: TokensQ = None, text: TextQ = None,
              min_tokens: MinTokensQ = DEFAULT_MIN_TOKENS, max_count: MaxCountQ = None,
              occurrences: OccurrencesQ = DEFAULT_OCCURRENCES) -> NgramTrace:
    return _trace(corpus, settings, tokens, text, min_tokens, max_count, occurrences)


@router.post("/trace", response_model=NgramTrace, summary="A passage's maximal spans that occur in the store (JSON body)")
def post_trace(corpus: CorpusDep, settings: SettingsDep, q: TraceQuery) -> NgramTrace:
    return _trace(corpus, settings, q.tokens, q.text, q.min_tokens, q.max_count, q.occurrences)
