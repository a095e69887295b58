"""What a user means by "the corpus": one token store with its training order, n-gram index, documents table
and tokenizer, opened in one place and closed in one place.

``Corpus.open`` opens (and checks) the store once; everything else opens on first use, once, under a lock
per member, so a service may share one ``Corpus`` between worker threads. CLI commands and API routes ask the
corpus one question each and get a typed answer (the dataclasses of ``order/results.py``,
``ngram/results.py``, ``sql/documents.py``, ``format/stats.py`` and :class:`CorpusInfo`), which the CLI prints
and the API serialises as they are::

    with Corpus.open("data/pile_deduped", order=PRESETS["pythia"]) as corpus:
        corpus.sample(12, 3)                 # Sample: a training row, its document pieces and text
        corpus.steps(tokens="12092,13")      # NgramSteps: when training saw an n-gram
        corpus.order.row(0)                  # the members themselves: the training order (index maps memmapped)
        corpus.ngram, corpus.documents       # the n-gram index (PREFIX.ngram/), PREFIX.documents.parquet or None
        corpus.tokenizer                     # the one named, else PREFIX.tokenizer.json, else None

Limits are the settings of ``pile_index/settings.py``, each checked by the core before the work it bounds:
the values given to :meth:`Corpus.open` (``limits``; None lifts one), else the table's defaults.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from .errors import ConfigError, LimitError, QueryError
from .format.stats import StoreInfo, corpus_info
from .format.store import TokenStore
from .format.tokenizer import load_tokenizer
from .ngram.index import NgramIndex, query_tokens
from .ngram.locate import locate_page
from .ngram.results import NgramCount, NgramCounts, NgramLocate, NgramSteps, NgramTrace
from .ngram.steps import ngram_steps
from .ngram.trace import DEFAULT_MIN_TOKENS, DEFAULT_OCCURRENCES, trace
from .order.index_maps import MAX_EPOCHS, OrderConfig, build_plan, index_map_paths
from .order.results import BatchInfo, DocSteps, OrderBuilt, OrderInfo, OrderStats, OrderVerify, Sample
from .order.training import Order, PreshuffledOrder, TrainingOrder, describe_batch, describe_sample, open_order, verify_orders
from .settings import BY_NAME, default
from .sql.docstore import DocumentTable
from .sql.documents import Document, document_view, documents_for, tokenizer_for

OrderSpec = OrderConfig | Callable[[TokenStore], OrderConfig]
"""An order's options, or a function of the store giving them (called on first use of the order, so a
service that was started without order options answers every other question and refuses only order ones)."""

_UNSET = object()

_MEMBERS = ("order_config", "order", "ngram", "documents", "tokenizer", "info", "order_info")


@dataclass(frozen=True, slots=True)
class CorpusInfo(StoreInfo):
    """``/v1/corpus``: the store's counts and token facts, whether it has a documents table and a tokenizer."""

    has_tokenizer: bool


