"""When did training see an n-gram? Occurrences -> documents -> training rows -> (step, slot).

``docs/ORDER.md``, "n-grams": an occurrence is *seen in one context* when the whole n-gram lies inside
one trained row. Per occurrence (doc_id, offset, length m) and per row holding tokens [doc_start, doc_end)
of that document (``order.doc_rows``; rows of L+1 tokens overlap their neighbour by one token):

- in row:  ``doc_start <= offset`` and ``offset + m <= doc_end``;
- split:   the row holds the occurrence's first token but not its end, and the next row of the document
  does not start on that token (``doc_start <= offset < doc_end - 1`` and ``offset + m > doc_end``):
  the n-gram was cut by a row boundary, so no context held it whole. Reported apart, counted once,
  at the row that holds its start.

Only trained rows (``sample_index < train_steps * batch_size``) count as seen; step = sample_index //
batch_size, slot = sample_index % batch_size. One document occurrence can be in several rows (epochs; an
n-gram of one token on the shared token of two neighbouring rows), and each (occurrence, row) pair counts.
Over a preshuffled store items are rows: item k is sample k, nothing is split.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ConfigError, LimitError
from .index import NgramIndex
from .results import NgramSteps

log = logging.getLogger(__package__)  # one logger per package: log lines name the concept

DEFAULT_BUCKETS = 100


def occurrence_rows(
    index: NgramIndex,
    order: Any,
    tokens: Sequence[int] | np.ndarray,
    max_occurrences: int | None = None,
) -> dict[str, np.ndarray]:
    """Every (occurrence, row) pair: equal-length arrays doc_id, offset, sample_index, step, slot, in_row,
    split, trained. Occurrences with no row at all (past the last sample) have no pair."""
    pat = np.asarray(tokens, dtype=np.int64).reshape(-1)
    m = int(pat.size)
    n = index.count(pat)
    if max_occurrences is not None and n > max_occurrences:
        raise LimitError(
            f"the n-gram occurs {n:,} times; expanding more than max_occurrences={max_occurrences:,} "
            f"to training rows is refused: query a longer n-gram or raise the setting", "max_occurrences")
    doc, off = index.locate(pat)
    if getattr(order, "preshuffled", False):
        sample = doc.astype(np.int64)
        in_row = np.ones(sample.size, dtype=bool)
        split = np.zeros(sample.size, dtype=bool)
        odoc, ooff = doc, off
    else:
        udoc = np.unique(doc)
        rows = order.doc_rows(udoc)
        r_doc = np.asarray(rows["doc_id"], dtype=np.int64)
        r_sample = np.asarray(rows["sample_index"], dtype=np.int64)
        r_start = np.asarray(rows["doc_start"], dtype=np.int64)
        r_end = np.asarray(rows["doc_end"], dtype=np.int64)
        # Rows sorted by (doc, doc_start). Each epoch copy of a document is tiled by consecutive rows that
        # share one boundary token, so only the last 2 x epochs + 1 rows starting at or before an
        # occurrence's offset can hold it: pairs grow with occurrences x epochs, not with document length.
        span = int(r_start.max()) + 1 if r_start.size else 1
        key = r_doc * span + r_start
        sort = np.argsort(key, kind="stable")
        key, r_sample, r_start, r_end = key[sort], r_sample[sort], r_start[sort], r_end[sort]
        r_doc = r_doc[sort]
        first_of_doc = np.searchsorted(r_doc, doc, side="left")
        hi = np.searchsorted(key, doc * span + np.minimum(off, span - 1), side="right")
        window = 2 * int(getattr(order, "epochs", 1)) + 1
        lo = np.maximum(first_of_doc, hi - window)
        per = np.maximum(hi - lo, 0)
        total = int(per.sum())
        occ = np.repeat(np.arange(doc.size), per)
        ridx = np.repeat(lo - (np.cumsum(per) - per), per) + np.arange(total)
        odoc, ooff = doc[occ], off[occ]
        s, e = r_start[ridx], r_end[ridx]
        in_row = (s <= ooff) & (ooff + m <= e)
        split = (s <= ooff) & (ooff < e - 1) & (ooff + m > e)
        keep = in_row | split  # rows that only hold other parts of the document are not pairs of this n-gram
        sample = r_sample[ridx][keep]
        odoc, ooff, in_row, split = odoc[keep], ooff[keep], in_row[keep], split[keep]
    step, slot = order.step_slot(sample)
    return {
        "doc_id": odoc.astype(np.int64),
        "offset": ooff.astype(np.int64),
        "sample_index": sample,
        "step": step,
        "slot": slot,
        "in_row": in_row,
        "split": split,
        "trained": order.trained(sample),
        "n_occurrences": np.int64(n),
    }


def _bucket_steps(order: Any, bucket_steps: int | None) -> int:
    if bucket_steps is None:
        return max(1, -(-int(order.train_steps) // DEFAULT_BUCKETS))
    if bucket_steps < 1:
        raise ConfigError(f"bucket_steps={bucket_steps:,}: expected a positive number of steps per bucket")
    return int(bucket_steps)


def source_names(documents: Any, doc_ids: np.ndarray) -> np.ndarray | None:
    """pile_set_name of each doc id (object array, None where unknown); None without a documents table."""
    if documents is None or doc_ids.size == 0:
        return None if documents is None else np.array([], dtype=object)
    uniq, inv = np.unique(doc_ids, return_inverse=True)
    cur = documents.cursor()
    tbl = cur.sql(
        "SELECT doc_id, pile_set_name FROM documents WHERE doc_id IN (SELECT unnest(?::BIGINT[]))",
        params=[uniq.tolist()],
    ).to_arrow_table()
    ids = tbl.column("doc_id").to_numpy()
    names = np.array(tbl.column("pile_set_name").to_pylist(), dtype=object)
    order = np.argsort(ids)
    ids, names = ids[order], names[order]
    pos = np.searchsorted(ids, uniq)
    found = (pos < ids.size) & (ids[np.minimum(pos, max(ids.size - 1, 0))] == uniq) if ids.size else np.zeros(uniq.size, bool)
    out = np.full(uniq.size, None, dtype=object)
    out[found] = names[pos[found]]
    return out[inv]


def ngram_steps(
    index: NgramIndex,
    order: Any,
    tokens: Sequence[int] | np.ndarray,
    documents: Any = None,
    bucket_steps: int | None = None,
    max_occurrences: int | None = None,
) -> NgramSteps:
    """Summary of when training saw ``tokens``: counts, first/last step, histogram, by_source."""
    pairs = occurrence_rows(index, order, tokens, max_occurrences)
    width = _bucket_steps(order, bucket_steps)
    train_steps = int(order.train_steps)
    seen = pairs["in_row"] & pairs["trained"]
    steps = pairs["step"][seen]
    n_buckets = -(-train_steps // width)
    hist = np.bincount(steps // width, minlength=n_buckets)[:n_buckets] if n_buckets else np.zeros(0, np.int64)
    by_source: dict[str, int] = {}
    names = source_names(documents, pairs["doc_id"][seen])
    if names is not None and names.size:
        keys = np.array(["(unknown)" if x is None else str(x) for x in names], dtype=object)
        uniq, counts = np.unique(keys, return_counts=True)
        by_source = {str(k): int(c) for k, c in sorted(zip(uniq, counts), key=lambda kv: (-kv[1], kv[0]))}
    return NgramSteps(
        tokens=[int(t) for t in np.asarray(tokens).reshape(-1)],
        count=int(pairs["n_occurrences"]),
        count_in_rows=int(seen.sum()),
        count_split_by_row_boundary=int((pairs["split"] & pairs["trained"]).sum()),
        count_in_untrained_rows=int((pairs["in_row"] & ~pairs["trained"]).sum()),
        documents_seen=int(np.unique(pairs["doc_id"][seen]).size),
        first_step=int(steps.min()) if steps.size else None,
        last_step=int(steps.max()) if steps.size else None,
        train_steps=train_steps,
        batch_size=int(order.batch_size),
        bucket_steps=width,
        histogram=[int(x) for x in hist],
        by_source=by_source,
        by_source_available=documents is not None,
    )


def occurrences_table(
    index: NgramIndex,
    order: Any,
    tokens: Sequence[int] | np.ndarray,
    bucket_steps: int | None = None,
    max_occurrences: int | None = None,
) -> pa.Table:
    """The (occurrence, row) pairs as an Arrow table for SQL (``ngram_occurrences``; the ``ngram_timeseries``
    view groups it by step bucket)."""
    pairs = occurrence_rows(index, order, tokens, max_occurrences)
    width = _bucket_steps(order, bucket_steps)
    bucket = (pairs["step"] // width) * width
    return pa.table({
        "doc_id": pairs["doc_id"],
        "offset": pairs["offset"],
        "sample_index": pairs["sample_index"],
        "step": pairs["step"],
        "slot": pairs["slot"],
        "in_row": pairs["in_row"],
        "split": pairs["split"],
        "trained": pairs["trained"],
        "bucket_start": bucket,
        "bucket_end": bucket + width,
    })
