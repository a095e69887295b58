"""The GPT-NeoX scorer: loss, rank, entropy and memorization of training rows at any Pythia checkpoint.

- :mod:`.model`: config dataclass and the plain-torch forward (no transformers at run time);
- :mod:`.checkpoint`: local folders, the hub cache (offline), optional hub downloads, every revision of a job
  resolved up front, key/shape checks, weight hashes, duplicate-weights warnings;
- :mod:`.metrics`: chunked per-token nll/rank/entropy, per-row means, one-pass and greedy memorization;
- :mod:`.kernels`: the fused CPU kernels behind the chunked statistics and the q/k/v split with rotary;
- :mod:`.score`: ``score_rows`` (rows in, columns out) and ``score_to_parquet`` (resumable jobs).
"""

from .checkpoint import (Checkpoint, DuplicateWeights, RevisionPlan, hub_cache_dir, load_model, resolve_checkpoint,
                         resolve_revisions)
from .metrics import TokenMetrics, greedy_decode, memorization_score, memorized_one_pass, token_metrics
from .model import GPTNeoX, GPTNeoXConfig
from .score import ScoreOptions, columns_to_table, pick_device, pick_dtype, score_rows, score_to_parquet

__all__ = [
    "Checkpoint",
    "DuplicateWeights",
    "GPTNeoX",
    "GPTNeoXConfig",
    "RevisionPlan",
    "ScoreOptions",
    "TokenMetrics",
    "columns_to_table",
    "greedy_decode",
    "hub_cache_dir",
    "load_model",
    "memorization_score",
    "memorized_one_pass",
    "pick_device",
    "pick_dtype",
    "resolve_checkpoint",
    "resolve_revisions",
    "score_rows",
    "score_to_parquet",
    "token_metrics",
]
