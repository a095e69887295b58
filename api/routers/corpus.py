"""``/v1/corpus``: what the service serves, and ``/v1/settings``: its named limits."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request
from pydantic import BaseModel

from pile_index.format import corpus_info

router = APIRouter(prefix="/v1", tags=["corpus"])


class CorpusInfo(BaseModel):
    prefixes: list[str]
    items: int
    documents: int
    tokens: int
    dtype: str
    flavor: list[str]
    fingerprint: str
    min_token: int | None
    max_token: int | None
    eod_count: int | None
    empty_items: int
    largest_item_tokens: int
    has_documents_table: bool
    has_tokenizer: bool


class SettingValue(BaseModel):
    name: str
    value: int | float | str | bool | list[str] | None
    help: str


@router.get("/corpus", response_model=CorpusInfo, summary="Counts and token facts of the served store")
def get_corpus(request: Request) -> CorpusInfo:
    pi = request.app.state.pi
    info = pi.cache.get("corpus_info")
    if info is None:
        # Token statistics come from the stats cache (`pile-index info` writes it); never a full scan per request.
        info = corpus_info(pi.store, scan=False)
        pi.cache["corpus_info"] = info
    return CorpusInfo(**info, has_documents_table=pi.documents is not None, has_tokenizer=pi.tokenizer is not None)


@router.get("/settings", response_model=list[SettingValue], summary="The service's named limits and options")
def get_settings(request: Request) -> list[SettingValue]:
    values = asdict(request.app.state.pi.settings)
    helps = type(request.app.state.pi.settings).describe()
    return [SettingValue(name=k, value=v, help=helps.get(k, "")) for k, v in values.items()]
