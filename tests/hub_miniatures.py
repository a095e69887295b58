"""Miniature hub caches: the layout huggingface_hub writes (``datasets--ORG--NAME/refs/main``,
``snapshots/<sha>/PATH`` relative links into ``blobs/<etag>``), filled with tiny files named as the real
Pythia repositories name theirs. Tests point ``HF_HUB_CACHE`` at one and set ``HF_HUB_OFFLINE=1``, so the real
client resolves it and no network is asked."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ingest.shards import split_shards
from pile_index.format import write_indexed

IDXMAPS = "EleutherAI/pythia_deduped_pile_idxmaps"
IDXMAPS_BASE = "pile_0.87_deduped_text_document"
PRESHUFFLED = "EleutherAI/pile-deduped-pythia-preshuffled"
TEXT = "EleutherAI/the_pile_deduplicated"


def put_repo(cache: Path, repo_id: str, files: dict[str, bytes], revision: str = "main",
             sha: str | None = None) -> str:
    """Write ``files`` (repository path -> bytes) as a cached dataset snapshot; return its commit sha."""
    folder = cache / ("datasets--" + repo_id.replace("/", "--"))
    sha = sha or hashlib.sha1(b"".join(hashlib.sha256(files[k]).digest() + k.encode() for k in sorted(files))).hexdigest()
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / revision).write_text(sha)  # the client writes the sha without a newline
    for rel, data in files.items():
        blob = folder / "blobs" / hashlib.sha256(data).hexdigest()  # LFS files: the etag is the sha256
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = folder / "snapshots" / sha / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    return sha


def sharded(prefix: Path, n_shards: int, hashes: bool) -> dict[str, bytes]:
    """The files of ``prefix``'s store split as Pythia splits it into exactly ``n_shards`` shards (+ the
    ``.idx``, + ``shard_hashes.txt`` in Pythia's ``filename sha256`` order without a final newline)."""
    total = Path(f"{prefix}.bin").stat().st_size
    size = total // (n_shards - 1)
    if total // size + 1 != n_shards or total % size == 0:
        raise ValueError(f"{total:,} bytes cannot be split into {n_shards} shards; make the store larger")
    out = prefix.parent / f"{prefix.name}-shards"
    res = split_shards(prefix, size, out_dir=out, hashes_path=out / "sums" if hashes else None, progress=False)
    files = {Path(p).name: Path(p).read_bytes() for p in res["shards"]}
    files[f"{prefix.name}.idx"] = Path(f"{prefix}.idx").read_bytes()
    if hashes:
        files["shard_hashes.txt"] = (out / "sums").read_bytes().rstrip(b"\n")
    return files


def random_store(path: Path, n_docs: int = 200, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    docs = [rng.integers(2, 50277, size=int(n), dtype=np.uint16) for n in rng.integers(1, 60, size=n_docs)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_indexed(path, docs, np.uint16)
    return path
