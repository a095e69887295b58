"""The Pythia data repositories on the Hugging Face hub: what each holds, its layout, size and next command.

One table, read by ``pile-index fetch`` (what it prints after a download, ``--list``) and by the README's
walkthrough. Figures come from the formats: a preshuffled row is 2,049 uint16 tokens (4,098 bytes) and
training read 143,000 steps x 1,024 rows; the raw idxmaps are 83 shards of at most 5,000,000,000 bytes;
``the_pile_deduplicated``'s row count and download size are its dataset card's (``dataset_infos.json``).
Where a figure is approximate the entry says so; the exact counts are read from the files after a fetch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

ROW_TOKENS = 2049
"""Tokens in one Pythia training row (seq_length 2048 + 1)."""
TRAINED_ROWS = 143_000 * 1024
"""Rows training read: 143,000 steps x 1,024 rows."""


class Layout(StrEnum):
    PRESHUFFLED = "preshuffled"  # item k = training row k (2,049 tokens); document identity gone
    RAW = "raw"                  # item i = document i; the order needs the index maps (`order build`)
    TEXT = "text"                # untokenized text (Parquet): a source for `attach`


@dataclass(frozen=True)
class HubDataset:
    """One dataset repository on the hub."""

    repo_id: str
    """``Org/name`` on the hub (a dataset repository)"""
    holds: str
    """what the files are, in a few words"""
    layout: Layout
    """preshuffled rows, raw documents or text"""
    tokens: int | None
    """tokens it holds (None: untokenized); approximate when ``approx``"""
    disk_bytes: int
    """bytes of the download; the joined store takes as much again"""
    approx: bool
    """``tokens`` and ``disk_bytes`` are estimates (preshuffled: the trained rows, the files may hold a few more;
    idxmaps: ~207B tokens, 83 shards of at most 5 GB); the files give the exact counts"""
    files: str
    """the file names, as a pattern"""
    hashes: str | None
    """the hash list the repository ships, if any (``filename sha256`` lines)"""
    preset: str | None
    """the order options that apply to its store"""
    next_command: str
    """what to run after the fetch; {prefix} is the joined store, {dir} the folder of its files"""


def _preshuffled(repo_id: str, holds: str) -> HubDataset:
    """A preshuffled repository: the trained rows as 21 uint16 shards, read with the pythia preset."""
    return HubDataset(
        repo_id=repo_id, holds=holds,
        layout=Layout.PRESHUFFLED, tokens=TRAINED_ROWS * ROW_TOKENS, disk_bytes=TRAINED_ROWS * ROW_TOKENS * 2,
        approx=True, files="document-000NN-of-00020.bin (21 shards) + document.idx", hashes=None,
        preset="--preshuffled --preset pythia",
        next_command="pile-index sample {prefix} --preshuffled --preset pythia --step 1000 --slot 0 --json",
    )


CATALOGUE: tuple[HubDataset, ...] = (
    _preshuffled("EleutherAI/pile-deduped-pythia-preshuffled",
                 "training rows of the -deduped models (deduplicated Pile, ~1.5 epochs), in training order"),
    _preshuffled("EleutherAI/pile-standard-pythia-preshuffled",
                 "training rows of the standard models (the Pile, 1 epoch), in training order"),
    HubDataset(
        repo_id="EleutherAI/pythia_deduped_pile_idxmaps",
        holds="the deduplicated Pile tokenized, one item per document, in GPT-NeoX's input order",
        layout=Layout.RAW, tokens=207_000_000_000, disk_bytes=83 * 5_000_000_000, approx=True,
        files="pile_0.87_deduped_text_document-000NN-of-00082.bin (83 shards) + .idx + shard_hashes.txt",
        hashes="shard_hashes.txt", preset="--preset pythia",
        next_command="pile-index order build {prefix} --preset pythia",
    ),
    HubDataset(
        repo_id="EleutherAI/the_pile_deduplicated",
        holds="the deduplicated Pile's text, 134,318,121 rows, a `text` column only (no pile_set_name)",
        layout=Layout.TEXT, tokens=None, disk_bytes=451_079_111_579, approx=False,
        files="data/*.parquet", hashes=None, preset=None,
        next_command="pile-index attach RAW_PREFIX --from {dir} --tokenizer 20B_tokenizer.json",
    ),
)


def known(repo_id: str) -> HubDataset | None:
    """The catalogue entry of ``repo_id`` (exact spelling), or None."""
    return next((d for d in CATALOGUE if d.repo_id == repo_id), None)


def catalogue_records() -> list[dict[str, Any]]:
    """The catalogue as plain records (``fetch --list --json``)."""
    return [{**asdict(d), "layout": str(d.layout)} for d in CATALOGUE]
