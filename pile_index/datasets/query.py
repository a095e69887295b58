"""Read-only queries over a built dataset folder (``dataset.parquet``, ``summary/``, ``checkpoints.parquet``)
through DuckDB: one sample across checkpoints, one checkpoint across rows, the summaries."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import duckdb

from .. import files
from ..errors import NotFoundError
from ..sql.quote import sql_string
from .results import CheckpointMetrics, DatasetCheckpoint, DatasetSample, DatasetSummary


class DatasetQuery:
    """Queries over ``DIR`` (the ``--out`` of ``pile-index dataset build``). Thread-safe."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        for name in (files.DATASET_TABLE, files.DATASET_CHECKPOINTS, f"{files.DATASET_SUMMARY}/treatment_effects.parquet"):
            if not (self.folder / name).is_file():
                raise NotFoundError(f"{self.folder / name}: missing; build the dataset with `pile-index dataset build`")
        self._con = duckdb.connect(":memory:")
        self._lock = threading.Lock()
        self._con.execute(f"CREATE VIEW ds AS SELECT * FROM read_parquet({sql_string(self.folder / 'dataset.parquet')})")
        self._con.execute(f"CREATE VIEW ck AS SELECT * FROM read_parquet({sql_string(self.folder / 'checkpoints.parquet')})")
        summary = self.folder / files.DATASET_SUMMARY
        for name in ("cohort_means", "treatment_effects"):
            self._con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({sql_string(summary / (name + '.parquet'))})")

    def _rows(self, sql: str, params: dict | None = None) -> list[dict[str, Any]]:
        with self._lock:
            cur = self._con.cursor()
        return cur.sql(sql, params=params or {}).to_arrow_table().to_pylist()

    def sample(self, sample_index: int) -> DatasetSample:
        rows = self._rows(
            "SELECT * EXCLUDE (tokens) FROM ds WHERE sample_index = $k ORDER BY checkpoint_step", {"k": int(sample_index)}
        )
        if not rows:
            raise NotFoundError(f"sample index {sample_index:,} is not in the dataset {self.folder}")
        first = rows[0]
        keep = ("train_index", "sample_index", "index", "step", "slot", "group", "cohort", "treatment_step",
                "before_step", "doc_ids", "doc_tokens", "pile_set_names")
        metrics = ("revision", "checkpoint_step", "loss", "entropy", "accuracy", "memorized", "memorization_score")
        return DatasetSample(**{k: first[k] for k in keep},
                             checkpoints=[CheckpointMetrics(**{k: r[k] for k in metrics}) for r in rows])

    def checkpoint(self, revision: str) -> DatasetCheckpoint:
        rec = self._rows("SELECT * FROM ck WHERE revision = $r", {"r": revision})
        if not rec:
            known = [r["revision"] for r in self._rows("SELECT revision FROM ck ORDER BY checkpoint_step")]
            raise NotFoundError(f"revision {revision!r} is not in the dataset; it has {known}")
        means = self._rows('SELECT * FROM cohort_means WHERE revision = $r ORDER BY "group", cohort', {"r": revision})
        return DatasetCheckpoint(checkpoint=rec[0], means=means)

    def summary(self) -> DatasetSummary:
        return DatasetSummary(
            treatment_effects=self._rows("SELECT * FROM treatment_effects"),
            checkpoints=self._rows("SELECT * FROM ck ORDER BY checkpoint_step"),
            rows=self._rows('SELECT "group", count(DISTINCT train_index) AS n FROM ds GROUP BY ALL ORDER BY 1'),
        )
