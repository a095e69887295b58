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

from pile_index.order.results import Batch, DocSteps, Sample

from ..deps import CorpusDep
from ..params import ASCII_INT, MAX_INT, Id
from ..schemas import json_response

router = APIRouter(prefix="/v1", tags=["training order"])


@router.get("/samples/{step}/{slot}", response_model=Sample, summary="One training row: tokens, source spans, text")
def get_sample(corpus: CorpusDep, step: Id, slot: Id,
               text: bool = Query(True, description="decode the row when the service has a tokenizer")) -> Response:
    return json_response(corpus.sample(step, slot, text=text))


@router.get("/batches/{step}", response_model=Batch,
            summary="Rows of steps step..to as JSON, or as one .npy with format=npy",
            responses={200: {"content": {"application/x-npy": {}},
                             "description": "JSON, or with format=npy the rows as one .npy; its headers "
                                            "X-Train-Steps and X-Trained-Rows say which rows are trained"}})
def get_batch(corpus: CorpusDep, step: Id,
              to: Annotated[int | None, Query(ge=0, le=MAX_INT, description="last step, inclusive (default: step)"),
                            ASCII_INT] = None,
              format: str = Query("json", pattern="^(json|npy)$", description="json, or npy for a binary array")
              ) -> Response:
    rows, info = corpus.batch(step, to)
    if format == "npy":
        buf = io.BytesIO()
        np.save(buf, rows, allow_pickle=False)
        return Response(content=buf.getvalue(), media_type="application/x-npy",
                        headers={"X-Train-Steps": str(info.train_steps), "X-Trained-Rows": str(info.trained_rows)})
    return json_response(Batch.of(info, rows))


@router.get("/documents/{doc_id}/steps", response_model=DocSteps,
            summary="Every trained (step, slot) whose row holds tokens of a document")
def get_document_steps(corpus: CorpusDep, doc_id: Id) -> Response:
    return json_response(corpus.doc_steps(doc_id))
