"""Checkpoint schedule arithmetic and row selection."""

from __future__ import annotations

import numpy as np
import pytest

from pile_index.datasets import (SelectionConfig, Strategy, before_steps, parse_revisions, pythia_schedule,
                                 revision_step, select_rows, treatment_steps)
from pile_index.errors import ConfigError


def test_pythia_schedule_has_154_checkpoints():
    s = pythia_schedule()
    assert len(s) == 154 and s[:12] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000] and s[-1] == 143_000
    assert parse_revisions("pythia:8") == ["step0", "step1", "step2", "step4", "step8"]
    assert parse_revisions("step0, main") == ["step0", "main"]
    assert revision_step("main") == 143_000 and revision_step("step3000") == 3000
    with pytest.raises(ConfigError, match="stepN"):
        revision_step("v1")


def test_treatment_step_is_first_checkpoint_after_the_row():
    ck = pythia_schedule(4000)
    rows = np.array([0, 1, 2, 3, 511, 512, 999, 1000, 3999, 4000])
    # stepN holds samples [0, N*B): a row at step s is first seen by checkpoint N > s.
    assert treatment_steps(rows, ck).tolist() == [1, 2, 4, 4, 512, 1000, 1000, 2000, 4000, -1]
    assert before_steps(rows, ck).tolist() == [0, 1, 2, 2, 256, 512, 512, 1000, 3000, 4000]


def test_uniform_and_control():
    treated, control = select_rows(SelectionConfig(rows=10, control_rows=5, seed=1), 100, 8, 900)
    assert treated.size == 10 and np.all(treated < 800) and np.all(np.diff(treated) > 0)
    assert control.size == 5 and np.all((control >= 800) & (control < 900))
    again = select_rows(SelectionConfig(rows=10, control_rows=5, seed=1), 100, 8, 900)
    assert np.array_equal(again[0], treated) and np.array_equal(again[1], control)


def test_cohorts_draw_R_batches_of_S_rows_each():
    cfg = SelectionConfig(strategy=Strategy.COHORT, cohort_steps=10, batches_per_cohort=2, rows_per_batch=3)
    treated, _ = select_rows(cfg, 30, 16, 30 * 16)
    steps = treated // 16
    assert treated.size == 3 * 2 * 3
    for c in range(3):
        in_c = steps[(steps >= 10 * c) & (steps < 10 * (c + 1))]
        assert np.unique(in_c).size == 2 and in_c.size == 6


def test_stratified_keeps_rows_per_source():
    cfg = SelectionConfig(strategy=Strategy.STRATIFIED, rows=4)
    treated, _ = select_rows(cfg, 50, 4, 200, row_source=lambda ks: ["A" if k % 3 else "B" for k in ks])
    assert sum(1 for k in treated if k % 3) == 4 and sum(1 for k in treated if k % 3 == 0) == 4


def test_indices_and_errors(tmp_path):
    f = tmp_path / "idx.txt"
    f.write_text("5\n3\n5\n")
    treated, _ = select_rows(SelectionConfig(strategy=Strategy.INDICES, indices_file=str(f)), 10, 1, 10)
    assert treated.tolist() == [3, 5]
    f.write_text("50\n")
    with pytest.raises(ConfigError, match="outside 0..9"):
        select_rows(SelectionConfig(strategy=Strategy.INDICES, indices_file=str(f)), 10, 1, 10)
    with pytest.raises(ConfigError, match="no never-trained rows"):
        select_rows(SelectionConfig(control_rows=2), 10, 1, 10)
    with pytest.raises(ConfigError, match="selection.rows"):
        select_rows(SelectionConfig(rows=0), 10, 1, 10)
