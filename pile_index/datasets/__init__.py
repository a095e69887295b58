"""Training rows x checkpoints x metrics: the memorization / influence datasets.

- :mod:`.schedule`: Pythia's checkpoint schedule, step <-> revision;
- :mod:`.selection`: which training rows (and never-trained controls) a dataset holds;
- :mod:`.build`: ``build_dataset``, resumable per checkpoint (local or Ray);
- :mod:`.summary`: cohort means, treatment effects, composition, plots;
- :mod:`.query`: read-only queries over a built dataset folder;
- :mod:`.replay`: train a small GPT-NeoX on the training order (checkpoints with a known relation to the data).
"""

from .build import DatasetConfig, build_dataset, dominant_sources
from .query import DatasetQuery
from .schedule import before_steps, parse_revisions, pythia_schedule, revision_step, treatment_steps
from .selection import SelectionConfig, Strategy, select_rows
from .summary import effect_unavailable, overall_effect, plot, summarize

_REPLAY = ("ReplayConfig", "replay_training")


def __getattr__(name: str):
    # replay needs torch: imported on first use, so reading a dataset (the API) does not load torch.
    if name in _REPLAY:
        from . import replay

        return getattr(replay, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DatasetConfig", "DatasetQuery", "ReplayConfig", "SelectionConfig", "Strategy", "before_steps",
    "build_dataset", "dominant_sources", "effect_unavailable", "overall_effect", "parse_revisions", "plot",
    "pythia_schedule", "replay_training", "revision_step", "select_rows", "summarize", "treatment_steps",
]
