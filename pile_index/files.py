"""Every name the library gives a file beside a store or inside a job's folder, in one place.

A store is ``PREFIX.bin`` + ``PREFIX.idx`` (:mod:`pile_index.format.indexed`); what is derived from it lies
beside it under the same prefix:

- ``PREFIX.documents.parquet`` (the documents table), ``PREFIX.stats.json`` (token statistics cache),
  ``PREFIX.tokenizer.json`` (a byte copy of the tokenizer), ``PREFIX.ingest_report.json`` /
  ``PREFIX.attach_report.json`` (what ingest / attach did), ``PREFIX.export.json`` (a preshuffled export's
  record);
- ``PREFIX.ngram/`` (the n-gram index): ``shard-NNNNN.sa``, ``.sample`` and ``.json`` per shard and
  ``manifest.json``, written last; while a build runs, ``build/shard-NNNNN-parts-AAAAA-BBBBB.run`` (+ ``.json``);
- the index maps under GPT-NeoX's cache names ``{prefix}_{name}_indexmap_{ns}ns_{sl}sl_{seed}s_{kind}.npy``,
  their inverse files (``..._doc_idx_inverse.npy``, ``..._shuffle_idx_inverse.npy``) and the range check's
  marker ``..._checked.json``;
- ``FILE.sha256``: the content digest recorded for FILE (:mod:`pile_index.digests`).

Jobs: a score run's parts under ``OUT.parts/`` (``rNNN-cNNNNNN.parquet``, ``manifest.json``); a dataset
folder's ``rows.parquet``, ``checkpoints.parquet``, ``dataset.parquet``, ``summary/`` and its parts under
``parts/`` (``REV-cNNNNNNN.parquet``, ``REV.checkpoint.json``, ``job.json``); a Parquet export's
``train-NNNNN-of-NNNNN.parquet`` files and ``.export.json``.

This module only names files; it imports nothing of the library, so every module may use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

DIGEST_SUFFIX = ".sha256"
MANIFEST = "manifest.json"  # the completion record of an n-gram index and of a score run's parts
JOB_FILE = "job.json"  # a resumable job folder's record (pile_index.jobs)
EXPORT_JOB = ".export.json"  # the job record inside a Parquet export folder
DATASET_TABLE = "dataset.parquet"
DATASET_ROWS = "rows.parquet"
DATASET_CHECKPOINTS = "checkpoints.parquet"
DATASET_SUMMARY = "summary"
DATASET_PARTS = "parts"


def _beside(prefix: str | os.PathLike, suffix: str) -> Path:
    return Path(f"{os.fspath(prefix)}{suffix}")


# ------------------------------------------------------------------------------------------ beside a store


def _named_beside(suffix: str, what: str) -> Callable[[str | os.PathLike], Path]:
    """The function ``prefix -> PREFIX{suffix}`` that names one file beside a store."""

    def path(prefix: str | os.PathLike) -> Path:
        return _beside(prefix, suffix)

    path.__doc__ = f"``PREFIX{suffix}``: {what}."
    return path


documents_path = _named_beside(".documents.parquet", "the store's documents table")
stats_path = _named_beside(".stats.json", "the store's token statistics cache")
tokenizer_path = _named_beside(".tokenizer.json", "the tokenizer the store was written with, byte for byte")
ingest_report_path = _named_beside(".ingest_report.json", "what the ingest job read, wrote and skipped")
attach_report_path = _named_beside(".attach_report.json", "how attach matched the store's items to documents")
export_record_path = _named_beside(".export.json", "the record of a preshuffled export written to ``PREFIX.bin/.idx``")


def digest_path(path: str | os.PathLike) -> Path:
    """``FILE.sha256``: where the digest record of ``path`` lives."""
    p = Path(path)
    return p.with_name(p.name + DIGEST_SUFFIX)


# ----------------------------------------------------------------------------------------- n-gram index


def ngram_dir(prefix: str | os.PathLike) -> Path:
    """``PREFIX.ngram/``: the n-gram index of the store whose first prefix is ``prefix``."""
    return _beside(prefix, ".ngram")


def ngram_manifest_path(folder: str | os.PathLike) -> Path:
    """``PREFIX.ngram/manifest.json``, written last: the index is complete."""
    return Path(folder) / MANIFEST


def ngram_shard_path(folder: str | os.PathLike, i: int, suffix: str = ".sa") -> Path:
    """``shard-NNNNN.sa`` (the suffix array and item bitmap), ``.sample`` or ``.json`` (built) of shard ``i``."""
    return Path(folder) / f"shard-{i:05}{suffix}"


def ngram_build_dir(folder: str | os.PathLike) -> Path:
    """``PREFIX.ngram/build/``: a bounded build's sorted runs, deleted once every shard is merged."""
    return Path(folder) / "build"