class Corpus:
    """A token store and what belongs to it, each member opened on first use (thread-safe) and closed by
    :meth:`close` (or the ``with`` block)."""

    def __init__(self, store: TokenStore, order: OrderSpec | None = None,
                 tokenizer: str | os.PathLike | Tokenizer | None = None, *, preshuffled: bool = False,
                 store_tokenizer: bool = True, limits: Mapping[str, int | float | None] | None = None,
                 missing_tokenizer: str | None = None):
        self.store = store
        self.preshuffled = preshuffled
        self._order_spec = order
        self._tokenizer_spec = tokenizer
        self._store_tokenizer = store_tokenizer
        unknown = sorted(set(limits or {}) - set(BY_NAME))
        if unknown:
            raise ConfigError(f"limits: no setting named {', '.join(unknown)}; expected names of pile_index/settings.py")
        self._limits = limits if limits is not None else {}  # read on each use: a live view stays live
        self._missing_tokenizer = missing_tokenizer
        self._members: dict[str, Any] = {}
        self._locks = {name: threading.Lock() for name in _MEMBERS}
        self._closed = False

    @classmethod
    def open(cls, prefixes: str | os.PathLike | Sequence[str | os.PathLike] | TokenStore,
             order: OrderSpec | None = None, tokenizer: str | os.PathLike | Tokenizer | None = None, *,
             preshuffled: bool = False, store_tokenizer: bool = True,
             limits: Mapping[str, int | float | None] | None = None, missing_tokenizer: str | None = None) -> Corpus:
        """Open the store of ``prefixes`` (one prefix, or several parts read as one store) and check it.

        ``order``: the training order's options (``OrderConfig``), or a function of the store giving them, or
        None (then :attr:`order` refuses). ``preshuffled``: the store is a preshuffled one (row k = item k).
        ``tokenizer``: a ``tokenizer.json`` path, a hub id or a loaded ``Tokenizer``; when None, the store's
        own ``PREFIX.tokenizer.json`` if it has one (``store_tokenizer=False``: no tokenizer then).
        ``limits``: setting name -> value for the limits this corpus enforces (None: no bound; a name left out:
        the setting's default), read on each use (the service passes a view of its settings). ``missing_tokenizer``: the message of a text query when there is no tokenizer
        (default: the core's, naming `tokenizer`), checked before the text's other limits."""
        store = prefixes if isinstance(prefixes, TokenStore) else TokenStore(prefixes)
        return cls(store, order, tokenizer, preshuffled=preshuffled, store_tokenizer=store_tokenizer, limits=limits,
                   missing_tokenizer=missing_tokenizer)

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

    def limit(self, name: str) -> int | float | None:
        """The value of limit ``name`` this corpus enforces (None: no bound)."""
        return self._limits[name] if name in self._limits else default(name)

    # -- the store and its documents

    def info(self) -> CorpusInfo:
        """The store's counts and cached token statistics (never a scan), with whether the documents table and a
        tokenizer are there; computed once."""
        return self._member("info", self._make_info)

    def _make_info(self) -> CorpusInfo:
        st = corpus_info(self.store, scan=False)
        facts = {f.name: getattr(st, f.name) for f in fields(StoreInfo)}
        facts["has_documents_table"] = self.documents is not None
        return CorpusInfo(**facts, has_tokenizer=self.tokenizer is not None)

    def store_info(self, scan: bool = True, progress: bool = False) -> StoreInfo:
        """``pile-index info``: counts from the headers and token statistics (scanned when ``scan`` and not
        cached; the scan writes ``PREFIX.stats.json``)."""
        return corpus_info(self.store, scan=scan, progress=progress)

    def document(self, doc_id: int, offset: int = 0, limit: int | None = None) -> Document:
        """Item ``doc_id`` from token ``offset``: ``limit`` tokens (None: up to ``max_document_tokens``)."""
        return document_view(self.store, doc_id, offset=offset, limit=limit, documents=self.documents,
                             tokenizer=self.tokenizer, max_tokens=self.limit("max_document_tokens"))

    # -- the training order

    def sample(self, step: int, slot: int, text: bool = True) -> Sample:
        """Row ``slot`` of training step ``step``: tokens, document pieces with their metadata rows (a raw
        store), and the decoded text (``text`` and a tokenizer)."""
        order = self.order
        tokenizer = self.tokenizer if text else None
        return describe_sample(order, step, slot, tokenizer=tokenizer,
                               documents=None if order.preshuffled else self.documents)

    def batch(self, step: int, to_step: int | None = None) -> tuple[np.ndarray, BatchInfo]:
        """The rows of steps ``step``..``to_step`` (inclusive; None: ``step``) as one array (rows, seq_length +
        1) and what they are; ``max_rows_per_request`` is checked before any row is read."""
        return describe_batch(self.order, step, to_step, max_rows=self.limit("max_rows_per_request"))

    def doc_steps(self, doc_id: int) -> DocSteps:
        """Every trained row holding tokens of document ``doc_id`` (at most ``max_occurrences``, counted first)."""
        order = self.order
        if not isinstance(order, TrainingOrder):
            raise ConfigError("document -> steps needs a raw store with index maps; this service serves a "
                              "preshuffled store, which has no document identity")
        return order.doc_steps(doc_id, max_occurrences=self.limit("max_occurrences"))

    def order_info(self) -> OrderInfo:
        """The order's options and, over a raw store, its statistics (one pass over the trained rows; once)."""
        return self._member("order_info", self._make_order_info)

    def _make_order_info(self) -> OrderInfo:
        order = self.order
        st = None if order.preshuffled else order.stats()
        return OrderInfo(
            preshuffled=bool(order.preshuffled), seed=int(order.cfg.seed), seq_length=int(order.seq_length),
            batch_size=int(order.batch_size), num_samples=int(order.num_samples),
            train_steps=int(order.train_steps), trained_samples=int(order.trained_samples),
            epochs=None if st is None else st.epochs, tokens_per_epoch=None if st is None else st.tokens_per_epoch,
            documents_seen=None if st is None else st.documents_seen,
            first_repeat=None if st is None else st.first_repeat)

    def order_stats(self) -> OrderStats:
        """``order stats`` of a raw store: epochs, samples, documents seen 0 / 1 / 2+ times, the first repeat."""
        return self._raw_order("order stats").stats()

    def build_order(self, progress: bool = False, max_epochs: int | None = MAX_EPOCHS) -> OrderBuilt:
        """Build (or reuse) the index maps and inverse files of a raw store's order; it becomes :attr:`order`.
        An order of more than ``max_epochs`` epochs is refused before anything is written (None: no bound)."""
        if self.preshuffled:
            raise ConfigError("order build makes index maps for a raw store; a preshuffled store needs none "
                              "(drop `preshuffled`)")
        t0 = time.perf_counter()
        cfg = self.order_config
        order = open_order(self.store, cfg, build=True, progress=progress, max_epochs=max_epochs)
        with self._locks["order"]:
            self._members["order"] = order
        files = {k: str(v) for k, v in index_map_paths(self.store.prefix, cfg).items()}
        files.update({k: str(v) for k, v in order.inverse_paths().items()})
        maps = order.maps
        return OrderBuilt(epochs=int(maps.epochs), bytes=int(build_plan(self.store.sizes, cfg)["bytes"]),
                          tokens_per_epoch=int(maps.tokens_per_epoch), documents=int(order.n_docs),
                          samples_total=int(maps.n_samples_total), samples_usable=int(order.num_samples),
                          train_steps=int(order.train_steps), trained_samples=int(order.trained_samples),
                          files=files, seconds=round(time.perf_counter() - t0, 3))

    def verify_order(self, preshuffled: Corpus, start: int = 0, stop: int | None = None,
                     progress: bool = False) -> OrderVerify:
        """Rows [start, stop) of the ``preshuffled`` corpus compared with this raw store's order (default stop:
        the trained rows both have); the first mismatch."""
        raw, pre = self._raw_order("order verify"), preshuffled.order
        if not isinstance(pre, PreshuffledOrder):
            raise ConfigError(f"order verify compares with a preshuffled store; {preshuffled.store.prefix} was opened "
                              f"as a raw one (give `preshuffled`)")
        stop = stop if stop is not None else min(raw.trained_samples, pre.num_samples)
        return verify_orders(raw, pre, start, stop, progress=progress)

    def _raw_order(self, what: str) -> TrainingOrder:
        order = self.order
        if not isinstance(order, TrainingOrder):
            raise ConfigError(f"{what} needs a raw store (documents + index maps); drop `preshuffled`")
        return order

    # -- n-grams

    def query(self, tokens: Sequence[int] | str | None = None, text: str | None = None) -> np.ndarray:
        """The n-gram a caller names: token ids (or "1,2,3") or text through the tokenizer, within
        ``max_tokens_per_query`` and ``max_text_chars``."""
        if text is not None and self._missing_tokenizer is not None and self.tokenizer is None:
            raise ConfigError(self._missing_tokenizer)
        return query_tokens(tokens=tokens, text=text, tokenizer=self.tokenizer if text is not None else None,
                            max_tokens=self.limit("max_tokens_per_query"), max_text_chars=self.limit("max_text_chars"))

    def count(self, tokens: Sequence[int] | str | None = None, text: str | None = None) -> NgramCount:
        """The exact count of one n-gram (inside documents; overlaps count)."""
        ids = self.query(tokens, text)
        return NgramCount(tokens=ids.tolist(), count=self.ngram.count(ids))

    def count_many(self, queries: Sequence[Sequence[int] | str]) -> NgramCounts:
        """The counts of a batch (each item token ids or text; at most ``max_queries_per_request``), in order;
        an item's error names its index (``queries[3]: ...``)."""
        cap = self.limit("max_queries_per_request")
        if cap is not None and len(queries) > cap:
            raise LimitError(f"queries holds {len(queries):,} n-grams; the limit is max_queries_per_request={cap:,}: "
                             f"split the batch", "max_queries_per_request")
        ids = []
        for i, q in enumerate(queries):
            try:
                ids.append(self.query(None if isinstance(q, str) else q, q if isinstance(q, str) else None))
            except (QueryError, LimitError) as e:
                raise type(e)(f"queries[{i:,}]: {e}", *([e.setting] if isinstance(e, LimitError) else [])) from e
        return self._counts(ids)

    def count_file(self, path: str | os.PathLike) -> NgramCounts:
        """The counts of a queries file (one query a line: ids like 1,2,3, or text), in the file's order."""
        from .ngram.batch import has_text_lines, read_queries_file

        tok = self.tokenizer if has_text_lines(path) else None
        queries = read_queries_file(path, tokenizer=tok, max_tokens=self.limit("max_tokens_per_query"),
                                    max_text_chars=self.limit("max_text_chars"),
                                    max_queries=self.limit("max_queries_per_request"))
        return self._counts(queries)

    def _counts(self, ids: list[np.ndarray]) -> NgramCounts:
        counts = self.ngram.count_many(ids)
        return NgramCounts(counts=[NgramCount(tokens=q.tolist(), count=c) for q, c in zip(ids, counts.tolist())])

    def locate(self, tokens: Sequence[int] | str | None = None, text: str | None = None, offset: int = 0,
               limit: int | None = None) -> NgramLocate:
        """Occurrences ``offset`` .. ``offset + limit - 1`` of an n-gram (at most ``max_locate_page``)."""
        ids = self.query(tokens, text)
        return locate_page(self.ngram, ids, offset, limit, self.limit("max_locate_page"))

    def steps(self, tokens: Sequence[int] | str | None = None, text: str | None = None,
              bucket_steps: int | None = None) -> NgramSteps:
        """When training saw an n-gram (at most ``max_occurrences`` expanded to rows, counted first)."""
        ids = self.query(tokens, text)
        order = self.order
        return ngram_steps(self.ngram, order, ids, documents=self.documents, bucket_steps=bucket_steps,
                           max_occurrences=self.limit("max_occurrences"))

    def trace(self, tokens: Sequence[int] | str | None = None, text: str | None = None, *,
              min_tokens: int = DEFAULT_MIN_TOKENS, max_count: int | None = None,
              occurrences: int = DEFAULT_OCCURRENCES) -> NgramTrace:
        """A passage's maximal spans that occur in the index, with steps when the corpus has an order
        (``occurrences`` per span at most ``max_locate_page``)."""
        ids = self.query(tokens, text)
        return trace(self.ngram, ids, order=self.order if self.has_order else None, documents=self.documents,
                     tokenizer=self.tokenizer, min_tokens=min_tokens, max_count=max_count, occurrences=occurrences,
                     max_occurrences=self.limit("max_occurrences"), max_locate_page=self.limit("max_locate_page"))

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
