"""Shared request-parameter types: exactly what the schema says, nothing looser.

- Every integer a client sends is bounded, so an out-of-range value is a 422 naming the parameter, never an
  overflow deep inside numpy (found by the schema fuzzer).
- An integer in a path or query string is ASCII digits with an optional leading ``-`` (``ASCII_INT``):
  pydantic's lax parsing would also take ``1_000``, ``+1``, `` 1`` (and Python's ``int`` Arabic-Indic or
  full-width digits). Put ``ASCII_INT`` after the ``Path``/``Query`` marker (before it, FastAPI drops the
  bounds from the OpenAPI schema).
- Integers in JSON bodies are ``StrictInt`` (``false``, ``"0"`` and ``0.0`` are not 0) and strings are
  ``Text``: valid Unicode, so a lone surrogate (``"\\ud800"``, or raw ``\\xed\\xa0\\x80`` bytes, which
  Python's JSON reader lets through) is a 422 naming the field, not a failure deep in a tokenizer.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

from fastapi import Path
from pydantic import AfterValidator, BeforeValidator

from .errors import error_response

MAX_INT = 2**62  # far above any step, slot, sample index, document id or offset of a real store

_ASCII_INT = re.compile(r"-?[0-9]{1,40}")  # 40 digits: far past MAX_INT, short of int()'s digit limit


def _ascii_int(value: Any) -> Any:
    if isinstance(value, str) and not _ASCII_INT.fullmatch(value):
        raise ValueError("expected an integer written with ASCII digits 0-9 and an optional leading '-'")
    return value


def _valid_unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"character {e.start:,} is a lone surrogate (U+{ord(value[e.start]):04X}); "
                         f"expected valid Unicode text") from None
    return value


ASCII_INT = BeforeValidator(_ascii_int)

Id = Annotated[int, Path(ge=0, le=MAX_INT, description="a non-negative integer"), ASCII_INT]

Text = Annotated[str, AfterValidator(_valid_unicode)]


class StrictURL:
    """Pure ASGI middleware: a path or query string that is not valid UTF-8 once percent-decoded is a 422.
    (Starlette and uvicorn decode with ``errors="replace"``: ``?text=%ED%A0%80`` would silently become
    three U+FFFD characters and be counted as such.)"""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            for part, raw in (("path", scope.get("raw_path") or b""), ("query", scope.get("query_string") or b"")):
                try:
                    unquote_to_bytes(raw).decode("utf-8")
                except UnicodeDecodeError as e:
                    response = error_response(422, "invalid_request", f"{part}: byte {e.start:,} after percent-decoding "
                                              f"is not valid UTF-8; percent-encode the UTF-8 bytes of the text")
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
