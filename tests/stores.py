"""Tiny stores the tests build in code: one helper so the fixtures that need "a store of these document sizes"
all make the same bytes."""

from __future__ import annotations

import numpy as np

from pile_index import write_indexed


def sized_store(prefix: str, sizes: list[int], seed: int = 9) -> str:
    """A uint16 store at ``prefix`` with one document per size, tokens drawn uniformly from 2..49,999."""
    rng = np.random.default_rng(seed)
    write_indexed(prefix, [rng.integers(2, 50000, n).astype(np.uint16) for n in sizes], np.uint16)
    return prefix
