"""Training rows written out in training order: Pythia's preshuffled ``.bin/.idx``, or Parquet files.

Both read rows through the order object (:meth:`~pile_index.order.training.TrainingOrder.rows` and
:meth:`~pile_index.order.training.TrainingOrder.row_pieces`, i.e. ``GPT2Dataset.__getitem__``), a chunk of
rows at a time, so memory is bounded by ``CHUNK_TOKENS`` and not by the export.

Which rows: the steps ``[A, B)`` (``steps``; default all trained steps, ``0 .. train_steps``), i.e. sample
indices ``A x batch_size .. B x batch_size - 1``; B may go past ``train_steps`` up to the last step with a
full batch of rows (those rows exist in the order; training never read them).

Preshuffled (``export_preshuffled``): item j of ``OUT.bin/.idx`` is sample index ``A x batch_size + j``
(so with A = 0, item k = training row k), ``seq_length + 1`` tokens in the store's dtype, each item its
own document (``doc_idx = 0, 1, ..., n``): the bytes GPT-NeoX's ``MMapIndexedDatasetBuilder`` writes when fed
the rows with ``add_item`` + ``end_document``, the layout of Pythia's preshuffled stores
(docs/FORMATS.md, "Preshuffled rows"). ``OUT.export.json`` is written first (claiming ``OUT``) and again,
marked complete, after the ``.idx``: a rerun of a finished export writes nothing, a rerun of an interrupted
one writes it again, and files under ``OUT`` that are not this export's are refused, never replaced.

Parquet (``export_parquet``): ``OUT/train-IIIII-of-NNNNN.parquet``, ``rows_per_file`` rows each (default 1,000
steps), sorted names in training order, columns ``uid`` (= sample index), ``step``, ``slot``, ``batch_idx``
(= step, the name of the community preshuffled Parquet layout), ``input_ids`` (list<uint16>, or list<int32>
for a store of a big vocabulary), and over a raw store ``doc_ids`` (the documents of the row's pieces, in
token order) and, with a documents table, ``pile_set_names`` (one per doc_id). Each file is written
atomically (its temp name starts with a dot, so pyarrow.dataset and ``datasets`` never read one), so a file
present is complete and a rerun skips it; ``OUT/.export.json`` (:func:`~pile_index.jobs.claim_folder`)
records the export, and a rerun with other options is refused, naming what differs.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import files
from ..atomic import atomic_path, write_bytes
from ..errors import ConfigError, FormatError, QueryError
from ..format.indexed import IndexedDatasetWriter, data_file_path, index_file_path, strip_prefix
from ..jobs import claim_folder
from ..progress import progress_bar
from ..sidecar import read_json

log = logging.getLogger(__package__)

CHUNK_TOKENS = 1 << 23  # tokens read through the order per step (16 MB of uint16; 4,094 Pythia rows)
FILE_STEPS = 1000  # default steps per Parquet file (the community preshuffled layout: 1,024,000 rows a file)
EXPORT_JOB = files.EXPORT_JOB  # the job record inside a Parquet export folder
JOB_VERSION = 1


def export_range(order: Any, steps: tuple[int, int] | None = None) -> tuple[int, int]:
    """Steps ``[A, B)`` to export, checked: default ``0 .. train_steps``; B at most the last step with a full
    batch of rows in the order."""
    bs = int(order.batch_size)
    last = int(order.full_steps)
    lo, hi = (0, int(order.train_steps)) if steps is None else (int(steps[0]), int(steps[1]))
    if steps is None and hi == 0:
        raise QueryError("train_steps is 0: no trained rows to export; name the steps to export (steps=A:B)")
    if not 0 <= lo < hi <= last:
        raise QueryError(f"steps {lo:,}:{hi:,}: expected 0 <= A < B <= {last:,} (steps with a full batch of "
                         f"{bs:,} rows in this order; trained steps end at {int(order.train_steps):,})")
    return lo, hi


def _chunk_rows(order: Any) -> int:
    return max(1, CHUNK_TOKENS // (int(order.seq_length) + 1))


def token_list_type(dtype: np.dtype) -> pa.DataType:
    """``input_ids``' Arrow type: list<uint16> for a uint16 store (Pythia's), list<int32> otherwise."""
    return pa.list_(pa.uint16() if np.dtype(dtype) == np.uint16 else pa.int32())


def input_ids_array(rows: np.ndarray) -> pa.Array:
    """Rows (n, width) as one list array of ``token_list_type`` (one list per row), without a Python loop."""
    n, width = rows.shape
    typ = token_list_type(rows.dtype)
    values = np.ascontiguousarray(rows.reshape(-1)).astype(typ.value_type.to_pandas_dtype(), copy=False)
    offsets = pa.array(np.arange(n + 1, dtype=np.int64) * width, pa.int64())
    return pa.LargeListArray.from_arrays(offsets, pa.array(values)).cast(typ)


def _job(order: Any, kind: str, lo: int, hi: int, **extra: Any) -> dict[str, Any]:
    """What an export is of: the store, the order, the steps and the options that change its bytes."""
    return {"version": JOB_VERSION, "kind": kind, "store": order.store.fingerprint(),
            "order": asdict(order.cfg), "preshuffled": bool(order.preshuffled), "steps": [lo, hi], **extra}


def _record(order: Any, lo: int, hi: int) -> dict[str, Any]:
    bs = int(order.batch_size)
    return {"steps": [lo, hi], "first_sample_index": lo * bs, "rows": (hi - lo) * bs,
            "tokens_per_row": int(order.seq_length) + 1, "dtype": str(order.store.dtype),
            "trained_rows": max(0, min(hi, int(order.train_steps)) - lo) * bs}


# ------------------------------------------------------------------------------------------ preshuffled


def _write_job(path: Path, job: dict[str, Any], record: dict[str, Any], complete: bool) -> None:
    write_bytes(path, (json.dumps({"job": job, "record": record, "complete": complete}, sort_keys=True, indent=1)
                       + "\n").encode())


def export_preshuffled(order: Any, out: str | os.PathLike, steps: tuple[int, int] | None = None,
                       progress: bool = True) -> dict[str, Any]:
    """Write the rows of ``steps`` as a preshuffled store ``out.bin/.idx`` (module docstring); returns its record."""
    t0 = time.perf_counter()
    lo, hi = export_range(order, steps)
    prefix = strip_prefix(out)
    if os.path.abspath(prefix) in {os.path.abspath(p) for p in order.store.prefixes}:
        raise ConfigError(f"out {prefix}: is the store being read; pass another prefix")
    paths = {"bin": data_file_path(prefix), "idx": index_file_path(prefix)}
    job_path = files.export_record_path(prefix)
    job = _job(order, "preshuffled", lo, hi)
    record = {"out": prefix, **_record(order, lo, hi), "files": {k: str(v) for k, v in paths.items()}}
    existing = [p for p in (*paths.values(), job_path) if os.path.lexists(p)]
    if existing:
        old = None
        if job_path.is_file():
            try:
                old = read_json(job_path)
            except FormatError:
                old = None
        if not (isinstance(old, dict) and old.get("job") == job):
            raise ConfigError(f"out {prefix}: {', '.join(str(p) for p in existing)} already exist and are not this "
                              f"export; delete them or pass another prefix")
        if old.get("complete") is True and all(p.is_file() for p in paths.values()):
            log.info("%s: already exported (%s); nothing to do", prefix, job_path)
            return {**record, "skipped": True, "seconds": round(time.perf_counter() - t0, 3)}
        log.info("%s: an earlier run of this export did not finish; writing it again", prefix)
    _write_job(job_path, job, record, complete=False)  # claims OUT before its files appear
    bs = int(order.batch_size)
    k0, k1 = lo * bs, hi * bs
    chunk = _chunk_rows(order)
    bar = progress_bar(total=k1 - k0, desc="export preshuffled", unit="row", enabled=progress, unit_scale=True)
    try:
        with IndexedDatasetWriter(prefix, order.store.dtype) as w:
            for c0 in range(k0, k1, chunk):
                c1 = min(k1, c0 + chunk)
                w.add_rows(order.rows(np.arange(c0, c1, dtype=np.int64)))
                bar.update(c1 - c0)
    finally:
        bar.close()
    _write_job(job_path, job, record, complete=True)
    return {**record, "skipped": False, "seconds": round(time.perf_counter() - t0, 3)}


# ---------------------------------------------------------------------------------------------- parquet


def parquet_schema(order: Any, with_names: bool) -> pa.Schema:
    fields = [("uid", pa.int64()), ("step", pa.int64()), ("slot", pa.int64()), ("batch_idx", pa.int64()),
              ("input_ids", token_list_type(order.store.dtype))]
    if not order.preshuffled:
        fields.append(("doc_ids", pa.list_(pa.int64())))
        if with_names:
            fields.append(("pile_set_names", pa.list_(pa.string())))
    return pa.schema(fields)


def rows_table(order: Any, ks: np.ndarray, documents: Any = None) -> pa.Table:
    """The export columns of sample indices ``ks`` (module docstring), one table row per sample."""
    ks = np.asarray(ks, dtype=np.int64)
    steps, slots = order.step_slot(ks)
    cols: dict[str, pa.Array] = {"uid": pa.array(ks), "step": pa.array(steps), "slot": pa.array(slots),
                                 "batch_idx": pa.array(steps), "input_ids": input_ids_array(order.rows(ks))}
    if not order.preshuffled:
        p = order.row_pieces(ks)
        offsets = pa.array(np.searchsorted(p["row"], np.arange(ks.size + 1)).astype(np.int32))
        cols["doc_ids"] = pa.ListArray.from_arrays(offsets, pa.array(p["doc_id"], pa.int64()))
        if documents is not None:
            wanted = np.unique(p["doc_id"])
            meta = documents.rows(wanted.tolist())
            names = np.array([meta.get(int(d), {}).get("pile_set_name") for d in wanted], dtype=object)
            per_piece = names[np.searchsorted(wanted, p["doc_id"])] if wanted.size else names
            cols["pile_set_names"] = pa.ListArray.from_arrays(offsets, pa.array(per_piece.tolist(), pa.string()))
    return pa.table(cols, schema=parquet_schema(order, documents is not None))


parquet_file_name = files.parquet_file_name


def export_parquet(order: Any, out_dir: str | os.PathLike, steps: tuple[int, int] | None = None,
                   rows_per_file: int | None = None, documents: Any = None, progress: bool = True,
                   restart: bool = False) -> dict[str, Any]:
    """Write the rows of ``steps`` as Parquet files under ``out_dir`` (module docstring), resumable; returns
    the export's record with the files written and skipped."""
    t0 = time.perf_counter()
    lo, hi = export_range(order, steps)
    bs = int(order.batch_size)
    per_file = FILE_STEPS * bs if rows_per_file is None else rows_per_file
    if isinstance(per_file, bool) or not isinstance(per_file, (int, np.integer)) or per_file < 1:
        raise ConfigError(f"rows_per_file: expected a positive row count, found {per_file!r}")
    per_file = int(per_file)
    k0, k1 = lo * bs, hi * bs
    starts = list(range(k0, k1, per_file))
    out = Path(out_dir)
    job = _job(order, "parquet", lo, hi, rows_per_file=per_file, pile_set_names=documents is not None)
    claim_folder(out, job, job_name=EXPORT_JOB, restart=restart, what="Parquet export", units="files",
                 fix="delete the folder (or pass restart) to export again, or pass another out folder")
    schema = parquet_schema(order, documents is not None)
    chunk = _chunk_rows(order)
    files, written, skipped, done = [], 0, 0, 0
    todo = []
    for i, f0 in enumerate(starts):
        f1 = min(k1, f0 + per_file)
        path = out / parquet_file_name(i, len(starts))
        files.append(str(path))
        if path.is_file():
            try:
                rows = pq.ParquetFile(path).metadata.num_rows
            except (OSError, pa.ArrowException) as e:
                raise FormatError(f"{path}: not a readable Parquet file ({e}); delete it and rerun to write it "
                                  f"again") from e
            if rows != f1 - f0:
                raise FormatError(f"{path}: holds {rows:,} rows, expected {f1 - f0:,}; delete it and rerun")
            skipped += 1
            done += f1 - f0
        else:
            todo.append((path, f0, f1))
    bar = progress_bar(total=k1 - k0, initial=done, desc="export parquet", unit="row", enabled=progress,
                       unit_scale=True)
    try:
        for path, f0, f1 in todo:
            with atomic_path(path) as tmp:
                with pq.ParquetWriter(tmp, schema) as w:
                    for c0 in range(f0, f1, chunk):
                        c1 = min(f1, c0 + chunk)
                        w.write_table(rows_table(order, np.arange(c0, c1, dtype=np.int64), documents),
                                      row_group_size=chunk)
                        bar.update(c1 - c0)
            written += 1
    finally:
        bar.close()
    return {"out": str(out), **_record(order, lo, hi), "rows_per_file": per_file, "files": files,
            "written": written, "skipped": skipped, "columns": schema.names,
            "seconds": round(time.perf_counter() - t0, 3)}
