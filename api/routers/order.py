"""``/v1/order``: the training order the service reads rows in: its options and the facts of ``order stats``.

The statistics (documents seen 0 / 1 / 2+ times, the first repeated document) take one pass over the trained
rows, so they are computed once per service and cached (``AppState.cache``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from pile_index import Corpus

from ..deps import CorpusDep, StateDep
from ..state import AppState

router = APIRouter(prefix="/v1", tags=["training order"])


class FirstRepeat(BaseModel):
    step: int
    slot: int
    sample_index: int
    doc_id: int = Field(description="the first document whose second occurrence training reads")


class OrderInfo(BaseModel):
    preshuffled: bool = Field(description="a preshuffled store: row k is item k, no document identity")
    seed: int
    seq_length: int = Field(description="tokens per row, minus one (rows hold seq_length + 1 tokens)")
    batch_size: int = Field(description="rows per training step")
    num_samples: int = Field(description="usable rows of the order")
    train_steps: int = Field(description="steps counted as trained")
    trained_samples: int = Field(description="train_steps x batch_size")
    epochs: int | None = Field(description="passes over the documents in doc_idx (null when preshuffled)")
    tokens_per_epoch: int | None
    documents_seen: dict[str, int] | None = Field(description="documents seen 0, 1 and 2+ times by trained rows")
    first_repeat: FirstRepeat | None = Field(description="the first trained row holding a document seen before")


def order_info(corpus: Corpus, state: AppState) -> dict[str, Any]:
    """The ``/v1/order`` record of the service's order (cached: the statistics read every trained row)."""
    if "order_info" not in state.cache:
        order = corpus.order
        rec: dict[str, Any] = {
            "preshuffled": bool(order.preshuffled), "seed": int(order.cfg.seed), "seq_length": int(order.seq_length),
            "batch_size": int(order.batch_size), "num_samples": int(order.num_samples),
            "train_steps": int(order.train_steps), "trained_samples": int(order.trained_samples),
            "epochs": None, "tokens_per_epoch": None, "documents_seen": None, "first_repeat": None,
        }
        if not order.preshuffled:
            st = order.stats()
            rec.update(epochs=int(st["epochs"]), tokens_per_epoch=int(st["tokens_per_epoch"]),
                       documents_seen=st["documents_seen"], first_repeat=st["first_repeat"])
        state.cache["order_info"] = rec
    return state.cache["order_info"]


@router.get("/order", response_model=OrderInfo, summary="The training order: options, epochs, first repeat")
def get_order(corpus: CorpusDep, state: StateDep) -> OrderInfo:
    return OrderInfo(**order_info(corpus, state))
