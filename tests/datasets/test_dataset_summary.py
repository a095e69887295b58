"""Dataset summaries on a hand-made dataset whose difference-in-differences is known exactly."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pile_index.datasets import overall_effect, plot, summarize


def _dataset(path):
    ckpts = [0, 1, 2, 4]
    rows = []
    # treated rows at steps 0 and 2 (treatment steps 1 and 4); loss falls by 1.0 at treatment, 0.1 otherwise.
    # control rows: loss falls by 0.1 per checkpoint interval.
    specs = [(0, 0, "treated", 0, 1, 0), (1, 2, "treated", 2, 4, 0), (2, 9, "control", -1, -1, -1), (3, 9, "control", -1, -1, -1)]
    for ti, step, group, before, treat, cohort in specs:
        loss = 10.0
        for i, c in enumerate(ckpts):
            if i > 0:
                loss -= 1.0 if (group == "treated" and c == treat) else 0.1
            rows.append({
                "train_index": ti, "sample_index": step * 4, "step": step, "cohort": cohort, "group": group,
                "before_step": before, "treatment_step": treat, "checkpoint_step": c, "revision": f"step{c}",
                "loss": loss, "entropy": 1.0, "accuracy": 0.5, "memorized": c == 4 and group == "treated",
                "memorization_score": 0.5, "pile_set_names": ["A", "B"], "doc_tokens": [3, 1],
            })
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_difference_in_differences(tmp_path):
    ds = tmp_path / "dataset.parquet"
    _dataset(ds)
    tables = summarize(ds, tmp_path / "summary")
    effects = {r["train_index"]: r for r in tables["row_effects"].to_pylist()}
    assert effects[0]["delta"] == pytest.approx(-1.0) and effects[0]["control_delta"] == pytest.approx(-0.1)
    assert effects[0]["effect"] == pytest.approx(-0.9)
    # row 1: before = step2, after = step4: -1.0 vs control -0.1
    assert effects[1]["before_step"] == 2 and effects[1]["effect"] == pytest.approx(-0.9)
    assert overall_effect(tables)["mean_effect"] == pytest.approx(-0.9)
    comp = tables["composition"].to_pylist()
    assert sum(r["tokens"] for r in comp if r["pile_set_name"] == "A") == 6
    means = [r for r in tables["cohort_means"].to_pylist() if r["group"] == "treated" and r["checkpoint_step"] == 4]
    assert means[0]["memorized_share"] == 1.0
    for name in ("cohort_means", "row_effects", "treatment_effects", "composition"):
        assert (tmp_path / "summary" / f"{name}.parquet").is_file()
    paths = plot(tables, tmp_path / "plots")
    assert [p.name for p in paths] == ["loss_by_checkpoint.png", "memorized_share.png", "composition_by_source.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_missing_effect_is_explained(tmp_path):
    """Fewer checkpoints or rows than an effect needs: one sentence saying what is missing, not null columns."""
    from pile_index.datasets import effect_unavailable

    ds = tmp_path / "dataset.parquet"
    _dataset(ds)
    full = pq.read_table(ds)
    assert effect_unavailable(summarize(ds, tmp_path / "s0")) is None

    def variant(name, keep):
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.Table.from_pylist([r for r in full.to_pylist() if keep(r)], schema=full.schema), path)
        return effect_unavailable(summarize(path, tmp_path / name))

    assert variant("one", lambda r: r["checkpoint_step"] == 4).startswith(
        "too few checkpoints for a treatment effect: 1 (step4)")
    assert variant("outside", lambda r: r["checkpoint_step"] in (0, 4) and r["train_index"] != 0) == (
        "no treated row lies between two of the checkpoints (step0, step4): add revisions at or before the "
        "treated rows' steps and after them")
    assert variant("no_control", lambda r: r["group"] == "treated").startswith("no control rows")
