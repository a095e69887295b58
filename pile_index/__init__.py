"""pile-index: exact dataset and provenance for the Pythia suite.

Core library, one package per concept: :mod:`pile_index.format` (the GPT-NeoX ``.bin/.idx`` format, token
stores, the tokenizer), :mod:`pile_index.order` (the training order and provenance), :mod:`pile_index.ngram`,
:mod:`pile_index.sql` (documents table and SQL), :mod:`pile_index.scorer` and :mod:`pile_index.datasets`;
``errors``, ``atomic`` and ``progress`` serve them all; :class:`~pile_index.corpus.Corpus` opens a corpus
(store, order, n-gram index, documents, tokenizer) in one place. The core never imports ``ingest``, ``api`` or ``cli``.
"""

from .errors import ConfigError, FormatError, LimitError, NotFoundError, PileIndexError, QueryError
from .format import IndexedDataset, IndexedDatasetWriter, TokenStore, write_indexed

__version__ = "0.1.0"


def __getattr__(name: str):
    # Corpus opens every package (numba kernels, DuckDB): imported on first use, not by `import pile_index`.
    if name == "Corpus":
        from .corpus import Corpus

        return Corpus
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "Corpus",
    "FormatError",
    "IndexedDataset",
    "IndexedDatasetWriter",
    "LimitError",
    "NotFoundError",
    "PileIndexError",
    "QueryError",
    "TokenStore",
    "write_indexed",
]
