"""Response models shared by several routers."""

from __future__ import annotations

from typing import Any

from fastapi import Response
from pydantic import BaseModel


class DocumentMeta(BaseModel):
    """A document's row of the documents table, as the API shows it (``meta`` parsed, ``token_hash`` hex)."""

    source_file: str | None = None
    source_line: int | None = None
    pile_set_name: str | None = None
    meta: Any = None
    n_tokens: int | None = None
    n_bytes: int | None = None
    token_hash: str | None = None


def model_json(model: type[BaseModel], data: dict[str, Any]) -> Response:
    """Validate ``data`` against ``model`` and serialise it in pydantic's Rust encoder.

    For large token lists: FastAPI's default path re-encodes through ``json.dumps``, which measured ~300 us
    for one 2,049-token row against ~125 us for validation plus ``model_dump_json``."""
    return Response(content=model.model_validate(data).model_dump_json(), media_type="application/json")
