"""Summaries and pictures of a built dataset (rows x checkpoints x metrics), computed in DuckDB.

- ``cohort_means``: mean loss / entropy / accuracy / memorized share per group, cohort and checkpoint.
- ``treatment_effects``: per treated row, the loss change from the last checkpoint before its step to the
  first checkpoint after it (its treatment step), minus the mean change of the never-trained control rows
  over the same pair of checkpoints: a difference-in-differences (Lesci et al. 2024 use the staggered form;
  this is its simplest per-row estimator). Negative = the model's loss fell because it trained on the row.
- ``composition``: training tokens by ``pile_set_name`` per step bucket, from the rows' document spans.

Plots (matplotlib, Agg backend): loss against checkpoint with treatment steps marked; memorized share over
training; composition by source over steps.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ..atomic import atomic_path
from ..errors import NotFoundError
from ..sql.quote import sql_string

log = logging.getLogger(__package__)  # one logger per package: log lines name the concept

COHORT_MEANS_SQL = """
SELECT "group", cohort, checkpoint_step, revision,
       count(*) AS n_rows, avg(loss) AS mean_loss, avg(entropy) AS mean_entropy,
       avg(accuracy) AS mean_accuracy, avg(CAST(memorized AS DOUBLE)) AS memorized_share,
       avg(memorization_score) AS mean_memorization_score
FROM ds GROUP BY ALL ORDER BY "group", cohort, checkpoint_step
"""

ROW_EFFECTS_SQL = """
WITH treated AS (
    SELECT t.train_index, t.sample_index, t.step, t.cohort, t.before_step, t.treatment_step,
           b.loss AS loss_before, a.loss AS loss_after, a.loss - b.loss AS delta
    FROM (SELECT DISTINCT train_index, sample_index, step, cohort, before_step, treatment_step
          FROM ds WHERE "group" = 'treated' AND before_step >= 0 AND treatment_step >= 0) t
    JOIN ds b ON b.train_index = t.train_index AND b.checkpoint_step = t.before_step
    JOIN ds a ON a.train_index = t.train_index AND a.checkpoint_step = t.treatment_step
),
control AS (
    SELECT b.checkpoint_step AS before_step, a.checkpoint_step AS treatment_step, avg(a.loss - b.loss) AS control_delta,
           count(*) AS n_control
    FROM ds b JOIN ds a ON a.train_index = b.train_index
    WHERE b."group" = 'control' AND a.checkpoint_step > b.checkpoint_step
    GROUP BY ALL
)
SELECT treated.*, control.control_delta, control.n_control, treated.delta - control.control_delta AS effect
FROM treated LEFT JOIN control USING (before_step, treatment_step)
ORDER BY treated.train_index
"""

EFFECTS_SQL = """
SELECT cohort, count(*) AS n_rows, avg(delta) AS mean_delta_treated, avg(control_delta) AS mean_delta_control,
       avg(effect) AS mean_effect, stddev_samp(effect) / sqrt(count(effect)) AS stderr_effect
