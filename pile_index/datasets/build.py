"""Training rows x checkpoints x metrics in one command: the memorization / influence dataset.

``build_dataset`` picks rows (:mod:`pile_index.datasets.selection`), reads them through the training order, scores
them at every checkpoint (:mod:`pile_index.scorer`), and writes, under ``OUT/``:

- ``rows.parquet``: one row per training row: contiguous ``train_index``, ``sample_index`` (= ``index`` of
  EleutherAI's pythia-memorized-evals), ``step``, ``slot``, ``group`` (treated / control), ``cohort``,
  ``treatment_step`` (first checkpoint after the row's step), ``before_step`` (last checkpoint not yet
  trained on it), source ``doc_ids`` / ``doc_tokens`` / ``pile_set_names``, the first 64 ``tokens`` and the
  whole row as ``input_ids`` (seq_length + 1 ids, list<uint16> or list<int32> as in ``pile-index export
  parquet``), so the rows feed TRAK / Kronfluence / LogIX / dattri without another join; with
  ``duplicates``, ``num_duplicates``: the trained rows holding the row's tokens [32:64) whole
  (:mod:`pile_index.ngram.duplicates`; null where those tokens cross a document boundary);
- ``checkpoints.parquet``: revision, its step, resolved commit sha, weight hashes, duplicates;
- ``dataset.parquet``: rows x checkpoints (every rows column but ``input_ids``, which would repeat per
  checkpoint) with ``loss``, ``entropy``, ``accuracy``, ``memorized``, ``memorization_score`` and the
  checkpoint record;
- ``summary/*.parquet`` and ``plots/*.png`` (:mod:`pile_index.datasets.summary`).

Every revision is resolved before the first is scored (:func:`~pile_index.scorer.checkpoint.resolve_revisions`):
a missing one stops the build before any work, naming the missing and the present ones.

Scoring is split into (checkpoint x row-chunk) parts under ``OUT/parts/``, each written atomically and named
by its revision: a rerun skips finished parts (also with revisions added or removed); ``restart=True``
deletes the parts and starts over. ``OUT/parts/job.json`` records what the parts are of (rows, model, scoring
options, store); parts of another job are refused, naming what differs. An error while scoring keeps the
finished parts and says so (``next_step`` on the error: ``"resume"``; a mismatch: ``"restart"``). With Ray
(``ray_address``) the same parts are computed by remote tasks; each part is the same computation in either
mode (same rows, same batch, one torch thread), so outputs are identical.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import files
from ..atomic import atomic_path, write_bytes
from ..sql.docstore import DocumentTable
from ..errors import ConfigError, PileIndexError
from ..fanout import fan_out, require_ray
from ..jobs import claim_folder
from ..order.export import input_ids_array
from .schedule import before_steps, revision_step, treatment_steps
from .selection import SelectionConfig, Strategy, select_rows
from ..sidecar import load_sidecar, optional

log = logging.getLogger(__package__)  # one logger per package: log lines name the concept

MEMORIZED_EVALS_TOKENS = 64  # pythia-memorized-evals keep the first 64 tokens of a row


@dataclass
class DatasetConfig:
    """What to build; ``validate()`` names the bad field."""

    model: str  # model id (Org/name), hub-cache repo folder, or a folder with one sub-folder per revision
    revisions: list[str]  # checkpoints to score, e.g. the Pythia schedule's step0 ... step143000
    selection: SelectionConfig = field(default_factory=SelectionConfig)  # which rows
    chunk_rows: int = 64  # rows per scoring part (the unit of resume and of Ray tasks)
    batch_rows: int = 8  # rows per forward pass inside a part
    device: str | None = None  # torch device (None: CUDA when present, else CPU)
    memorization_score: bool = True  # run Biderman et al.'s greedy 32-token decoding
    ban_eod: bool = False  # forbid token 0 while decoding, as their minimum-length setting did
    allow_download: bool = True  # download missing revisions from the hub when online
    duplicates: bool = False  # add num_duplicates to rows.parquet (needs the store's n-gram index)

    def validate(self) -> None:
        if not self.revisions:
            raise ConfigError("dataset.revisions is empty; pass `revisions` pythia or a list like step0,step1000")
        if self.chunk_rows < 1 or self.batch_rows < 1:
            raise ConfigError(f"dataset.chunk_rows={self.chunk_rows}, batch_rows={self.batch_rows}: expected >= 1")
        for r in self.revisions:
            revision_step(r)  # every revision must name its step
        dup = sorted({r for r in self.revisions if self.revisions.count(r) > 1})
        if dup:
            raise ConfigError(f"dataset.revisions names {', '.join(dup)} more than once: list each revision once")
        self.selection.validate()


# ------------------------------------------------------------------------------------------------ rows


def _row_sources(order, documents: DocumentTable | None, ks: np.ndarray) -> tuple[list, list, list]:
    """Per row: doc_ids, doc_tokens (tokens of each doc in the row) and pile_set_names (None without a table)."""
    doc_ids, doc_tokens = [], []
    for k in ks.tolist():
        spans = order.spans(int(k))
        if spans is None:  # preshuffled store: document identity is gone
            doc_ids.append(None)
            doc_tokens.append(None)
            continue
        doc_ids.append([s["doc_id"] for s in spans])
        doc_tokens.append([s["doc_end"] - s["doc_start"] for s in spans])
    names: list = [None] * len(ks)
    if documents is not None:
        wanted = sorted({d for ids in doc_ids if ids for d in ids})
        meta = documents.rows(wanted)
        names = [None if ids is None else [meta.get(d, {}).get("pile_set_name") for d in ids] for ids in doc_ids]
    return doc_ids, doc_tokens, names


def dominant_sources(order, documents: DocumentTable | None) -> Callable[[np.ndarray], list[str | None]]:
    """For stratified selection: each row's source = the ``pile_set_name`` holding most of its tokens."""
    if documents is None:
        raise ConfigError("stratified selection needs PREFIX.documents.parquet (from ingest or attach)")

    def fn(ks: np.ndarray) -> list[str | None]:
        _, toks, names = _row_sources(order, documents, ks)
        out = []
        for t, n in zip(toks, names):
            if not t:
                out.append(None)
                continue
            agg: dict[str | None, int] = {}
            for src, c in zip(n, t):
                agg[src] = agg.get(src, 0) + c
            out.append(max(agg.items(), key=lambda kv: (kv[1], kv[0] or ""))[0])
        return out

    return fn


