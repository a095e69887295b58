"""Response models shared by several routers."""

from __future__ import annotations

from typing import Any

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
