"""Progress bars: one factory for every long job, so every bar looks alike, goes to stderr and obeys one switch.

``progress_bar(...)`` returns a ``tqdm`` bar (disabled, a no-op, when ``enabled`` is false or progress is off
process-wide). The CLI's ``--quiet`` turns progress off with :func:`set_progress`; its log handler writes
through ``tqdm.write`` so log lines print above a running bar instead of through it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

_enabled = True


def set_progress(enabled: bool) -> None:
    """Turn every progress bar of this process on or off (``--quiet`` turns them off)."""
    global _enabled
    _enabled = bool(enabled)


def progress_enabled() -> bool:
    return _enabled


def progress_bar(iterable: Iterable | None = None, *, total: float | None = None, desc: str | None = None,
                 unit: str = "it", enabled: bool = True, **options: Any) -> tqdm:
    """A bar on stderr; ``options`` are tqdm's (``unit_scale``, ``initial``, ``leave``, ``smoothing``)."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                disable=not (enabled and _enabled), **options)
