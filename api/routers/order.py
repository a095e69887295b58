"""``/v1/order``: the training order the service reads rows in: its options and the facts of ``order stats``.

The statistics (documents seen 0 / 1 / 2+ times, the first repeated document) take one pass over the trained
rows, so the corpus computes them once (``Corpus.order_info``).
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from pile_index.order.results import OrderInfo

from ..deps import CorpusDep
from ..schemas import json_response

router = APIRouter(prefix="/v1", tags=["training order"])


@router.get("/order", response_model=OrderInfo, summary="The training order: options, epochs, first repeat")
def get_order(corpus: CorpusDep) -> Response:
    return json_response(corpus.order_info())
