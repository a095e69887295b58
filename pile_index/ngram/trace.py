"""Trace a passage to the training data: its maximal spans that occur in the index, as OLMoTrace does for OLMo.

A span ``[start, end)`` of the passage's tokens *occurs* when the index counts it at least once (inside one
document, as every count). It is *maximal* when it occurs and no other occurring span contains it (so neither
end can be extended). Maximal spans may overlap; they are returned ordered by position.

The search. Let ``end[i]`` be the end of the longest occurring span starting at ``i`` (``end[i] = i`` when
token ``i`` itself never occurs). Occurrence is closed under taking sub-spans, so ``end`` never decreases:
``end[i + 1] >= end[i]``, and the span at ``i`` is maximal exactly when ``end[i] > end[i - 1]``. For each
start the search begins from the length already known to occur (``end[i - 1] - i``) and gallops on the
length (+1, +2, +4, ...) until a length does not occur, then binary-searches the last gap: O(n log n) counts
for n tokens, and about 2 counts per token when matches are short.

Then OLMoTrace's filters: spans shorter than ``min_tokens`` and spans with more than ``max_count``
occurrences are dropped (counted, never silently). Each kept span gets its count, its first
``occurrences`` occurrences (doc_id, offset, pile_set_name with a documents table) and, with a training
order, the first and last training step whose row holds the whole span (:mod:`.steps`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, LimitError, QueryError
from .index import NgramIndex
from .results import NgramTrace, TraceOccurrence, TraceSpan
from .steps import occurrence_rows, source_names

DEFAULT_MIN_TOKENS = 8  # OLMoTrace's shortest span
DEFAULT_OCCURRENCES = 10


def maximal_spans(index: NgramIndex, ids: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end, count) of every maximal occurring span of ``ids``, by start (see the module docstring)."""
    n = int(ids.size)
    counted: dict[tuple[int, int], int] = {}

    def count(i: int, length: int) -> int:
        c = counted.get((i, length))
        if c is None:
            c = counted[(i, length)] = index.count(ids[i : i + length])
        return c

    spans = []
    prev_end = 0
    for i in range(n):
        known = prev_end - i  # tokens [i, prev_end) occur: a sub-span of the previous longest span
        if known <= 0:
            if count(i, 1) == 0:  # the token never occurs: no span starts (or runs) here
                prev_end = i
                continue
            known = 1
        good, bad = known, n - i + 1  # longest length known to occur / shortest known not to
        step = 1
        while good + step < bad:  # gallop
            if count(i, good + step) > 0:
                good += step
                step <<= 1
            else:
                bad = good + step
                break
        while bad - good > 1:  # binary search the last gap
            mid = (good + bad) >> 1
            if count(i, mid) > 0:
                good = mid
            else:
                bad = mid
        end = i + good
        if end > prev_end:
            spans.append((i, end, count(i, good)))
        prev_end = end
    return spans


def trace(
    index: NgramIndex,
    ids: Sequence[int] | np.ndarray,
    *,
    order: Any = None,
    documents: Any = None,
    tokenizer: Any = None,
    min_tokens: int = DEFAULT_MIN_TOKENS,
    max_count: int | None = None,
    occurrences: int = DEFAULT_OCCURRENCES,
    max_occurrences: int | None = None,
    max_locate_page: int | None = None,
) -> NgramTrace:
    """The passage ``ids`` traced to the index: its maximal occurring spans, filtered and described.

    ``order``: a training order (first/last step of each span; None: no steps). ``documents``: the documents
    table (pile_set_name of each occurrence). ``tokenizer``: decodes each span's text. ``max_occurrences``:
    a span with more occurrences gets no steps (``steps_computed`` false) rather than expanding them all.
    LimitError ``max_locate_page`` (None: no bound) when ``occurrences`` is above it, before any count."""
    if max_locate_page is not None and occurrences > max_locate_page:
        raise LimitError(f"occurrences={occurrences:,} exceeds max_locate_page={int(max_locate_page):,}",
                         "max_locate_page")
    pat = np.asarray(ids, dtype=np.int64).reshape(-1)
    if pat.size == 0:
        raise QueryError("the passage has no tokens; pass at least one token")
    if min_tokens < 1:
        raise ConfigError(f"min_tokens={min_tokens:,}: expected a span length of at least 1 token")
    if max_count is not None and max_count < 1:
        raise ConfigError(f"max_count={max_count:,}: expected at least 1 occurrence (or no max_count)")
    if occurrences < 0:
        raise ConfigError(f"occurrences={occurrences:,}: expected 0 or more occurrences per span")
    found = maximal_spans(index, pat)
    short = sum(1 for a, b, _ in found if b - a < min_tokens)
    frequent = sum(1 for a, b, c in found if b - a >= min_tokens and max_count is not None and c > max_count)
    kept = [(a, b, c) for a, b, c in found
            if b - a >= min_tokens and (max_count is None or c <= max_count)]
    spans = [_describe(index, pat, a, b, c, order, documents, tokenizer, occurrences, max_occurrences)
             for a, b, c in kept]
    return NgramTrace(tokens=pat.tolist(), n_tokens=int(pat.size), min_tokens=int(min_tokens), max_count=max_count,
                      occurrences_per_span=int(occurrences), maximal_spans=len(found), dropped_short=short,
                      dropped_frequent=frequent, spans=spans)


def _describe(index: NgramIndex, pat: np.ndarray, a: int, b: int, count: int, order: Any, documents: Any,
              tokenizer: Any, k: int, max_occurrences: int | None) -> TraceSpan:
    span = pat[a:b]
    doc, off = index.locate(span, 0, k)
    names = source_names(documents, doc)
    occ = [TraceOccurrence(doc_id=int(d), offset=int(o), pile_set_name=None if names is None else names[j])
           for j, (d, o) in enumerate(zip(doc.tolist(), off.tolist()))]
    first = last = in_rows = None
    computed = False
    if order is not None:
        try:
            pairs = occurrence_rows(index, order, span, max_occurrences)
        except LimitError:
            pairs = None  # steps_computed stays false: more occurrences than max_occurrences
        if pairs is not None:
            steps = pairs["step"][pairs["in_row"] & pairs["trained"]]
            first = int(steps.min()) if steps.size else None
            last = int(steps.max()) if steps.size else None
            in_rows, computed = int(steps.size), True
    return TraceSpan(start=a, end=b, length=b - a, tokens=span.tolist(),
                     text=tokenizer.decode(span.tolist()) if tokenizer is not None else None, count=int(count),
                     occurrences=occ, first_step=first, last_step=last, count_in_rows=in_rows,
                     steps_computed=computed)
