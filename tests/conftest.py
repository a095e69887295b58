"""Shared fixtures: tiny stores built in code, the real tokenizer when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REAL_TOKENIZER = Path(
    os.environ.get("PILE_INDEX_TOKENIZER", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "20B_tokenizer.json")
)


@pytest.fixture(scope="session")
def real_tokenizer_path() -> Path:
    if not REAL_TOKENIZER.is_file():
        pytest.skip(f"the real GPT-NeoX-20B tokenizer is not at {REAL_TOKENIZER}; set PILE_INDEX_TOKENIZER")
    return REAL_TOKENIZER


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: torch's thread pool costs more than it gives (10-40x slower on a busy 2-core box)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


FUZZ_FULL_ENV = "PILE_INDEX_FUZZ_FULL"


@pytest.fixture(scope="session")
def fuzz_count():
    """``fuzz_count(full)``: the number of mutations a fuzz test runs. ``PILE_INDEX_FUZZ_FULL=1`` runs ``full``
    (the README's counts); by default a quarter, the first quarter of the same seeded sequence."""
    full_run = os.environ.get(FUZZ_FULL_ENV) == "1"
    return lambda full: full if full_run else full // 4
