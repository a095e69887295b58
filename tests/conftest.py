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
