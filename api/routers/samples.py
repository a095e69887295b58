"""``/v1/samples/{step}/{slot}``, ``/v1/batches/{step}`` and ``/v1/documents/{doc_id}/steps``: the training order.

The order is the served corpus's (``corpus.order``, opened on first use from the order settings). Routes are plain
``def``: FastAPI runs them in its thread pool, off the event loop, because the row and inverse look-ups run
numba kernels over memmaps.
"""

from __future__ import annotations

import io
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from pile_index.errors import ConfigError, LimitError
from pile_index.order import TrainingOrder, describe_batch, describe_sample

from ..deps import CorpusDep, SettingsDep
from ..params import ASCII_INT, MAX_INT, Id
from ..schemas import DocumentMeta, model_json


router = APIRouter(prefix="/v1", tags=["training order"])




class Span(BaseModel):
    doc_id: int
    doc_start: int
    doc_end: int
    sample_start: int
    metadata: DocumentMeta | None = None


class Sample(BaseModel):
    step: int
    slot: int
    sample_index: int
    trained: bool = Field(description="whether training read this row: sample_index < train_steps x batch size")
    tokens: list[int]
    spans: list[Span] | None
    text: str | None = None


class Batch(BaseModel):
    step: int
    to_step: int
    first_sample_index: int
    rows: int
    seq_length: int
    train_steps: int
    trained: list[bool] = Field(description="one per step of step..to_step: whether training read that step's rows")
    trained_rows: int = Field(description="the first trained_rows rows are trained rows, the rest never were")
    tokens: list[list[int]]


class Occurrence(BaseModel):
    step: int
    slot: int
    sample_index: int
    doc_start: int
    doc_end: int


class DocSteps(BaseModel):
    doc_id: int
    occurrences: list[Occurrence]
    first_step: int | None
    last_step: int | None


@router.get("/samples/{step}/{slot}", response_model=Sample, summary="One training row: tokens, source spans, text")
def get_sample(corpus: CorpusDep, step: Id, slot: Id,
               text: bool = Query(True, description="decode the row when the service has a tokenizer")):
    order = corpus.order
    rec = describe_sample(order, step, slot, tokenizer=corpus.tokenizer if text else None,
                          documents=None if order.preshuffled else corpus.documents)
    return model_json(Sample, rec)


@router.get("/batches/{step}", response_model=Batch,
            summary="Rows of steps step..to as JSON, or as one .npy with format=npy",
            responses={200: {"content": {"application/x-npy": {}},
                             "description": "JSON, or with format=npy the rows as one .npy; its headers "
                                            "X-Train-Steps and X-Trained-Rows say which rows are trained"}})
def get_batch(corpus: CorpusDep, settings: SettingsDep, step: Id,
              to: Annotated[int | None, Query(ge=0, le=MAX_INT, description="last step, inclusive (default: step)"),
                            ASCII_INT] = None,
              format: str = Query("json", pattern="^(json|npy)$", description="json, or npy for a binary array")):
    order = corpus.order
    to_step = step if to is None else to
    cap = settings.max_rows_per_request
    n_rows = (to_step - step + 1) * order.batch_size
    if n_rows > cap:
        raise LimitError(f"steps {step:,}..{to_step:,} are {n_rows:,} rows; max_rows_per_request={cap:,}. "
                         f"Ask for fewer steps per request", "max_rows_per_request")
    rows, record = describe_batch(order, step, to_step)
    if format == "npy":
        buf = io.BytesIO()
        np.save(buf, rows, allow_pickle=False)
        return Response(content=buf.getvalue(), media_type="application/x-npy",
                        headers={"X-Train-Steps": str(record["train_steps"]),
                                 "X-Trained-Rows": str(record["trained_rows"])})
    return model_json(Batch, {**record, "tokens": rows.tolist()})


@router.get("/documents/{doc_id}/steps", response_model=DocSteps,
            summary="Every trained (step, slot) whose row holds tokens of a document")
def get_document_steps(corpus: CorpusDep, settings: SettingsDep, doc_id: Id) -> DocSteps:
    order = corpus.order
    if not isinstance(order, TrainingOrder):
        raise ConfigError("document -> steps needs a raw store with index maps; this service serves a preshuffled "
                          "store, which has no document identity")
    return DocSteps(**order.doc_steps(doc_id, max_occurrences=settings.max_occurrences))
