"""The files a corpus is made of: the GPT-NeoX ``.bin/.idx`` format, token stores, their token statistics
and the tokenizer.

- :mod:`.indexed`: ``PREFIX.bin`` + ``PREFIX.idx`` ("MMIDIDX"), read and written exactly;
- :mod:`.store`: one or more prefixes read as one sequence of items (``TokenStore``);
- :mod:`.stats`: smallest / largest token id and EOD count, cached in ``PREFIX.stats.json``;
- :mod:`.tokenizer`: loading a ``tokenizer.json`` (or a hub id), reading and hashing the file.
"""

from .indexed import (DTYPES, IndexedDataset, IndexedDatasetWriter, MMapIndex, best_fitting_dtype, code_of,
                      index_file_path, strip_prefix, write_index, write_indexed)
from .stats import StoreInfo, corpus_info, stats_path, token_stats
from .store import TokenStore
from .tokenizer import EOD_TOKEN, TokenizerFile, eod_id, load_tokenizer, read_tokenizer

__all__ = [
    "DTYPES", "EOD_TOKEN", "IndexedDataset", "IndexedDatasetWriter", "MMapIndex", "StoreInfo", "TokenStore", "TokenizerFile",
    "best_fitting_dtype", "code_of", "corpus_info", "eod_id", "index_file_path", "load_tokenizer",
    "read_tokenizer", "stats_path", "strip_prefix", "token_stats", "write_index", "write_indexed",
]
