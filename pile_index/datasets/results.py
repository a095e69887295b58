"""The typed answers of a built dataset's queries (:class:`.query.DatasetQuery`), shared by ``pile-index dataset
show`` (``--json`` prints their fields in order) and ``/v1/datasets`` (its response models are these classes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CheckpointMetrics:
    """One row's scores at one checkpoint."""

    revision: str
    checkpoint_step: int
    loss: float | None
    entropy: float | None
    accuracy: float | None
    memorized: bool | None
    memorization_score: float | None


@dataclass(frozen=True, slots=True)
class DatasetSample:
    """One training row of the dataset, with its scores at every checkpoint (by checkpoint step)."""

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


@dataclass(frozen=True, slots=True)
class DatasetCheckpoint:
    """One checkpoint's record (``checkpoints.parquet``) and the cohort means at it."""

    checkpoint: dict[str, Any]
    means: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class DatasetSummary:
    """The treatment effects, every checkpoint's record, and the rows per group."""

    treatment_effects: list[dict[str, Any]]
    checkpoints: list[dict[str, Any]]
    rows: list[dict[str, Any]]
