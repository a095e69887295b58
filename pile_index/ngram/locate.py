"""One page of an n-gram's occurrences, with the ``max_locate_page`` limit checked before the index is read."""

from __future__ import annotations

import numpy as np

from ..errors import LimitError, QueryError
from ..settings import default
from .index import NgramIndex
from .results import NgramLocate, Occurrence

DEFAULT_PAGE = 100
"""Occurrences per page when the caller gives no limit (or max_locate_page, when that is smaller)."""


def locate_page(index: NgramIndex, ids: np.ndarray, offset: int = 0, limit: int | None = None,
                max_locate_page: int | None = None) -> NgramLocate:
    """Occurrences ``offset`` .. ``offset + limit - 1`` (index order) of ``ids`` as (doc_id, offset), with the
    total count and the next page's offset (None on the last page). LimitError ``max_locate_page`` when
    ``limit`` is above it (default: the setting's default)."""
    cap = default("max_locate_page") if max_locate_page is None else int(max_locate_page)
    limit = min(DEFAULT_PAGE, cap) if limit is None else int(limit)
    if limit > cap:
        raise LimitError(f"limit={limit:,} exceeds max_locate_page={cap:,}; page with offset", "max_locate_page")
    if offset < 0 or limit < 0:
        raise QueryError(f"offset={offset:,} and limit={limit:,} must be >= 0")
    count = index.count(ids)
    doc, off = index.locate(ids, offset=offset, limit=limit)
    nxt = offset + int(doc.size)
    return NgramLocate(tokens=ids.tolist(), count=count, offset=offset, limit=limit,
                       occurrences=[Occurrence(doc_id=int(d), offset=int(o)) for d, o in zip(doc, off)],
                       next_offset=nxt if nxt < count else None)
