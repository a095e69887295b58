"""``/v1/corpus``: what the service serves, and ``/v1/settings``: its named limits."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter
from pydantic import BaseModel

from pile_index.format import corpus_info

from ..deps import CorpusDep, SettingsDep, StateDep

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
def get_corpus(corpus: CorpusDep, state: StateDep) -> CorpusInfo:
    info = state.cache.get("corpus_info")
    if info is None:
        # Token statistics come from the stats cache (`pile-index info` writes it); never a full scan per request.
        info = corpus_info(corpus.store, scan=False)
        state.cache["corpus_info"] = info
    return CorpusInfo(**info, has_documents_table=corpus.documents is not None,
                      has_tokenizer=corpus.tokenizer is not None)


@router.get("/settings", response_model=list[SettingValue], summary="The service's named limits and options")
def get_settings(settings: SettingsDep) -> list[SettingValue]:
    values = asdict(settings)
    helps = type(settings).describe()
    return [SettingValue(name=k, value=v, help=helps.get(k, "")) for k, v in values.items()]
