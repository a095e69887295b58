"""Tiny stores the tests build in code: one helper per kind of fixture ("a store of these document sizes", "random
documents from this generator", "a store and its built training order"), so the fixtures that need one all make
the same bytes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pile_index import TokenStore, write_indexed
from pile_index.order import OrderConfig, TrainingOrder, open_order


def sized_store(prefix: str, sizes: list[int], seed: int = 9) -> str:
    """A uint16 store at ``prefix`` with one document per size, tokens drawn uniformly from 2..49,999."""
    rng = np.random.default_rng(seed)
    write_indexed(prefix, [rng.integers(2, 50000, n).astype(np.uint16) for n in sizes], np.uint16)
    return prefix


def random_store(prefix: str | os.PathLike, rng: np.random.Generator, n_docs: int, vocab: int,
                 max_len: int) -> tuple[TokenStore, list[np.ndarray]]:
    """A uint16 store at ``prefix`` of ``n_docs`` documents drawn from ``rng`` (each of 0..max_len - 1 tokens,
    ids 0..vocab - 1), opened, and its documents."""
    docs = [rng.integers(0, vocab, size=int(rng.integers(0, max_len))).astype(np.uint16) for _ in range(n_docs)]
    write_indexed(prefix, docs, np.uint16)
    return TokenStore(str(prefix)), docs


def ordered_store(folder: Path, sizes: list[int], cfg: OrderConfig) -> tuple[str, TrainingOrder]:
    """``folder/raw``: a :func:`sized_store` and its training order under ``cfg``, built (index maps written)."""
    prefix = sized_store(str(folder / "raw"), sizes)
    return prefix, open_order(prefix, cfg, build=True)
