"""Shared request-parameter types: every integer a client sends is bounded, so an out-of-range value is a
422 naming the parameter, never an overflow deep inside numpy (found by the schema fuzzer)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

MAX_INT = 2**62  # far above any step, slot, sample index, document id or offset of a real store

Id = Annotated[int, Path(ge=0, le=MAX_INT, description="a non-negative integer")]
