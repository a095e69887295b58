"""What the service holds while it runs: its settings, one :class:`~pile_index.corpus.Corpus` (store,
documents table, tokenizer, order, n-gram index) and the datasets, opened read-only once before the service
starts (never at import) and closed by the lifespan. Routes reach them through the dependencies of
``api/deps.py``."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from pile_index import Corpus
from pile_index.datasets import DatasetQuery
from pile_index.errors import ConfigError, FormatError
from pile_index.settings import BY_NAME
from pile_index.sql import SqlSandboxes

from .settings import Settings

log = logging.getLogger(__name__)


class SettingLimits(Mapping):
    """The limits of the core's table as the service's settings hold them now (a live view: the corpus reads
    each limit when it checks it)."""

    def __init__(self, settings: Settings):
        self._settings = settings

    def __getitem__(self, name: str) -> Any:
        if name not in BY_NAME:
            raise KeyError(name)
        return getattr(self._settings, name)

    def __iter__(self) -> Iterator[str]:
        return iter(BY_NAME)

    def __len__(self) -> int:
        return len(BY_NAME)


@dataclass
class AppState:
    """The service's settings, its :class:`Corpus`, the caches of answers computed once per service, the SQL
    sandboxes (a locked DuckDB database reused by every query) and the limiter of the SQL worker threads
    (``sql_workers``; made by the lifespan, in the event loop)."""

    settings: Settings
    corpus: Corpus
    cache: dict[str, Any] = field(default_factory=dict)
    sql: SqlSandboxes = field(default_factory=SqlSandboxes)
    sql_limiter: Any = None

    def close(self) -> None:
        self.sql.close()
        self.corpus.close()


def open_state(settings: Settings) -> AppState:
    """Open and check everything ``settings`` names, so a bad input fails the start, not every request: the
    store (``prefixes``), its documents table (its columns read into memory once), the tokenizer, the training
    order (index maps memmapped and range-checked) when any order setting is given, and every dataset folder."""
    if not settings.prefixes:
        raise ConfigError("Settings.prefixes is empty; pass at least one PREFIX to `pile-index serve`")
    opts = settings.order_options()
    corpus = Corpus.open(settings.prefixes, order=opts.spec(), tokenizer=settings.tokenizer,
                         preshuffled=opts.preshuffled, store_tokenizer=False,
                         limits=SettingLimits(settings),
                         missing_tokenizer="the service has no tokenizer: start it with --tokenizer, or query with "
                                           "tokens")
    state = AppState(settings=settings, corpus=corpus)
    try:
        _ = corpus.documents, corpus.tokenizer
        if corpus.documents is not None:
            corpus.documents.load()  # metadata look-ups from arrays, not a DuckDB query per request
        if opts.given:
            _ = corpus.order  # opened now: missing index maps or a bad option are a start-up error
        state.cache["datasets"] = open_datasets(settings.datasets)
    except BaseException:
        corpus.close()
        raise
    store = corpus.store
    log.info("opened %s: %s items, %s tokens", store.prefix, f"{len(store):,}", f"{store.n_tokens:,}")
    return state


def open_datasets(folders: list[str]) -> dict[str, DatasetQuery]:
    """Dataset name (the folder's base name) -> its query object; two folders of one name are refused."""
    out: dict[str, DatasetQuery] = {}
    for d in folders:
        name = Path(d).name
        if name in out:
            raise ConfigError(f"datasets: {d} and {out[name].folder} are both named {name!r} (datasets are served "
                              f"by folder name); rename one folder")
        try:
            out[name] = DatasetQuery(Path(d))
        except duckdb.Error as e:
            raise FormatError(f"{d}: not a readable dataset folder ({e}); rebuild it with `pile-index dataset build`") from e
    return out
