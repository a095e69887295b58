"""pile-index: exact dataset and provenance for the Pythia suite.

Core library: the GPT-NeoX ``.bin/.idx`` format (:mod:`pile_index.indexed`), token stores
(:mod:`pile_index.store`), the training order, n-gram index, document store and scorer in their own
modules. The core never imports ``ingest`` or ``api``.
"""

from .errors import ConfigError, FormatError, LimitError, NotFoundError, PileIndexError, QueryError
from .indexed import IndexedDataset, IndexedDatasetWriter, write_indexed
from .store import TokenStore

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
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