def build_rows_table(order, documents: DocumentTable | None, treated: np.ndarray, control: np.ndarray,
                     checkpoint_steps: list[int], cohort_steps: int) -> tuple[pa.Table, np.ndarray]:
    """The rows table (sorted by sample index, contiguous train_index) and the rows' tokens."""
    ks = np.concatenate([treated, control]).astype(np.int64)
    group = np.array(["treated"] * len(treated) + ["control"] * len(control))
    order_ix = np.argsort(ks, kind="stable")
    ks, group = ks[order_ix], group[order_ix]
    rows = order.rows(ks)
    steps, slots = order.step_slot(ks)
    is_t = group == "treated"
    cohort = np.where(is_t, steps // cohort_steps, -1)
    treat = np.where(is_t, treatment_steps(steps, checkpoint_steps), -1)
    before = np.where(is_t, before_steps(steps, checkpoint_steps), -1)
    doc_ids, doc_tokens, names = _row_sources(order, documents, ks)
    first = np.asarray(rows[:, :MEMORIZED_EVALS_TOKENS], dtype=np.int64)
    table = pa.table({
        "train_index": pa.array(np.arange(len(ks), dtype=np.int64)),
        "sample_index": pa.array(ks),
        "index": pa.array(ks),
        "step": pa.array(steps),
        "slot": pa.array(slots),
        "group": pa.array(group.tolist(), pa.string()),
        "cohort": pa.array(cohort.astype(np.int64)),
        "treatment_step": pa.array(treat.astype(np.int64)),
        "before_step": pa.array(before.astype(np.int64)),
        "doc_ids": pa.array(doc_ids, pa.list_(pa.int64())),
        "doc_tokens": pa.array(doc_tokens, pa.list_(pa.int64())),
        "pile_set_names": pa.array(names, pa.list_(pa.string())),
        "tokens": pa.array(first.tolist(), pa.list_(pa.int64())),
        "input_ids": input_ids_array(rows),
    })
    return table, rows


# --------------------------------------------------------------------------------------------- scoring


_LOADED: dict[str, Any] = {}  # the last model loaded in this process (one at a time bounds memory)


def score_part(model: str, revision: str, rows: np.ndarray, batch_rows: int, device: str | None,
               memorization_score: bool, ban_eod: bool, allow_download: bool) -> tuple[dict[str, Any], dict]:
    """Score one chunk of rows at one revision: (metric columns, checkpoint record).

    One torch thread, so the numbers do not depend on where (which process, which Ray worker) it runs.
    """
    import torch

    from ..scorer import ScoreOptions, load_model, pick_device, pick_dtype, resolve_checkpoint, score_rows

    torch.set_num_threads(1)
    dev = pick_device(device)
    cache_key = (model, revision, str(dev))
    if _LOADED.get("key") != cache_key:  # consecutive parts of one revision load it once per process
        _LOADED.clear()
        ckpt = resolve_checkpoint(model, revision, allow_download=allow_download)
        net, tensor_hash = load_model(ckpt, dev, pick_dtype(dev), with_tensor_hash=True)
        _LOADED.update(key=cache_key, ckpt=ckpt, net=net, tensor_hash=tensor_hash)
    ckpt, net, tensor_hash = _LOADED["ckpt"], _LOADED["net"], _LOADED["tensor_hash"]
    opts = ScoreOptions(memorization_score=memorization_score, ban_eod=ban_eod, batch_size=batch_rows)
    cols = score_rows(net, rows, opts)
    record = ckpt.record()
    record["tensors_sha256"] = tensor_hash
    return cols, record


def _part_table(train_index: np.ndarray, revision: str, cols: dict[str, Any]) -> pa.Table:
    n = len(train_index)

    def col(name, typ):
        v = cols.get(name)
        return pa.nulls(n, typ) if v is None else pa.array(v, typ)

    return pa.table({
        "train_index": pa.array(train_index.astype(np.int64)),
        "revision": pa.array([revision] * n, pa.string()),
        "loss": col("loss", pa.float64()), "entropy": col("entropy", pa.float64()),
        "accuracy": col("accuracy", pa.float64()), "memorized": col("memorized", pa.bool_()),
        "memorization_score": col("memorization_score", pa.float64()),
    })


_CHECKPOINT_RECORD = {"model": str, "weights_sha256": str, "commit_sha": optional((str, None)),
                      "tensors_sha256": optional((str, None))}


JOB_VERSION = 2  # parts named by revision (version 1: by position in the revision list)


def _job(cfg: DatasetConfig, store_fingerprint: str, ks: np.ndarray) -> dict[str, Any]:
    """What the parts under ``OUT/parts/`` are of. Revisions are not in it (each part names its revision, so
    a rerun with revisions added or removed reuses the parts it shares); nor are the device and whether
    downloads are allowed (they change where the numbers come from, not what they are)."""
    return {
        "version": JOB_VERSION, "model": cfg.model,
        "selection": json.loads(json.dumps(asdict(cfg.selection), default=str)),  # StrEnum -> its value
        "chunk_rows": cfg.chunk_rows, "batch_rows": cfg.batch_rows, "memorization_score": cfg.memorization_score,
        "ban_eod": cfg.ban_eod, "store": store_fingerprint,
        "rows_sha256": hashlib.sha256(np.ascontiguousarray(ks, dtype=np.int64).tobytes()).hexdigest(),
    }


def _with_next_step(e: PileIndexError, next_step: str, text: str) -> PileIndexError:
    """``e`` again (same class and attributes) with ``text`` appended and ``next_step`` ("resume" or
    "restart") set, so a caller (the CLI) can name the one command that goes on."""
    out = type(e).__new__(type(e))
    out.__dict__.update(e.__dict__)
    out.args = (f"{e}; {text}",)
    out.next_step = next_step
    return out


def _open_parts(parts: Path, job: dict[str, Any], out: Path, restart: bool) -> None:
    """Make ``parts`` hold parts of ``job`` only (:func:`~pile_index.jobs.claim_folder`): parts of another job
    are refused, naming what differs, or, with ``restart``, deleted first."""
    fix = "restart=True deletes them and starts over, or use another out folder"
    try:
        claim_folder(parts, job, restart=restart, what="dataset", units="parts", shown=out)
    except PileIndexError as e:
        raise _with_next_step(e, "restart", fix) from None


def build_dataset(order, documents: DocumentTable | None, cfg: DatasetConfig, out_dir: str | os.PathLike, *,
                  ray_address: str | None = None, ray_num_cpus: int | None = None, progress: bool = True,
                  ngram_rows: Callable[[], np.ndarray] | None = None, restart: bool = False) -> dict[str, Any]:
    """Build ``OUT/`` as described in the module docstring; returns a summary of what was written.

    Every revision is resolved first; ``restart`` deletes parts left by an earlier build of ``out_dir``."""
    from .summary import effect_unavailable, overall_effect, plot, summarize
    from ..scorer.checkpoint import resolve_revisions

    cfg.validate()
    if ray_address:
        require_ray()
    plan = resolve_revisions(cfg.model, cfg.revisions, allow_download=cfg.allow_download)
    log.info("%s: %d of %d revisions here, %d to download", cfg.model, len(plan.present), len(cfg.revisions),
             len(plan.to_download))
    out = Path(out_dir)
    sel = cfg.selection
    row_source = dominant_sources(order, documents) if sel.strategy == Strategy.STRATIFIED else None
    treated, control = select_rows(sel, order.train_steps, order.batch_size, order.num_samples,
                                   row_source=row_source, ngram_rows=ngram_rows)
    if treated.size == 0:
        raise ConfigError("the selection picked no training rows; widen it (more rows, another strategy)")
    ck_steps = [revision_step(r) for r in cfg.revisions]
    rows_tbl, rows = build_rows_table(order, documents, treated, control, ck_steps, sel.cohort_steps)
    ks = rows_tbl["sample_index"].to_numpy()
    undefined = None
    if cfg.duplicates:
        rows_tbl, undefined = _with_duplicates(order, rows_tbl, ks, rows)
    if not ((rows_tbl["before_step"].to_numpy() >= 0) & (rows_tbl["treatment_step"].to_numpy() >= 0)).any():
        log.warning("no treated row lies between two of the %d checkpoints: the dataset will hold losses but no "
                    "treatment effect", len(set(ck_steps)))

    parts = out / files.DATASET_PARTS
    _open_parts(parts, _job(cfg, order.store.fingerprint(), ks), out, restart)
    with atomic_path(out / files.DATASET_ROWS) as tmp:
        pq.write_table(rows_tbl, tmp)

    n = len(ks)
    tasks = [(rev, c0) for rev in cfg.revisions for c0 in range(0, n, cfg.chunk_rows)]
    part_path = {t: files.dataset_part_path(parts, t[0], t[1]) for t in tasks}
    rec_path = {rev: files.dataset_checkpoint_record_path(parts, rev) for rev in cfg.revisions}
    todo = [t for t in tasks if not (part_path[t].is_file() and rec_path[t[0]].is_file())]
    args = (cfg.batch_rows, cfg.device, cfg.memorization_score, cfg.ban_eod, cfg.allow_download)
    finished = len(tasks) - len(todo)

    def finish(k: int, result: tuple[dict[str, Any], dict]) -> None:
        nonlocal finished
        (rev, c0), (cols, record) = todo[k], result
        tbl = _part_table(np.arange(c0, min(n, c0 + cfg.chunk_rows)), rev, cols)
        with atomic_path(part_path[todo[k]]) as tmp:
            pq.write_table(tbl, tmp)
        write_bytes(rec_path[rev], json.dumps(record, sort_keys=True).encode())
        finished += 1

    try:
        # One GPU per Ray task when scoring on CUDA (Ray places tasks on the nodes that have them), else one CPU.
        fan_out(score_part, [(cfg.model, rev, rows[c0 : c0 + cfg.chunk_rows], *args) for rev, c0 in todo],
                on_done=finish, ray_address=ray_address, ray_num_cpus=ray_num_cpus,
                num_gpus=1 if cfg.device == "cuda" else 0, desc="score", unit="part", progress=progress,
                done_before=len(tasks) - len(todo))
    except PileIndexError as e:
        raise _with_next_step(e, "resume", f"the dataset build stopped with {finished:,} of {len(tasks):,} parts "
                              f"finished, kept in {parts}: fix the cause and rerun to resume") from e

    ck_rows = []
    for rev in cfg.revisions:
        rec = load_sidecar(rec_path[rev], _CHECKPOINT_RECORD, f"delete it and rerun to score {rev} again")
        ck_rows.append({"revision": rev, "checkpoint_step": revision_step(rev), "model": rec["model"],
                        "commit_sha": rec.get("commit_sha"), "weights_sha256": rec["weights_sha256"],
                        "tensors_sha256": rec.get("tensors_sha256")})
    from ..scorer.checkpoint import DuplicateWeights

    dups = DuplicateWeights()  # the scorer's rule: equal weight files or equal tensors
    for r in ck_rows:
        r["duplicate_of"] = dups.check(r["revision"], r["weights_sha256"], r["tensors_sha256"])
    ck_tbl = pa.Table.from_pylist(ck_rows)
    with atomic_path(out / files.DATASET_CHECKPOINTS) as tmp:
        pq.write_table(ck_tbl, tmp)

    con = duckdb.connect(":memory:")
    con.register("rows_t", rows_tbl)
    con.register("ck_t", ck_tbl)
    con.register("scores_t", pa.concat_tables(pq.read_table(part_path[t]) for t in tasks))
    joined = con.sql(
        "SELECT r.* EXCLUDE (input_ids), c.checkpoint_step, s.revision, c.model, c.commit_sha, c.weights_sha256, c.duplicate_of, "
        "s.loss, s.entropy, s.accuracy, s.memorized, s.memorization_score "
        "FROM scores_t s JOIN rows_t r USING (train_index) JOIN ck_t c USING (revision) "
        "ORDER BY r.train_index, c.checkpoint_step"
    ).to_arrow_table()
    with atomic_path(out / files.DATASET_TABLE) as tmp:
        pq.write_table(joined, tmp)
    tables = summarize(out / files.DATASET_TABLE, out / files.DATASET_SUMMARY)
    pngs = plot(tables, out / "plots")
    unavailable = effect_unavailable(tables)
    if unavailable:
        log.warning("no treatment effect: %s", unavailable)
    return {
        "out": str(out), "rows": n, "treated": int(treated.size), "control": int(control.size),
        "revisions": len(cfg.revisions), "dataset_rows": joined.num_rows,
        "plots": [str(p) for p in pngs],
        "treatment_effect": None if unavailable else overall_effect(tables),
        "treatment_effect_unavailable": unavailable,
        "duplicates": [(r["revision"], r["duplicate_of"]) for r in ck_rows if r["duplicate_of"]],
        **({} if undefined is None else {"num_duplicates_null_rows": undefined}),
    }


def _with_duplicates(order, rows_tbl: pa.Table, ks: np.ndarray, rows: np.ndarray) -> tuple[pa.Table, int]:
    """rows_tbl with ``num_duplicates`` (null where tokens [32:64) cross a document boundary) and how many
    rows are null."""
    from ..ngram import NgramIndex
    from ..ngram.duplicates import row_duplicates

    counts, defined = row_duplicates(NgramIndex(order.store), order, ks, rows)
    undefined = int((~defined).sum())
    if undefined:
        log.info("num_duplicates: %d of %d rows hold a document boundary inside tokens [32:64): null", undefined,
                 len(ks))
    return rows_tbl.append_column("num_duplicates", pa.array(counts, pa.int64(), mask=~defined)), undefined

