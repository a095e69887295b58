"""The n-gram index and when training saw an n-gram.

- :mod:`.index`: suffix arrays (SA-IS), sharded builds (local or Ray), ``NgramIndex`` count / locate, query
  parsing (``query_tokens``);
- :mod:`.locate`: one page of occurrences, ``max_locate_page`` checked first;
- :mod:`.steps`: occurrences -> documents -> training rows -> (step, slot);
- :mod:`.batch`: ``NgramIndex.count_many``, many counts in one parallel call; :mod:`.trace`: a passage's maximal
  occurring spans; :mod:`.duplicates`: per training row, the trained rows holding its tokens [32:64).
"""

from .index import DEFAULT_SHARD_TOKENS, NgramIndex, build_index, plan_shards, query_tokens, suffix_array
from .locate import locate_page
from .steps import ngram_steps, occurrence_rows, occurrences_table

__all__ = [
    "DEFAULT_SHARD_TOKENS", "NgramIndex", "build_index", "locate_page", "ngram_steps", "occurrence_rows", "occurrences_table",
    "plan_shards", "query_tokens", "suffix_array",
]
