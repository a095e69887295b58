"""The n-gram index and when training saw an n-gram.

- :mod:`.layout`: the files of ``PREFIX.ngram/`` (formats 2 and 3), the shard plan, the manifest;
- :mod:`.suffix_array`: SA-IS;
- :mod:`.merge`: parts sorted in RAM, merged on disk (the order of format 3);
- :mod:`.build`: resumable builds bounded by memory (local or Ray), and format 2's fixed-size shards;
- :mod:`.search`: the numba search kernels (stable entry points ``_range``, ``_range_sampled``, ``sa_at``);
- :mod:`.index`: ``NgramIndex`` count / locate, query parsing (``query_tokens``);
- :mod:`.locate`: one page of occurrences, ``max_locate_page`` checked first;
- :mod:`.steps`: occurrences -> documents -> training rows -> (step, slot);
- :mod:`.batch`: ``NgramIndex.count_many``, many counts in one parallel call; :mod:`.trace`: a passage's maximal
  occurring spans; :mod:`.duplicates`: per training row, the trained rows holding its tokens [32:64).
"""

from .build import build_index, default_memory
from .index import NgramIndex, query_tokens
from .layout import DEFAULT_SHARD_TOKENS, plan_shards
from .locate import locate_page
from .steps import ngram_steps, occurrence_rows, occurrences_table
from .suffix_array import suffix_array

__all__ = [
    "DEFAULT_SHARD_TOKENS", "NgramIndex", "build_index", "default_memory", "locate_page", "ngram_steps",
    "occurrence_rows", "occurrences_table", "plan_shards", "query_tokens", "suffix_array",
]
