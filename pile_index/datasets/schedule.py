"""Pythia's checkpoint schedule and the step <-> revision arithmetic.

154 checkpoints: ``step0`` (initialisation), 1, 2, 4, ..., 512, then every 1,000 steps to 143,000
(Pythia README). Revision ``stepN`` holds the weights after training on samples ``[0, N * batch_size)``,
so a row trained at step ``s`` (0-based) is first inside checkpoint ``stepN`` for the smallest ``N > s``:
its *treatment step*. ``main`` is ``step143000``.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import ConfigError

PYTHIA_FINAL_STEP = 143_000


def pythia_schedule(final_step: int = PYTHIA_FINAL_STEP) -> list[int]:
    """Steps of Pythia's checkpoints up to ``final_step``: 0, 1, 2, 4, ..., 512, 1000, 2000, ..."""
    steps = [0] + [2**i for i in range(10)]
    steps += list(range(1000, final_step + 1, 1000))
    return [s for s in steps if s <= final_step]


def revision_step(revision: str) -> int:
    """``"step3000"`` -> 3000; ``"main"`` -> 143000. ConfigError for anything else."""
    if revision == "main":
        return PYTHIA_FINAL_STEP
    m = re.fullmatch(r"step(\d+)", revision)
    if not m:
        raise ConfigError(f"revision {revision!r}: expected 'stepN' or 'main' to know its training step")
    return int(m.group(1))


def parse_revisions(spec: str, final_step: int = PYTHIA_FINAL_STEP) -> list[str]:
    """``"pythia"`` (the 154-checkpoint schedule), ``"pythia:32"`` (its steps <= 32) or ``"step0,step4,main"``."""
    spec = spec.strip()
    if spec.startswith("pythia"):
        cap = final_step
        if ":" in spec:
            try:
                cap = int(spec.split(":", 1)[1])
            except ValueError as e:
                raise ConfigError(f"`revisions` {spec!r}: expected 'pythia' or 'pythia:MAX_STEP'") from e
        return [f"step{s}" for s in pythia_schedule(cap)]
    revs = [r.strip() for r in spec.split(",") if r.strip()]
    if not revs:
        raise ConfigError(f"`revisions` {spec!r}: expected 'pythia', 'pythia:MAX_STEP' or a comma list like step0,step1000")
    return revs


def treatment_steps(row_steps: np.ndarray, checkpoint_steps: list[int] | np.ndarray) -> np.ndarray:
    """For each row step ``s``, the smallest checkpoint step ``N > s`` (-1 when no checkpoint is after it)."""
    ck = np.unique(np.asarray(checkpoint_steps, dtype=np.int64))
    pos = np.searchsorted(ck, np.asarray(row_steps, dtype=np.int64), side="right")
    out = np.full(pos.shape, -1, dtype=np.int64)
    ok = pos < ck.size
    out[ok] = ck[pos[ok]]
    return out


def before_steps(row_steps: np.ndarray, checkpoint_steps: list[int] | np.ndarray) -> np.ndarray:
    """For each row step ``s``, the largest checkpoint step ``N <= s``: the last one not yet trained on it."""
    ck = np.unique(np.asarray(checkpoint_steps, dtype=np.int64))
    pos = np.searchsorted(ck, np.asarray(row_steps, dtype=np.int64), side="right") - 1
    out = np.full(pos.shape, -1, dtype=np.int64)
    ok = pos >= 0
    out[ok] = ck[pos[ok]]
    return out