FROM row_effects GROUP BY ROLLUP (cohort) ORDER BY cohort NULLS LAST
"""

COMPOSITION_SQL = """
SELECT (step // $bucket) * $bucket AS step_bucket, coalesce(src, 'unknown') AS pile_set_name, CAST(sum(ntok) AS BIGINT) AS tokens
FROM (SELECT DISTINCT train_index, step, pile_set_names, doc_tokens FROM ds WHERE "group" = 'treated')
CROSS JOIN LATERAL (SELECT unnest(pile_set_names) AS src, unnest(doc_tokens) AS ntok)
GROUP BY ALL ORDER BY step_bucket, pile_set_name
"""


def _connect(dataset: Path) -> duckdb.DuckDBPyConnection:
    if not dataset.is_file():
        raise NotFoundError(f"{dataset}: no dataset; build it with `pile-index dataset build`")
    con = duckdb.connect(":memory:")
    con.execute(f"CREATE VIEW ds AS SELECT * FROM read_parquet({sql_string(dataset)})")
    return con


def summarize(dataset: Path, out_dir: Path, step_bucket: int | None = None) -> dict[str, pa.Table]:
    """Write ``cohort_means``, ``row_effects``, ``treatment_effects`` and ``composition`` Parquet files."""
    import pyarrow.parquet as pq

    con = _connect(dataset)
    tables: dict[str, pa.Table] = {}
    tables["cohort_means"] = con.sql(COHORT_MEANS_SQL).to_arrow_table()
    row_effects = con.sql(ROW_EFFECTS_SQL).to_arrow_table()
    tables["row_effects"] = row_effects
    con.register("row_effects", row_effects)
    tables["treatment_effects"] = con.sql(EFFECTS_SQL).to_arrow_table()
    if step_bucket is None:
        max_step = con.execute("SELECT max(step) FROM ds WHERE \"group\" = 'treated'").fetchall()[0][0] or 0
        step_bucket = max(1, (int(max_step) + 1) // 20)
    tables["composition"] = con.sql(COMPOSITION_SQL, params={"bucket": step_bucket}).to_arrow_table()
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, tbl in tables.items():
        with atomic_path(out_dir / f"{name}.parquet") as tmp:
            pq.write_table(tbl, tmp)
    return tables


def overall_effect(tables: dict[str, pa.Table]) -> dict[str, Any]:
    """The ROLLUP row of ``treatment_effects`` (all cohorts together)."""
    rows = tables["treatment_effects"].to_pylist()
    total = [r for r in rows if r["cohort"] is None]
    return total[0] if total else {}


def effect_unavailable(tables: dict[str, pa.Table]) -> str | None:
    """Why the dataset has no overall treatment effect, in one sentence; None when it has one.

    A treated row's effect needs a checkpoint at or before its step and one after it, plus control rows
    scored at the same two checkpoints; with fewer checkpoints every effect is null, and this says which
    part is missing instead."""
    if overall_effect(tables).get("mean_effect") is not None:
        return None
    means = tables["cohort_means"].to_pylist()
    steps = sorted({r["checkpoint_step"] for r in means})
    n_group = {g: sum(r["n_rows"] for r in means if r["group"] == g and steps and r["checkpoint_step"] == steps[0])
               for g in ("treated", "control")}
    shown = ", ".join(f"step{s}" for s in steps[:12]) + (" ..." if len(steps) > 12 else "")
    if len(steps) < 2:
        return (f"too few checkpoints for a treatment effect: {len(steps)} ({shown or 'none'}); an effect compares "
                "a treated row's loss at the last checkpoint before its step with the first one after it, so "
                "revisions needs checkpoints on both sides of the rows' steps")
    if tables["row_effects"].num_rows == 0:
        return (f"no treated row lies between two of the checkpoints ({shown}): add revisions at or before the "
                "treated rows' steps and after them")
    if n_group["control"] == 0:
        return ("no control rows (selection.control_rows=0): the difference-in-differences subtracts the loss "
                "change of never-trained rows over the same checkpoints")
    return "no treated row has a finite loss change between its checkpoints (losses are null or not finite)"


def plot(tables: dict[str, pa.Table], out_dir: Path) -> list[Path]:
    """Draw the three pictures as PNG files in ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    means = tables["cohort_means"].to_pylist()
    effects = tables["row_effects"].to_pylist()

    # 1. Loss against checkpoint per cohort, treatment steps marked.
    fig, ax = plt.subplots(figsize=(8, 4.5))
    groups = sorted({(r["group"], r["cohort"]) for r in means}, key=lambda g: (g[0] != "treated", g[1]))
    for group, cohort in groups:
        pts = sorted((r["checkpoint_step"], r["mean_loss"]) for r in means if r["group"] == group and r["cohort"] == cohort)
        xs = [max(p[0], 0.5) for p in pts]
        style = "--" if group == "control" else "-"
        ax.plot(xs, [p[1] for p in pts], style, marker="o", ms=3, label=f"{group} cohort {cohort}")
    for ts in sorted({r["treatment_step"] for r in effects}):
        ax.axvline(max(ts, 0.5), color="grey", alpha=0.25, lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("checkpoint step (step0 drawn at 0.5)")
    ax.set_ylabel("mean loss (nats/token)")
    ax.set_title("Loss of training rows by checkpoint; grey lines = treatment steps")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths.append(out_dir / "loss_by_checkpoint.png")
    _save(fig, paths[-1])
    plt.close(fig)

    # 2. Memorized share over training.
    fig, ax = plt.subplots(figsize=(8, 4))
    for group in ("treated", "control"):
        agg: dict[int, list[float]] = {}
        for r in means:
            if r["group"] == group:
                agg.setdefault(r["checkpoint_step"], []).append(r["memorized_share"] * r["n_rows"])
        n_by = {}
        for r in means:
            if r["group"] == group:
                n_by[r["checkpoint_step"]] = n_by.get(r["checkpoint_step"], 0) + r["n_rows"]
        xs = sorted(agg)
        ax.plot([max(x, 0.5) for x in xs], [sum(agg[x]) / n_by[x] for x in xs], marker="o", ms=3, label=group)
    ax.set_xscale("log")
    ax.set_xlabel("checkpoint step")
    ax.set_ylabel("share memorized (32-token extractable)")
    ax.legend()
    fig.tight_layout()
    paths.append(out_dir / "memorized_share.png")
    _save(fig, paths[-1])
    plt.close(fig)

    # 3. Training composition by source over steps.
    comp = tables["composition"].to_pylist()
    fig, ax = plt.subplots(figsize=(8, 4))
    buckets = sorted({r["step_bucket"] for r in comp})
    sources = sorted({r["pile_set_name"] for r in comp})
    bottom = [0.0] * len(buckets)
    totals = {b: sum(r["tokens"] for r in comp if r["step_bucket"] == b) or 1 for b in buckets}
    for src in sources:
        vals = [sum(r["tokens"] for r in comp if r["step_bucket"] == b and r["pile_set_name"] == src) / totals[b] for b in buckets]
        ax.bar(range(len(buckets)), vals, bottom=bottom, label=src)
        bottom = [x + y for x, y in zip(bottom, vals)]
    ax.set_xticks(range(len(buckets)), [str(b) for b in buckets])
    ax.set_xlabel("step bucket (first step)")
    ax.set_ylabel("share of sampled training tokens")
    ax.legend(fontsize=7)
    ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    fig.tight_layout()
    paths.append(out_dir / "composition_by_source.png")
    _save(fig, paths[-1])
    plt.close(fig)
    return paths


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
