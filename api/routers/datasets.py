"""``/v1/datasets``: built memorization / influence datasets, by sample, by checkpoint, and their summaries.

Datasets are named by their folder's base name and opened from ``Settings.datasets`` only: no request
parameter reaches the filesystem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from pile_index.datasets import DatasetQuery
from pile_index.errors import NotFoundError

from ..params import Id


router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


class CheckpointMetrics(BaseModel):
    revision: str
    checkpoint_step: int
    loss: float | None
    entropy: float | None
    accuracy: float | None
    memorized: bool | None
    memorization_score: float | None


class DatasetSample(BaseModel):
    train_index: int
    sample_index: int
    index: int
    step: int
    slot: int
    group: str
    cohort: int
    treatment_step: int
    before_step: int
    doc_ids: list[int] | None
    doc_tokens: list[int] | None
    pile_set_names: list[str | None] | None
    checkpoints: list[CheckpointMetrics]


class DatasetCheckpoint(BaseModel):
    checkpoint: dict[str, Any]
    means: list[dict[str, Any]]


class DatasetSummary(BaseModel):
    treatment_effects: list[dict[str, Any]]
    checkpoints: list[dict[str, Any]]
    rows: list[dict[str, Any]]


def _datasets(request: Request) -> dict[str, DatasetQuery]:
    pi = request.app.state.pi
    if "datasets" not in pi.cache:
        pi.cache["datasets"] = {Path(d).name: DatasetQuery(Path(d)) for d in pi.settings.datasets}
    return pi.cache["datasets"]


def _get(request: Request, name: str) -> DatasetQuery:
    ds = _datasets(request)
    if name not in ds:
        raise NotFoundError(f"dataset {name!r} is not served; served: {sorted(ds)} (pass --dataset DIR to serve)")
    return ds[name]


@router.get("", response_model=list[str], summary="Names of the served datasets")
def list_datasets(request: Request) -> list[str]:
    return sorted(_datasets(request))


@router.get("/{name}/samples/{sample_index}", response_model=DatasetSample, summary="One row at every checkpoint")
def get_sample(request: Request, name: str, sample_index: Id) -> DatasetSample:
    return DatasetSample(**_get(request, name).sample(sample_index))


@router.get("/{name}/checkpoints/{revision}", response_model=DatasetCheckpoint, summary="Means at one checkpoint")
def get_checkpoint(request: Request, name: str, revision: str) -> DatasetCheckpoint:
    return DatasetCheckpoint(**_get(request, name).checkpoint(revision))


@router.get("/{name}/summary", response_model=DatasetSummary, summary="Treatment effects and checkpoint records")
def get_summary(request: Request, name: str) -> DatasetSummary:
    return DatasetSummary(**_get(request, name).summary())
