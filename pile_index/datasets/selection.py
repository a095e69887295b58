"""Choosing training rows for a dataset: uniform, per cohort (Lesci et al. 2024), stratified by source,
rows holding an n-gram, or an explicit list; plus a never-trained control group.

All choices are seeded (``numpy.random.default_rng(seed)``) so a dataset is reproducible. Rows are named by
their global sample index ``k = step * batch_size + slot`` (the ``index`` of EleutherAI's
pythia-memorized-evals). Trained rows are ``k < train_steps * batch_size``; rows from there up to
``num_samples`` were built by GPT-NeoX but never trained on (Pythia: 732,160 of them), which makes them the
natural control group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from ..errors import ConfigError, NotFoundError


class Strategy(StrEnum):
    UNIFORM = "uniform"
    COHORT = "cohort"
    STRATIFIED = "stratified"
    NGRAM = "ngram"
    INDICES = "indices"


@dataclass
class SelectionConfig:
    """How to pick rows; ``validate()`` names the bad field."""

    strategy: Strategy = Strategy.UNIFORM  # which rule picks the treated rows
    rows: int = 64  # rows in total (uniform, ngram) or per source (stratified)
    cohort_steps: int = 1000  # steps per cohort (Lesci et al.: 1,000)
    batches_per_cohort: int = 2  # R: batches drawn per cohort
    rows_per_batch: int = 4  # S: rows drawn per drawn batch
    control_rows: int = 0  # never-trained rows added as the control group
    seed: int = 0  # seed of the row choice (numpy default_rng)
    indices_file: str | None = None  # explicit sample indices (.npy, or text: one per line)

    def validate(self) -> None:
        for name in ("rows", "cohort_steps", "batches_per_cohort", "rows_per_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"selection.{name}={getattr(self, name)}: expected >= 1")
        if self.control_rows < 0:
            raise ConfigError(f"selection.control_rows={self.control_rows}: expected >= 0")
        if self.strategy == Strategy.INDICES and not self.indices_file:
            raise ConfigError("selection.indices_file is required with strategy 'indices'")


def _choice(rng: np.random.Generator, lo: int, hi: int, n: int) -> np.ndarray:
    """``n`` distinct integers from ``[lo, hi)`` (all of them when fewer exist), sorted."""
    size = hi - lo
    if size <= 0:
        return np.zeros(0, dtype=np.int64)
    if n >= size:
        return np.arange(lo, hi, dtype=np.int64)
    return np.sort(rng.choice(size, size=n, replace=False).astype(np.int64) + lo)


def read_indices(path: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"`indices_file` {p}: no such file; expected .npy or a text file with one sample index per line")
    if p.suffix == ".npy":
        arr = np.load(p, allow_pickle=False)
    else:
        try:
            arr = np.array([int(x) for x in p.read_text().split()], dtype=np.int64)
        except ValueError as e:
            raise ConfigError(f"`indices_file` {p}: every entry must be an integer sample index ({e})") from e
    return np.asarray(arr, dtype=np.int64).reshape(-1)


def select_rows(
    cfg: SelectionConfig,
    train_steps: int,
    batch_size: int,
    num_samples: int,
    row_source: Callable[[np.ndarray], list[str | None]] | None = None,
    ngram_rows: Callable[[], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(treated sample indices, control sample indices), each sorted and unique.

    ``row_source(ks)`` gives each row's dominant ``pile_set_name`` (stratified); ``ngram_rows()`` gives the
    trained rows holding the chosen n-gram.
    """
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    trained = train_steps * batch_size
    if trained > num_samples:
        raise ConfigError(
            f"train_steps x batch_size = {trained:,} exceeds num_samples = {num_samples:,}; lower `train_steps`"
        )
    if cfg.strategy == Strategy.UNIFORM:
        treated = _choice(rng, 0, trained, cfg.rows)
    elif cfg.strategy == Strategy.COHORT:
        picks = []
        for c0 in range(0, train_steps, cfg.cohort_steps):
            steps = _choice(rng, c0, min(c0 + cfg.cohort_steps, train_steps), cfg.batches_per_cohort)
            for s in steps:
                picks.append(int(s) * batch_size + _choice(rng, 0, batch_size, cfg.rows_per_batch))
        treated = np.unique(np.concatenate(picks)) if picks else np.zeros(0, np.int64)
    elif cfg.strategy == Strategy.STRATIFIED:
        if row_source is None:
            raise ConfigError("stratified selection needs the store's documents table (pile_set_name per document)")
        # Draw candidates in a random order and keep up to `rows` per source.
        pool = _choice(rng, 0, trained, min(trained, max(cfg.rows * 64, 1024)))
        pool = rng.permutation(pool)
        sources = row_source(pool)
        kept: dict[str | None, list[int]] = {}
        for k, src in zip(pool.tolist(), sources):
            bucket = kept.setdefault(src, [])
            if len(bucket) < cfg.rows:
                bucket.append(k)
        treated = np.unique(np.array([k for b in kept.values() for k in b], dtype=np.int64))
    elif cfg.strategy == Strategy.NGRAM:
        if ngram_rows is None:
            raise ConfigError("ngram selection needs `ngram_text` or `ngram_tokens` and the store's n-gram index")
        found = np.unique(np.asarray(ngram_rows(), dtype=np.int64))
        found = found[found < trained]
        treated = found if found.size <= cfg.rows else np.sort(rng.choice(found, size=cfg.rows, replace=False))
    else:
        treated = np.unique(read_indices(cfg.indices_file or ""))
        bad = treated[(treated < 0) | (treated >= num_samples)]
        if bad.size:
            raise ConfigError(
                f"`indices_file` {cfg.indices_file}: sample index {int(bad[0]):,} is outside 0..{num_samples - 1:,}"
            )
    control = _choice(rng, trained, num_samples, cfg.control_rows) if cfg.control_rows else np.zeros(0, np.int64)
    if cfg.control_rows and control.size == 0:
        raise ConfigError(
            f"no never-trained rows exist: train_steps x batch_size = {trained:,} = num_samples; "
            f"lower `train_steps` or use a held-out store for the control group"
        )
    return treated, control
