"""Duplicate counts per training row: how many trained rows hold a row's tokens [32:64) as a whole.

Prashanth et al. (2024, "Recite, Reconstruct, Recollect: Memorization in LMs as a Multifaceted Phenomenon")
measure a row's duplication by the number of times its 32-token continuation after the 32-token prompt
(tokens [32:64), the half Biderman et al.'s memorization score decodes) occurs in the training data. Here it
is exact and in training rows: ``num_duplicates`` = the number of distinct trained rows (sample index <
train_steps x batch_size) that hold those 32 tokens whole, inside one document (the index's semantics,
``docs/ORDER.md`` "n-grams"), the row itself included, so a trained row has num_duplicates >= 1.

How. The rows' 32-grams are counted with the batch counter (:mod:`.batch`); each distinct 32-gram that occurs
is expanded to its (occurrence, row) pairs (:func:`.steps.occurrence_rows`), and the trained rows that hold it
whole are counted once each. A row whose tokens [32:64) cross a document boundary holds no within-document
32-gram: it gets no count (null), and the caller reports how many rows that was. Over a preshuffled store
items are rows and every row's tokens lie in its item.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from .index import NgramIndex
from .steps import occurrence_rows

DUPLICATES_START, DUPLICATES_END = 32, 64  # tokens [32:64) of a row: the continuation after a 32-token prompt


def _within_one_document(order: Any, k: int, start: int, end: int) -> bool:
    spans = order.spans(int(k))
    if spans is None:  # preshuffled: the row is one item
        return True
    return any(s["sample_start"] <= start and s["sample_start"] + s["doc_end"] - s["doc_start"] >= end for s in spans)


def row_duplicates(index: NgramIndex, order: Any, sample_indices: np.ndarray, rows: np.ndarray | None = None,
                   start: int = DUPLICATES_START, end: int = DUPLICATES_END) -> tuple[np.ndarray, np.ndarray]:
    """(num_duplicates int64, defined bool) per sample index: trained rows holding the row's tokens
    [start:end) whole (see the module docstring); ``defined`` is false (and the count 0) where those tokens
    cross a document boundary. ``rows``: the rows' tokens when the caller has read them already."""
    ks = np.asarray(sample_indices, dtype=np.int64).reshape(-1)
    width = int(order.seq_length) + 1
    if not 0 <= start < end <= width:
        raise ConfigError(f"duplicates: tokens [{start}:{end}) of a row need rows of at least {end} tokens; "
                          f"the order's rows have {width} (seq_length + 1)")
    rows = order.rows(ks) if rows is None else rows
    grams = np.ascontiguousarray(np.asarray(rows)[:, start:end], dtype=np.int64)
    defined = np.array([_within_one_document(order, k, start, end) for k in ks.tolist()], dtype=bool)
    out = np.zeros(ks.size, dtype=np.int64)
    if not defined.any():
        return out, defined
    uniq, inverse = np.unique(grams[defined], axis=0, return_inverse=True)
    counts = index.count_many(uniq)
    per_gram = np.zeros(uniq.shape[0], dtype=np.int64)
    for g in np.flatnonzero(counts):
        pairs = occurrence_rows(index, order, uniq[g])
        per_gram[g] = np.unique(pairs["sample_index"][pairs["in_row"] & pairs["trained"]]).size
    out[defined] = per_gram[inverse.reshape(-1)]
    return out, defined
