"""What the service holds while it runs: the store, its document table, tokenizer, order and datasets, opened
read-only once before the service starts (never at import)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from tokenizers import Tokenizer

from pile_index.datasets import DatasetQuery
from pile_index.errors import ConfigError, FormatError
from pile_index.format import TokenStore, load_tokenizer
from pile_index.order import Order, open_order, order_config
from pile_index.sql import DocumentTable, documents_for

from .settings import Settings

log = logging.getLogger(__name__)


@dataclass
class AppState:
    settings: Settings
    store: TokenStore
    documents: DocumentTable | None = None
    tokenizer: Tokenizer | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    ngram: Any = None  # the n-gram index (pile_index.ngram.NgramIndex), opened on first use by api/routers/ngrams.py
    _order_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def order(self) -> Order:
        """The training order over the store, opened on first use from the order settings (index maps
        memmapped read-only; never built here: `pile-index order build` does that)."""
        with self._order_lock:
            if "order" not in self.cache:
                s = self.settings
                cfg = order_config(s.order_preset, seed=s.seed, seq_length=s.seq_length, num_samples=s.num_samples,
                                   name=s.name, batch_size=s.batch_size, train_steps=s.train_steps,
                                   preshuffled_items=len(self.store) if s.preshuffled else None)
                self.cache["order"] = open_order(self.store, cfg, preshuffled=s.preshuffled)
            return self.cache["order"]


ORDER_SETTINGS = ("order_preset", "seed", "seq_length", "num_samples", "name", "batch_size", "train_steps")


def open_state(settings: Settings) -> AppState:
    """Open and check everything ``settings`` names, so a bad input fails the start, not every request: the
    store (``prefixes``), its documents table, the tokenizer, the training order (index maps memmapped and
    range-checked) when any order setting is given, and every dataset folder."""
    if not settings.prefixes:
        raise ConfigError("Settings.prefixes is empty; pass at least one PREFIX to `pile-index serve`")
    store = TokenStore(settings.prefixes)
    documents = documents_for(store)
    tokenizer = load_tokenizer(settings.tokenizer) if settings.tokenizer else None
    state = AppState(settings=settings, store=store, documents=documents, tokenizer=tokenizer)
    if settings.preshuffled or any(getattr(settings, k) is not None for k in ORDER_SETTINGS):
        _ = state.order  # opened now: missing index maps or a bad option are a start-up error
    state.cache["datasets"] = open_datasets(settings.datasets)
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
