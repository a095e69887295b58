"""Scoring training rows at one or many checkpoints, into resumable Parquet.

Two layers:

- :func:`score_rows` (compute): a loaded model and an array of rows (n, seq_length + 1) in, a dict of numpy
  columns out (per-row loss, entropy, accuracy, memorized, memorization_score; per-token nll, rank, entropy
  when asked). A caller that scores many checkpoints over the same rows reads the rows once and calls it per
  model (the "datasets" use).
- :func:`score_to_parquet` (job): (model, revisions) x rows into one Parquet file. The work is cut into parts
  per (revision, chunk of rows), each written atomically under ``OUT.parts/`` and listed in
  ``OUT.parts/manifest.json``; a rerun with the same job skips finished parts, and the final file is the
  parts concatenated in (revision, chunk) order, byte-identical across reruns. A job whose options differ
  from the manifest's is refused rather than mixed. Every revision still to score is resolved before the
  first is scored, so a missing one stops the job before any work, named with the present ones.

Dtype is chosen in one place (:func:`pick_dtype`): fp32 on CPU (what the tests run; bf16 matmuls are slow on
most CPUs), bf16 on CUDA (fp16 where bf16 is missing); softmax statistics are fp32 either way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from .. import files
from ..atomic import atomic_path
from ..errors import ConfigError, FormatError
from ..jobs import JobRecord
from .checkpoint import Checkpoint, DuplicateWeights, load_model, resolve_checkpoint, resolve_revisions
from .metrics import (MEM_CONTINUATION, MEM_PREFIX, memorization_score, memorized_one_pass, row_means,
                      token_metrics)
from .model import GPTNeoX, GPTNeoXConfig

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ScoreOptions:
    """What to compute for each row, and how much of it at once."""

    per_token: bool = False
    """add per-token list columns token_nll, token_rank, token_entropy"""
    memorization_score: bool = True
    """run greedy decoding for memorization_score (32 + 31 extra token steps per row)"""
    ban_eod: bool = False
    """forbid token ``eod_id`` during greedy decoding, as Biderman et al.'s min-length setting did"""
    eod_id: int = 0
    """the end-of-document token (0 for the GPT-NeoX-20B tokenizer)"""
    batch_size: int | None = None
    """rows per forward pass; None = sized to the device's memory"""
    logits_chunk_elems: int | None = None
    """fp32 logits held at once; None = 2**23 on CPU (32 MiB, the only logits buffer there: 83 positions of
    2 rows at a 50,304 vocabulary; 2**23, 2**24 and 2**25 scored 2 x 2,048 tokens in the same time within
    noise at 70m and 410m through oneDNN, 3 alternating rounds), 2**27 on CUDA (512 MiB)"""
    decode_batch_size: int = 64
    """rows decoded together for memorization_score (each step reads all weights once per batch)"""

    def validate(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size}: expected a positive number of rows")
        if self.logits_chunk_elems is not None and self.logits_chunk_elems < 1:
            raise ConfigError(f"logits_chunk_elems={self.logits_chunk_elems}: expected a positive count")
        if self.decode_batch_size < 1:
            raise ConfigError(f"decode_batch_size={self.decode_batch_size}: expected a positive number of rows")
        if self.eod_id < 0:
            raise ConfigError(f"eod_id={self.eod_id}: expected a token id >= 0")


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` = CUDA when present, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"`device` {device}: this torch build sees no CUDA device; use `device` cpu")
    return dev


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """The compute dtype, decided here only. CPU: fp32 (exact comparisons with transformers; CPU bf16
    matmuls are emulated on most x86 parts). CUDA: bf16, which keeps fp32's range (fp16 attention scores
    and residuals overflow on small Pythia models, giving NaN losses); fp16 only where bf16 is missing."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is not None:
        if dtype not in _DTYPES:
            raise ConfigError(f"`dtype` {dtype!r}: expected one of {sorted(_DTYPES)}")
        return _DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def auto_batch_size(cfg: GPTNeoXConfig, seq_length: int, device: torch.device, dtype: torch.dtype,
                    logits_chunk_elems: int) -> int:
    """Rows per forward that fit the device: activations of one layer at a time, about
    T * (12 d + 2 ff) elements per row (residual, norms, qkv, rotated q/k, attention output, MLP),
    x1.5 for allocator slack, within 60% of free CUDA memory or 1 GiB on CPU (more does not speed a CPU up)."""
    elt = torch.finfo(dtype).bits // 8
    per_row = int(seq_length * (12 * cfg.hidden_size + 2 * cfg.intermediate_size) * elt * 1.5)
    fixed = 3 * logits_chunk_elems * 4  # logits, exp buffer, comparison mask
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget, cap = int(free * 0.6), 256
    else:
        budget, cap = 1 << 30, 16
    return int(max(1, min(cap, (budget - fixed) // max(per_row, 1))))


def _model_device(model: GPTNeoX) -> torch.device:
    return next(model.parameters()).device


def score_rows(model: GPTNeoX, rows: np.ndarray | torch.Tensor, options: ScoreOptions = ScoreOptions(),
               *, progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray | None]:
    """Score ``rows`` (n, seq_length + 1) under ``model``. Returns numpy columns of length n:
    loss, entropy, accuracy (fp64); memorized (bool) and memorization_score (fp64), None when rows are
    shorter than 64 tokens (or memorization_score when not asked); with ``per_token``, token_nll (fp32),
    token_rank (int32) and token_entropy (fp32), each (n, seq_length). ``progress(k)`` after each batch."""
    options.validate()
    if isinstance(rows, torch.Tensor):
        rows = rows.cpu().numpy()
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] < 2:
        raise ConfigError(f"rows of shape {list(rows.shape)}: expected (n, seq_length + 1) with seq_length >= 1")
    if rows.size and (int(rows.min()) < 0 or int(rows.max()) >= model.config.vocab_size):
        raise ConfigError(
            f"rows hold token ids in [{int(rows.min()):,}, {int(rows.max()):,}], outside the model's "
            f"vocabulary [0, {model.config.vocab_size:,}): wrong store or tokenizer for this model"
        )
    n, L1 = rows.shape
    T = L1 - 1
    device = _model_device(model)
    dtype = model.compute_dtype
    chunk = options.logits_chunk_elems or (1 << 27 if device.type == "cuda" else 1 << 23)
    bs = options.batch_size or auto_batch_size(model.config, T, device, dtype, chunk)
    has_mem = L1 >= MEM_PREFIX + MEM_CONTINUATION
    window = (MEM_PREFIX - 1, MEM_PREFIX - 1 + MEM_CONTINUATION) if has_mem else None
    out: dict[str, np.ndarray | None] = {
        "loss": np.empty(n, np.float64), "entropy": np.empty(n, np.float64), "accuracy": np.empty(n, np.float64),
        "memorized": np.empty(n, np.bool_) if has_mem else None,
        "memorization_score": np.empty(n, np.float64) if has_mem and options.memorization_score else None,
    }
    if options.per_token:
        out["token_nll"] = np.empty((n, T), np.float32)
        out["token_rank"] = np.empty((n, T), np.int32)
        out["token_entropy"] = np.empty((n, T), np.float32)
    ban = options.eod_id if options.ban_eod else None
    for i in range(0, n, bs):
        j = min(n, i + bs)
        batch = torch.from_numpy(rows[i:j].astype(np.int64)).to(device)
        tm = token_metrics(model, batch, logits_chunk_elems=chunk, argmax_window=window, with_rank=options.per_token)
        for k, v in row_means(tm).items():
            out[k][i:j] = v.cpu().numpy()
        if has_mem:
            out["memorized"][i:j] = memorized_one_pass(tm.window_argmax, batch).cpu().numpy()
        if options.per_token:
            out["token_nll"][i:j] = tm.nll.cpu().numpy()
            out["token_rank"][i:j] = tm.rank.cpu().numpy()
            out["token_entropy"][i:j] = tm.entropy.cpu().numpy()
        del tm
        if progress is not None:
            progress(j - i)
    if out["memorization_score"] is not None:
        # greedy decoding touches only 64 positions per row: batch many rows so each step reads the weights once
        mb = max(bs, options.decode_batch_size)
        for i in range(0, n, mb):
            j = min(n, i + mb)
            prefix = torch.from_numpy(rows[i:j, : MEM_PREFIX + MEM_CONTINUATION].astype(np.int64)).to(device)
            out["memorization_score"][i:j] = memorization_score(model, prefix, ban_token=ban).cpu().numpy()
    return out


def _list_column(a: np.ndarray, value_type: pa.DataType) -> pa.Array:
    n, t = a.shape
    offsets = pa.array(np.arange(0, (n + 1) * t, t, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(a.reshape(-1), type=value_type))


def result_schema(per_token: bool) -> pa.Schema:
    fields = [
        ("model", pa.string()), ("revision", pa.string()), ("weights_sha256", pa.string()),
        ("step", pa.int64()), ("slot", pa.int64()), ("sample_index", pa.int64()),
        ("loss", pa.float64()), ("entropy", pa.float64()), ("accuracy", pa.float64()),
        ("memorized", pa.bool_()), ("memorization_score", pa.float64()),
    ]
    if per_token:
        fields += [("token_nll", pa.list_(pa.float32())), ("token_rank", pa.list_(pa.int32())),
                   ("token_entropy", pa.list_(pa.float32()))]
    return pa.schema(fields)


def columns_to_table(cols: dict[str, np.ndarray | None], *, model: str, revision: str | None,
                     weights_sha256: str, steps: np.ndarray, slots: np.ndarray,
                     sample_index: np.ndarray, per_token: bool) -> pa.Table:
    """One Parquet-ready table of :func:`score_rows` output plus the row and checkpoint identity."""
    n = len(sample_index)
    schema = result_schema(per_token)
    arrays = [
        pa.array([model] * n, pa.string()), pa.array([revision] * n, pa.string()),
        pa.array([weights_sha256] * n, pa.string()),
        pa.array(np.asarray(steps, np.int64)), pa.array(np.asarray(slots, np.int64)),
        pa.array(np.asarray(sample_index, np.int64)),
        pa.array(cols["loss"]), pa.array(cols["entropy"]), pa.array(cols["accuracy"]),
        pa.array(cols["memorized"]) if cols["memorized"] is not None else pa.nulls(n, pa.bool_()),
        pa.array(cols["memorization_score"]) if cols["memorization_score"] is not None
        else pa.nulls(n, pa.float64()),
    ]
    if per_token:
        arrays += [_list_column(cols["token_nll"], pa.float32()), _list_column(cols["token_rank"], pa.int32()),
                   _list_column(cols["token_entropy"], pa.float32())]
    return pa.Table.from_arrays(arrays, schema=schema)


# ---------------------------------------------------------------------------------------------- the job


def _rows_sha256(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
    return h.hexdigest()


class _Manifest(JobRecord):
    """``OUT.parts/manifest.json``: the job description, checkpoint records and finished parts
    (:class:`~pile_index.jobs.JobRecord`)."""

    def __init__(self, folder: Path, job: dict):
        super().__init__(folder / files.MANIFEST, job,
                         spec={"version": int, "job": dict, "checkpoints": dict, "parts": dict},
                         empty={"version": MANIFEST_VERSION, "checkpoints": {}}, shown=folder,
                         fix="rerun with the same options, use another `out`, or delete that folder to start over",
                         damaged_fix=f"delete {folder} to start over")


def score_to_parquet(out: str | os.PathLike, *, model: str, revisions: Sequence[str | None],
                     steps: np.ndarray, slots: np.ndarray, sample_index: np.ndarray,
                     read_rows: Callable[[np.ndarray], np.ndarray], options: ScoreOptions = ScoreOptions(),
                     device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                     chunk_rows: int = 1024, job: dict | None = None, allow_download: bool = True,
                     cache_dir: str | os.PathLike | None = None, progress: bool = True,
                     max_cached_row_bytes: int = 1 << 30) -> Path:
    """Score rows ``sample_index`` (with their ``steps``/``slots``) at every revision into ``out``.

    ``read_rows(sample_indices) -> (k, seq_length + 1)`` supplies rows (the training order's ``rows``); they
    are read once for all revisions when they fit in ``max_cached_row_bytes``, else once per revision.
    ``job`` adds caller facts (store fingerprint, order options) to the resume key. Returns ``out``.
    """
    options.validate()
    out = Path(out)
    steps, slots, sample_index = (np.asarray(a, np.int64) for a in (steps, slots, sample_index))
    if not len(sample_index) == len(steps) == len(slots):
        raise ConfigError("steps, slots and sample_index must have the same length")
    if len(sample_index) == 0:
        raise ConfigError("no rows to score: the `steps`/`slots` ranges are empty")
    if not revisions:
        raise ConfigError("no revision to score: give at least one `revision` (or none for the default)")
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows={chunk_rows}: expected a positive number of rows")
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    n = len(sample_index)
    n_chunks = (n + chunk_rows - 1) // chunk_rows
    job_desc = {
        "model": model, "revisions": list(revisions), "n_rows": n,
        "rows_sha256": _rows_sha256(steps, slots, sample_index), "chunk_rows": chunk_rows,
        # batch sizes change how work is cut, not what is computed: not part of the resume key
        "options": {k: v for k, v in asdict(options).items()
                    if k not in ("batch_size", "logits_chunk_elems", "decode_batch_size")},
        "device_type": dev.type, "dtype": str(dt).removeprefix("torch."), **(job or {}),
    }
    parts = files.score_parts_dir(out)
    parts.mkdir(parents=True, exist_ok=True)
    manifest = _Manifest(parts, job_desc)
    names = [[files.score_part_name(ri, ci) for ci in range(n_chunks)] for ri in range(len(revisions))]
    n_done = sum(min(chunk_rows, n - ci * chunk_rows) for ri in range(len(revisions))
                 for ci in range(n_chunks) if manifest.done(names[ri][ci]))
    # every revision still to score is found before the first is scored (missing ones named together)
    pending = [rev for ri, rev in enumerate(revisions) if not all(manifest.done(nm) for nm in names[ri])]
    plan = resolve_revisions(model, pending, allow_download=allow_download, cache_dir=cache_dir)

    from tqdm.contrib.logging import logging_redirect_tqdm

    from ..progress import progress_bar

    bar = progress_bar(total=n * len(revisions), initial=n_done, unit="row", desc="score", enabled=progress)
    cached: np.ndarray | None = None
    tokens_done, busy = 0, 0.0  # tokens scored and seconds spent scoring (loading excluded) in this run
    dups = DuplicateWeights()

    def get_rows(sl: slice) -> np.ndarray:
        # several revisions over the same rows: read every row once when they fit in max_cached_row_bytes
        nonlocal cached
        if cached is not None:
            return cached[sl]
        rows = np.asarray(read_rows(sample_index[sl]))
        if len(revisions) > 1 and n * rows.shape[1] * rows.dtype.itemsize <= max_cached_row_bytes:
            cached = rows if (sl.start == 0 and sl.stop == n) else np.asarray(read_rows(sample_index))
            return cached[sl]
        return rows

    with contextlib.ExitStack() as stack:
        stack.enter_context(logging_redirect_tqdm())  # log lines print above the bar, not through it
        stack.callback(bar.close)  # closed first, then the redirect ends
        for ri, rev in enumerate(revisions):
            key = str(ri)
            todo = [ci for ci in range(n_chunks) if not manifest.done(names[ri][ci])]
            label = f"{model}@{rev}" if rev else model
            if not todo:  # finished earlier: no need to resolve or load it again
                rec = manifest.data["checkpoints"].get(key, {})
                dups.check(label, rec.get("weights_sha256"), rec.get("tensors_sha256"))
                continue
            ckpt: Checkpoint = plan.present.get(rev) or resolve_checkpoint(
                model, rev, allow_download=allow_download, cache_dir=cache_dir)
            rec = ckpt.record()
            old = manifest.data["checkpoints"].get(key)
            if old is not None and old["weights_sha256"] != rec["weights_sha256"]:
                raise ConfigError(
                    f"{label} now resolves to weights {rec['weights_sha256'][:12]} (commit {rec['commit_sha']}) but "
                    f"earlier parts used {old['weights_sha256'][:12]} (commit {old['commit_sha']}): the revision "
                    f"moved; pin it by commit sha or delete {parts} to start over"
                )
            net, tensor_hash = load_model(ckpt, dev, dt, with_tensor_hash=True)
            rec["tensors_sha256"] = tensor_hash
            rec["duplicate_of"] = dups.check(label, rec["weights_sha256"], tensor_hash)
            manifest.data["checkpoints"][key] = rec
            manifest.save()
            log.info("scoring %s (commit %s, weights %s) on %s %s", label, ckpt.commit_sha,
                     rec["weights_sha256"][:12], dev, str(dt).removeprefix("torch."))
            for ci in todo:
                sl = slice(ci * chunk_rows, min(n, (ci + 1) * chunk_rows))
                rows = get_rows(sl)
                if rows.shape[0] != sl.stop - sl.start:
                    raise FormatError(f"read_rows returned {rows.shape[0]:,} rows for {sl.stop - sl.start:,} indices")

                t_call = time.perf_counter()

                def tick(k: int, _t=rows.shape[1] - 1) -> None:
                    nonlocal tokens_done
                    tokens_done += k * _t
                    bar.update(k)
                    rate = tokens_done / max(busy + time.perf_counter() - t_call, 1e-9)
                    bar.set_postfix(tok_s=f"{rate:,.0f}", refresh=False)

                cols = score_rows(net, rows, options, progress=tick)
                busy += time.perf_counter() - t_call
                table = columns_to_table(cols, model=model, revision=rec["revision"],
                                         weights_sha256=rec["weights_sha256"],
                                         steps=steps[sl], slots=slots[sl], sample_index=sample_index[sl],
                                         per_token=options.per_token)
                name = names[ri][ci]
                with atomic_path(parts / name) as tmp:
                    pq.write_table(table, tmp)
                manifest.finish(name, rows=table.num_rows)
            del net

    # stream the parts into the final file (one part in memory at a time; per-token jobs can be large)
    meta = {b"pile_index.score": json.dumps(
        {"job": job_desc, "checkpoints": [manifest.data["checkpoints"].get(str(ri)) for ri in range(len(revisions))]},
        sort_keys=True).encode()}
    schema = result_schema(options.per_token).with_metadata(meta)
    with atomic_path(out) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for per_rev in names:
                for name in per_rev:
                    writer.write_table(pq.read_table(parts / name).cast(schema))
    if dups.duplicates:
        log.warning("identical weights under different revisions: %s",
                    "; ".join(f"{a} == {b}" for a, b in dups.duplicates))
    return out
