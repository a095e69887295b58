"""``/v1/corpus``: what the service serves, and ``/v1/settings``: its named limits."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Response
from pydantic import BaseModel

from pile_index.corpus import CorpusInfo

from ..deps import CorpusDep, SettingsDep
from ..schemas import json_response

router = APIRouter(prefix="/v1", tags=["corpus"])


class SettingValue(BaseModel):
    name: str
    value: int | float | str | bool | list[str] | None
    help: str


@router.get("/corpus", response_model=CorpusInfo, summary="Counts and token facts of the served store")
def get_corpus(corpus: CorpusDep) -> Response:
    # Token statistics come from the stats cache (`pile-index info` writes it); never a full scan per request.
    return json_response(corpus.info())


@router.get("/settings", response_model=list[SettingValue], summary="The service's named limits and options")
def get_settings(settings: SettingsDep) -> list[SettingValue]:
    values = asdict(settings)
    helps = type(settings).describe()
    return [SettingValue(name=k, value=v, help=helps.get(k, "")) for k, v in values.items()]
