"""What the service holds while it runs: the store, its document table and tokenizer, opened read-only
once in the lifespan (never at import)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from tokenizers import Tokenizer

from pile_index.docstore import DocumentTable
from pile_index.errors import ConfigError
from pile_index.order import order_config
from pile_index.provenance import Order, open_order
from pile_index.store import TokenStore
from pile_index.tokenizer import load_tokenizer

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


def open_state(settings: Settings) -> AppState:
    """Open the store named by ``settings.prefixes`` (and its documents table and tokenizer if present)."""
    if not settings.prefixes:
        raise ConfigError("Settings.prefixes is empty; pass at least one PREFIX to `pile-index serve`")
    store = TokenStore(settings.prefixes)
    documents = DocumentTable(store.documents_path()) if store.documents_path().is_file() else None
    tokenizer = load_tokenizer(settings.tokenizer) if settings.tokenizer else None
    log.info("opened %s: %s items, %s tokens", store.prefix, f"{len(store):,}", f"{store.n_tokens:,}")
    return AppState(settings=settings, store=store, documents=documents, tokenizer=tokenizer)
