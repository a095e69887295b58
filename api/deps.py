"""The FastAPI dependencies routes take their shared state through: ``corpus: CorpusDep`` (the served
:class:`~pile_index.corpus.Corpus`), ``settings: SettingsDep`` (the named limits), ``state: StateDep`` (the
caches and datasets). The explorer calls route handlers in-process and passes the same objects
(``corpus_of(request)`` ...)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from pile_index import Corpus

from .settings import Settings
from .state import AppState


async def get_state(request: Request) -> AppState:
    return request.app.state.pi


async def get_corpus(request: Request) -> Corpus:
    return request.app.state.pi.corpus


async def get_settings(request: Request) -> Settings:
    return request.app.state.pi.settings


StateDep = Annotated[AppState, Depends(get_state)]
CorpusDep = Annotated[Corpus, Depends(get_corpus)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