def ngram_run_path(build_dir: str | os.PathLike, i: int, lo: int, hi: int) -> Path:
    """``shard-NNNNN-parts-AAAAA-BBBBB.run``: shard ``i``'s parts [lo, hi) sorted."""
    return Path(build_dir) / f"shard-{i:05}-parts-{lo:05}-{hi:05}.run"


def ngram_run_marker_path(run: str | os.PathLike) -> Path:
    """``RUN.json``: the run file is complete (what it covers and its digest)."""
    p = Path(run)
    return p.with_name(p.name + ".json")


# ------------------------------------------------------------------------------------------- index maps


def index_map_base(prefix: str, name: str, num_samples: int, seq_length: int, seed: int) -> str:
    """GPT-NeoX's cache name without its kind: ``{prefix}_{name}_indexmap_{ns}ns_{sl}sl_{seed}s``."""
    return f"{prefix}_{name}_indexmap_{num_samples}ns_{seq_length}sl_{seed}s"


def index_map_file(base: str, kind: str) -> Path:
    """``{base}_{kind}.npy``: an index map (``doc_idx``, ``sample_idx``, ``shuffle_idx``) or an inverse file
    (``doc_idx_inverse``, ``shuffle_idx_inverse``)."""
    return Path(f"{base}_{kind}.npy")


def index_map_base_of(doc_idx_path: str | os.PathLike) -> str:
    """The cache name shared by a set of maps, from its ``doc_idx`` file's path."""
    return os.fspath(doc_idx_path).removesuffix("_doc_idx.npy")


def checked_marker_file(base: str) -> Path:
    """``{base}_checked.json``: the range check of the maps passed on these files."""
    return Path(f"{base}_checked.json")


# ------------------------------------------------------------------------------------------------- jobs


def score_parts_dir(out: str | os.PathLike) -> Path:
    """``OUT.parts/``: a score run's finished parts and their manifest."""
    return _beside(out, ".parts")


def score_part_name(revision_index: int, chunk_index: int) -> str:
    """``rNNN-cNNNNNN.parquet``: the scores of one (revision, chunk of rows) part."""
    return f"r{revision_index:03d}-c{chunk_index:06d}.parquet"


def dataset_part_path(parts: str | os.PathLike, revision: str, first_row: int) -> Path:
    """``parts/REV-cNNNNNNN.parquet``: one checkpoint's metrics on the chunk of rows starting at ``first_row``."""
    return Path(parts) / f"{revision}-c{first_row:07d}.parquet"


def dataset_checkpoint_record_path(parts: str | os.PathLike, revision: str) -> Path:
    """``parts/REV.checkpoint.json``: the checkpoint a revision resolved to."""
    return Path(parts) / f"{revision}.checkpoint.json"


def parquet_file_name(i: int, n: int) -> str:
    """``train-{i:05}-of-{n:05}.parquet``: sorted names are training order; ``datasets`` reads the split ``train``."""
    return f"train-{i:05d}-of-{n:05d}.parquet"
