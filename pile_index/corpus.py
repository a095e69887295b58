"""What a user means by "the corpus": one token store with its training order, n-gram index, documents table
and tokenizer, opened in one place and closed in one place.

``Corpus.open`` opens (and checks) the store once; everything else opens on first use, once, under a lock
per member, so a service may share one ``Corpus`` between worker threads. CLI commands and API routes ask the
corpus instead of wiring store + order + index + documents themselves::

    with Corpus.open("data/pile_deduped", order=PRESETS["pythia"]) as corpus:
        corpus.order.row(0)                  # the training order (index maps memmapped read-only)
        corpus.ngram.count(ids)              # the n-gram index (PREFIX.ngram/)
        corpus.documents                     # PREFIX.documents.parquet, or None without one
        corpus.tokenizer                     # the one named, else PREFIX.tokenizer.json, else None
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from tokenizers import Tokenizer

from .errors import ConfigError
from .format.store import TokenStore
from .format.tokenizer import load_tokenizer
from .ngram.index import NgramIndex
from .order.index_maps import OrderConfig
from .order.training import Order, open_order
from .sql.docstore import DocumentTable
from .sql.documents import documents_for, tokenizer_for

OrderSpec = OrderConfig | Callable[[TokenStore], OrderConfig]
"""An order's options, or a function of the store giving them (called on first use of the order, so a
service that was started without order options answers every other question and refuses only order ones)."""

_UNSET = object()


class Corpus:
    """A token store and what belongs to it, each member opened on first use (thread-safe) and closed by
    :meth:`close` (or the ``with`` block)."""

    def __init__(self, store: TokenStore, order: OrderSpec | None = None,
                 tokenizer: str | os.PathLike | Tokenizer | None = None, *, preshuffled: bool = False,
                 store_tokenizer: bool = True):
        self.store = store
        self.preshuffled = preshuffled
        self._order_spec = order
        self._tokenizer_spec = tokenizer
        self._store_tokenizer = store_tokenizer
        self._members: dict[str, Any] = {}
        self._locks = {name: threading.Lock() for name in ("order_config", "order", "ngram", "documents", "tokenizer")}
        self._closed = False

    @classmethod
    def open(cls, prefixes: str | os.PathLike | Sequence[str | os.PathLike] | TokenStore,
             order: OrderSpec | None = None, tokenizer: str | os.PathLike | Tokenizer | None = None, *,
             preshuffled: bool = False, store_tokenizer: bool = True) -> Corpus:
        """Open the store of ``prefixes`` (one prefix, or several parts read as one store) and check it.

        ``order``: the training order's options (``OrderConfig``), or a function of the store giving them, or
        None (then :attr:`order` refuses). ``preshuffled``: the store is a preshuffled one (row k = item k).
        ``tokenizer``: a ``tokenizer.json`` path, a hub id or a loaded ``Tokenizer``; when None, the store's
        own ``PREFIX.tokenizer.json`` if it has one (``store_tokenizer=False``: no tokenizer then)."""
        store = prefixes if isinstance(prefixes, TokenStore) else TokenStore(prefixes)
        return cls(store, order, tokenizer, preshuffled=preshuffled, store_tokenizer=store_tokenizer)

    def _member(self, name: str, make: Callable[[], Any]) -> Any:
        got = self._members.get(name, _UNSET)
        if got is not _UNSET:
            return got
        with self._locks[name]:
            if name not in self._members:
                if self._closed:
                    raise ConfigError(f"the corpus over {self.store.prefix} is closed; open it again")
                self._members[name] = make()
            return self._members[name]

    @property
    def has_order(self) -> bool:
        """Whether the corpus was opened with order options (the order itself may still fail to open)."""
        return self._order_spec is not None

    @property
    def order_config(self) -> OrderConfig:
        """The order's options (a function given to :meth:`open` is called here, once)."""
        return self._member("order_config", self._make_order_config)

    def _make_order_config(self) -> OrderConfig:
        spec = self._order_spec
        if spec is None:
            raise ConfigError(f"the corpus over {self.store.prefix} was opened without a training order (order=None); "
                              f"give the order's options: seed, seq_length and num_samples, or a preset")
        return spec if isinstance(spec, OrderConfig) else spec(self.store)

    @property
    def order(self) -> Order:
        """The training order over the store: index maps memmapped read-only and range-checked (never built
        here: ``pile-index order build`` does that), or the preshuffled store's rows."""
        return self._member("order", lambda: open_order(self.store, self.order_config, preshuffled=self.preshuffled))

    @property
    def ngram(self) -> NgramIndex:
        """The store's n-gram index (``PREFIX.ngram/``)."""
        return self._member("ngram", lambda: NgramIndex(self.store))

    @property
    def documents(self) -> DocumentTable | None:
        """The store's documents table (``PREFIX.documents.parquet``), or None when it has none."""
        return self._member("documents", lambda: documents_for(self.store))

    @property
    def tokenizer(self) -> Tokenizer | None:
        """The tokenizer given to :meth:`open`, else the store's own (unless ``store_tokenizer=False``)."""
        return self._member("tokenizer", self._make_tokenizer)

    def _make_tokenizer(self) -> Tokenizer | None:
        spec = self._tokenizer_spec
        if isinstance(spec, Tokenizer):
            return spec
        if spec is not None:
            return load_tokenizer(spec)
        return tokenizer_for(self.store, None) if self._store_tokenizer else None

    def close(self) -> None:
        """Close the documents table's DuckDB connection and forget the opened members; idempotent."""
        with self._locks["documents"]:
            self._closed = True
            docs = self._members.pop("documents", None)
        if docs is not None:
            docs.close()
        self._members.clear()

    def __enter__(self) -> Corpus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        opened = sorted(k for k in self._members if k != "order_config")
        return f"Corpus({self.store.prefix!r}, opened={opened})"
