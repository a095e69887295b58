"""``/v1/datasets``: built memorization / influence datasets, by sample, by checkpoint, and their summaries.

Datasets are named by their folder's base name and opened from ``Settings.datasets`` only: no request
parameter reaches the filesystem.
"""

from __future__ import annotations

from fastapi import APIRouter

from pile_index.datasets import DatasetQuery
from pile_index.datasets.results import DatasetCheckpoint, DatasetSample, DatasetSummary
from pile_index.errors import NotFoundError

from ..deps import StateDep
from ..params import Id
from ..schemas import json_response
from ..state import AppState


router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


def _datasets(state: AppState) -> dict[str, DatasetQuery]:
    return state.cache["datasets"]  # opened by open_state, names checked there


def _get(state: AppState, name: str) -> DatasetQuery:
    ds = _datasets(state)
    if name not in ds:
        raise NotFoundError(f"dataset {name!r} is not served; served: {sorted(ds)} (pass --dataset DIR to serve)")
    return ds[name]


@router.get("", response_model=list[str], summary="Names of the served datasets")
def list_datasets(state: StateDep) -> list[str]:
    return sorted(_datasets(state))


@router.get("/{name}/samples/{sample_index}", response_model=DatasetSample, summary="One row at every checkpoint")
def get_sample(state: StateDep, name: str, sample_index: Id):
    return json_response(_get(state, name).sample(sample_index))


@router.get("/{name}/checkpoints/{revision}", response_model=DatasetCheckpoint, summary="Means at one checkpoint")
def get_checkpoint(state: StateDep, name: str, revision: str):
    return json_response(_get(state, name).checkpoint(revision))


@router.get("/{name}/summary", response_model=DatasetSummary, summary="Treatment effects and checkpoint records")
def get_summary(state: StateDep, name: str):
    return json_response(_get(state, name).summary())
