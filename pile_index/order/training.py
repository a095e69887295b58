"""Provenance over a training order: (step, slot) -> tokens and source documents, and document -> steps.

Reference: EleutherAI/gpt-neox v1.0 ``megatron/data/gpt2_dataset.py`` (``GPT2Dataset.__getitem__``) and
``megatron/data/blendable_dataset.py``; ``docs/ORDER.md`` and ``docs/FORMATS.md`` (preshuffled files).

Which sample indices exist. ``GPT2Dataset.__len__`` = min(len(shuffle_idx) - 1, len(sample_idx) - 1) = S - 1,
and the ``BlendableDataset`` GPT-NeoX wraps around it (name ``train_0``) has that size too, so the sampler
reads sample indices 0 .. S-2 and ``__getitem__(k)`` for them is: u = shuffle_idx[k], (f, a) = sample_idx[u],
(l, b) = sample_idx[u+1], row = doc_idx[f][a:] + doc_idx[f+1..l-1] + doc_idx[l][:b+1] (or doc_idx[f][a:b+1]
when f == l). Index S-1 is beyond both lengths; through ``BlendableDataset`` it raises IndexError and wraps to
index 0 (``idx % len``). Here ``num_samples`` = S - 1 and a larger index is a :class:`QueryError`; the Pythia
preset trains on 146,432,000 rows, far below S - 1, so no trained row is ever a wrapped one.

Inverse files (built once by ``pile-index order build``, memmapped, atomic), named after the index maps:

- ``..._doc_idx_inverse.npy``: int32 [N*E]; entries [d*E, (d+1)*E) are the positions of document d in
  ``doc_idx``, ascending (a counting sort of doc_idx: one pass, no argsort).
- ``..._shuffle_idx_inverse.npy``: shuffle_idx's dtype [S]; entry u is the sample index k with shuffle_idx[k] = u.

A document occurrence at position p is held by unshuffled samples u with sample_idx[u,0] <= p <= sample_idx[u+1,0]
(a contiguous range found by two binary searches on the monotone column sample_idx[:,0]); k = inverse[u].
So doc-steps costs O(E log S) and no scan.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numba
import numpy as np

from .. import files
from ..pool import POOL_THREADS, run_blocks
from ..prefetch import prefetch
from ..atomic import save_npy
from ..digests import ensure_digests
from ..sql.documents import public_metadata
from ..errors import ConfigError, FormatError, LimitError, NotFoundError, QueryError
from .results import (BatchInfo, DocSteps, FirstRepeat, Mismatch, OrderStats, OrderVerify, RowOccurrence, Sample,
                      Span)
from .index_maps import (
    MAX_EPOCHS,
    IndexMaps,
    OrderConfig,
    build_command,
    build_index_mappings,
    check_build_size,
    index_map_paths,
    load_index_mappings,
    map_error,
)
from ..format.store import TokenStore

log = logging.getLogger(__package__)  # one logger per package: log lines name the concept

_PREFETCH_PIECES = 4  # pieces ahead to prefetch while copying
_PREFETCH_TOKENS = 256  # tokens of each such piece to prefetch, one call per 32
_ROWS_PER_BLOCK = 128  # rows of a block at least: a step's 1,024 rows are 8 blocks, taken by the cores as they come

INVERSE_KINDS = ("doc_idx_inverse", "shuffle_idx_inverse")


def inverse_paths(prefix: str | os.PathLike, cfg: OrderConfig) -> dict[str, Path]:
    """Inverse files beside the index maps: GPT-NeoX's name with ``_doc_idx_inverse`` / ``_shuffle_idx_inverse``."""
    base = files.index_map_base_of(index_map_paths(prefix, cfg)["doc_idx"])
    return {kind: files.index_map_file(base, kind) for kind in INVERSE_KINDS}


# ----------------------------------------------------------------------------------------------- kernels


# Every kernel below that follows a value read from a map or an inverse file checks it first and, when it is
# out of range, returns (code, index) with a code of ``order.MAP_PROBLEMS`` (9: a row whose pieces do not add
# up to seq_length + 1 tokens) instead of reading out of bounds; the wrappers turn that into a FormatError
# naming the file. The full check of ``order.check_index_maps`` is remembered in a marker; these checks are
# not, so no file and no marker can make a look-up read outside its arrays. Each costs a compare per value
# the look-up reads anyway.

# One walk: :func:`_walk` turns rows into (document, offset, length) pieces with :func:`_piece_bounds`, the
# per-row piece arithmetic; rows are those pieces gathered (:func:`_rows_kernel`), spans and the SQL
# ``row_pieces`` table are its non-empty pieces (:func:`_pieces_kernel`). Document -> rows
# (:func:`_doc_rows_kernel`) and first-seen (:func:`_first_seen_kernel`) go the other way or stream over
# every row, and use the same :func:`_row_ends` and :func:`_piece_bounds`.

_ROW_TOKENS = 9  # kernel code: the row's pieces do not add up to seq_length + 1 tokens


@numba.njit(cache=True, nogil=True)
def _doc_positions_kernel(doc_idx, epochs, counts, out):
    """Counting sort: out[d*E + c] = position of the c-th occurrence of document d in doc_idx.
    Returns (code, position) of a doc_idx value that is not a document (1) or occurs more than E times (10)."""
    n = counts.shape[0]
    for p in range(doc_idx.shape[0]):
        d = np.int64(doc_idx[p])
        if d < 0 or d >= n:
            return 1, p
        if np.int64(counts[d]) >= epochs:
            return 10, p
        out[d * epochs + np.int64(counts[d])] = p
        counts[d] += 1
    return 0, 0


@numba.njit(cache=True, nogil=True)
def _inverse_permutation_kernel(perm, out):
    """out[perm[k]] = k; returns (code, k) of a value outside the permutation's range."""
    n = perm.shape[0]
    for k in range(n):
        u = np.int64(perm[k])
        if u < 0 or u >= n:
            return 4, k
        out[u] = k
    return 0, 0


@numba.njit(cache=True, inline="always")
def _row_ends(shuffle_idx, sample_idx, doc_idx, sizes, k, max_span):
    """(code, index, f, a, last, b) of sample k: u = shuffle_idx[k], (f, a) = sample_idx[u] and
    (last, b) = sample_idx[u + 1], each checked before it is followed. code 0: all in range."""
    u = np.int64(shuffle_idx[k])
    if u < 0 or u >= np.int64(sample_idx.shape[0]) - 1:
        return 4, k, 0, 0, 0, 0
    m = np.int64(doc_idx.shape[0])
    n = np.int64(sizes.shape[0])
    f = np.int64(sample_idx[u, 0])
    a = np.int64(sample_idx[u, 1])
    last = np.int64(sample_idx[u + 1, 0])
    b = np.int64(sample_idx[u + 1, 1])
    if f < 0 or f >= m:
        return 2, u, 0, 0, 0, 0
    if last < f or last >= m:
        return 2, u + 1, 0, 0, 0, 0
    if last - f > max_span:
        return 8, u + 1, 0, 0, 0, 0
    df = np.int64(doc_idx[f])
    if df < 0 or df >= n:
        return 1, f, 0, 0, 0, 0
    dl = np.int64(doc_idx[last])
    if dl < 0 or dl >= n:
        return 1, last, 0, 0, 0, 0
    sf = np.int64(sizes[df])
    if a < 0 or (a >= sf and not (a == 0 and sf == 0)):
        return 3, u, 0, 0, 0, 0
    if b < 0 or b >= np.int64(sizes[dl]) or (f == last and b < a):
        return 3, u + 1, 0, 0, 0, 0
    return 0, 0, f, a, last, b


@numba.njit(cache=True, inline="always")
def _piece_bounds(p, f, a, last, b, size):
    """Tokens [s0, s1) of the document at doc_idx position p in a row that runs from (f, a) to (last, b)
    (sample_idx[u] and sample_idx[u + 1]): GPT2Dataset.__getitem__'s ``doc_idx[f][a:]``, whole documents
    between, ``doc_idx[last][:b + 1]`` (``[a:b + 1]`` when f == last). The one per-row piece arithmetic."""
    s0 = a if p == f else 0
    s1 = b + 1 if p == last else size
    return s0, s1


@numba.njit(cache=True, nogil=True)
def _walk(ks, shuffle_idx, sample_idx, doc_idx, sizes, width, max_span):
    """The pieces of rows ks, in order: (code, index, row_ptr, items, offsets, lengths). Row r is the pieces
    row_ptr[r] .. row_ptr[r + 1] - 1: document items[i] tokens [offsets[i], offsets[i] + lengths[i]); empty
    pieces (empty documents, length 0) are kept so that every doc_idx position of a row has one. A non-zero
    code names the first map entry out of range (``_row_ends``, or 1 for a doc_idx value inside a row), or
    is 9 with index r for a row r whose pieces do not add up to width tokens.

    Staged so that cache misses overlap: each look-up (shuffle_idx -> sample_idx -> doc_idx -> sizes) runs as
    its own tight loop over all rows, whose iterations are independent."""
    n = ks.shape[0]
    n_docs = np.int64(sizes.shape[0])
    none = np.empty(0, np.int64)
    first = np.empty(n, np.int64)
    start = np.empty(n, np.int64)
    last = np.empty(n, np.int64)
    stop = np.empty(n, np.int64)
    for r in range(n):
        code, index, f, a, l, b = _row_ends(shuffle_idx, sample_idx, doc_idx, sizes, ks[r], max_span)
        if code != 0:
            return code, index, none, none, none, none
        first[r] = f
        start[r] = a
        last[r] = l
        stop[r] = b
    row_ptr = np.empty(n + 1, np.int64)
    row_ptr[0] = 0
    for r in range(n):
        row_ptr[r + 1] = row_ptr[r] + last[r] - first[r] + 1
    total = row_ptr[n]
    items = np.empty(total, np.int64)
    i = 0
    for r in range(n):
        for p in range(first[r], last[r] + 1):
            d = np.int64(doc_idx[p])
            if d < 0 or d >= n_docs:
                return 1, p, none, none, none, none
            items[i] = d
            i += 1
    offsets = np.empty(total, np.int64)
    lengths = np.empty(total, np.int64)
    i = 0
    for r in range(n):
        o = 0
        for p in range(first[r], last[r] + 1):
            s0, s1 = _piece_bounds(p, first[r], start[r], last[r], stop[r], np.int64(sizes[items[i]]))
            m = max(s1 - s0, 0)
            offsets[i] = s0
            lengths[i] = m
            o += m
            i += 1
        if o != width:
            return _ROW_TOKENS, r, none, none, none, none
    return 0, 0, row_ptr, items, offsets, lengths


@numba.njit(cache=True, nogil=True)
def _rows_kernel(ks, shuffle_idx, sample_idx, doc_idx, sizes, pointers, itemsize, tokens, out, width, max_span):
    """Assemble rows ks into the flat out[n * width] straight from one .bin (GPT2Dataset.__getitem__ for
    each k): the pieces of :func:`_walk`, gathered. Returns (0, 0) on success, else the walk's (code, index).

    The walk proves that each row's pieces add up to width, so the copy stays inside out. While copying
    piece i, the first tokens of piece i + 4 are prefetched (pieces sit at random places in the .bin, so the
    hardware prefetcher cannot guess them: measured 0.8 -> 0.5 ms per 1,024-row step on a warm 300 MB store).
    The copy indexes with unsigned integers: numba then drops its negative-index wraparound check and the
    loop vectorises (4.7x faster than signed indices)."""
    code, index, row_ptr, items, offsets, lengths = _walk(ks, shuffle_idx, sample_idx, doc_idx, sizes, width,
                                                          max_span)
    if code != 0:
        return code, index
    total = items.shape[0]
    src = np.empty(total, np.int64)
    for i in range(total):
        src[i] = pointers[items[i]] // itemsize + offsets[i]
    for r in range(ks.shape[0]):
        o = r * width
        for i in range(row_ptr[r], row_ptr[r + 1]):
            ahead = i + _PREFETCH_PIECES
            if ahead < total:
                for c in range(0, min(lengths[ahead], _PREFETCH_TOKENS), 32):
                    prefetch(tokens, np.uint64(src[ahead] + c))
            m = lengths[i]
            a = np.uint64(src[i])
            b = np.uint64(o)
            for j in range(np.uint64(m)):
                out[b + j] = tokens[a + j]
            o += m
    return 0, 0


@numba.njit(cache=True, nogil=True)
def _pieces_kernel(ks, shuffle_idx, sample_idx, doc_idx, sizes, width, max_span):
    """The non-empty pieces of rows ks, in order, as (code, index, row, item, offset, length) arrays: row is
    the piece's position in ks. The walk of :func:`_walk` with its empty pieces left out."""
    code, index, row_ptr, items, offsets, lengths = _walk(ks, shuffle_idx, sample_idx, doc_idx, sizes, width,
                                                          max_span)
    if code != 0:
        return code, index, items, items, offsets, lengths
    n = 0
    for i in range(items.shape[0]):
        if lengths[i] > 0:
            n += 1
    rows = np.empty(n, np.int64)
    out_items = np.empty(n, np.int64)
    out_offsets = np.empty(n, np.int64)
    out_lengths = np.empty(n, np.int64)
    j = 0
    for r in range(ks.shape[0]):
        for i in range(row_ptr[r], row_ptr[r + 1]):
            if lengths[i] > 0:
                rows[j] = r
                out_items[j] = items[i]
                out_offsets[j] = offsets[i]
                out_lengths[j] = lengths[i]
                j += 1
    return 0, 0, rows, out_items, out_offsets, out_lengths


@numba.njit(cache=True, inline="always")
def _first_at_least(sample_idx, p, strict):
    """First j in [0, S] with sample_idx[j, 0] >= p (> p when strict); S+1 if none."""
    lo = np.int64(0)
    hi = np.int64(sample_idx.shape[0])
    while lo < hi:
        mid = (lo + hi) >> 1
        v = np.int64(sample_idx[mid, 0])
        if v > p or (v == p and not strict):
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(cache=True, nogil=True)
def _doc_rows_kernel(doc_ids, positions, epochs, doc_idx, sample_idx, shuffle_idx, inverse, sizes, limit,
                     out_doc, out_k, out_start, out_end, fill):
    """Rows k < limit holding tokens of each document: (doc, k, doc_start, doc_end). Returns
    (code, index, n rows); counts when not fill.

    Every inverse entry followed is checked against the map it inverts: the E positions of document d are
    ascending and doc_idx holds d at each (code 6, index d*E + c), and k = inverse[u] has shuffle_idx[k] == u
    (code 7, index u). So a damaged inverse file is an error, never a wrong or repeated row. The sample_idx
    rows found by the binary searches are checked to hold position p, with offsets inside the document."""
    s = np.int64(sample_idx.shape[0]) - 1
    m = np.int64(doc_idx.shape[0])
    n_k = np.int64(shuffle_idx.shape[0])
    n = 0
    for i in range(doc_ids.shape[0]):
        d = np.int64(doc_ids[i])
        size = np.int64(sizes[d])
        if size == 0:
            continue
        prev = np.int64(-1)
        for c in range(epochs):
            j = d * epochs + c
            p = np.int64(positions[j])
            if p <= prev or p >= m or np.int64(doc_idx[p]) != d:
                return 6, j, n
            prev = p
            u0 = max(_first_at_least(sample_idx, p, False) - 1, 0)
            u1 = min(_first_at_least(sample_idx, p, True) - 1, s - 1)
            for u in range(u0, u1 + 1):
                f = np.int64(sample_idx[u, 0])
                last = np.int64(sample_idx[u + 1, 0])
                if f < 0 or f > p:
                    return 2, u, n
                if last < p or last >= m:
                    return 2, u + 1, n
                start, end = _piece_bounds(p, f, np.int64(sample_idx[u, 1]), last, np.int64(sample_idx[u + 1, 1]),
                                           size)
                if start < 0 or start >= size:
                    return 3, u, n
                if end <= start or end > size:
                    return 3, u + 1, n
                k = np.int64(inverse[u])
                if k < 0 or k >= n_k or np.int64(shuffle_idx[k]) != u:
                    return 7, u, n
                if k >= limit:
                    continue
                if fill:
                    out_doc[n] = d
                    out_k[n] = k
                    out_start[n] = start
                    out_end[n] = end
                n += 1
    return 0, 0, n


@numba.njit(cache=True, nogil=True)
def _first_seen_kernel(shuffle_idx, sample_idx, doc_idx, sizes, limit, max_span, first):
    """first[p] = smallest sample index k < limit whose row holds tokens of doc_idx position p.
    Returns (code, index) of the first map entry out of range, (0, 0) if none."""
    n_docs = np.int64(sizes.shape[0])
    for k in range(limit):
        code, index, f, a, last, b = _row_ends(shuffle_idx, sample_idx, doc_idx, sizes, k, max_span)
        if code != 0:
            return code, index
        for p in range(f, last + 1):
            d = np.int64(doc_idx[p])
            if d < 0 or d >= n_docs:
                return 1, p
            s0, s1 = _piece_bounds(p, f, a, last, b, np.int64(sizes[d]))
            if s1 > s0 and first[p] > k:
                first[p] = k
    return 0, 0


@numba.njit(cache=True, nogil=True)
def _seen_counts_kernel(first, positions, epochs, doc_idx, sizes, never, hist):
    """hist[c] = non-empty documents whose occurrences are seen c times (c = 0..E); returns the earliest
    sample index at which any document is seen a second time, and that document (-1, -1 if none), and
    (code, index) of an inverse entry that does not point back at its document (6, d*E + c), else (0, 0)."""
    best_k = never
    best_doc = np.int64(-1)
    m = np.int64(doc_idx.shape[0])
    for d in range(sizes.shape[0]):
        if sizes[d] == 0:
            continue
        seen = 0
        m1 = never
        m2 = never
        prev = np.int64(-1)
        for c in range(epochs):
            j = d * epochs + c
            p = np.int64(positions[j])
            if p <= prev or p >= m or np.int64(doc_idx[p]) != d:
                return best_k, best_doc, 6, j
            prev = p
            v = first[p]
            if v != never:
                seen += 1
                if v < m1:
                    m2 = m1
                    m1 = v
                elif v < m2:
                    m2 = v
        hist[seen] += 1
        if m2 < best_k:
            best_k = m2
            best_doc = d
    return best_k, best_doc, 0, 0


# ----------------------------------------------------------------------------------------------- orders


def _check_step_slot(step: int, slot: int, batch_size: int, num_samples: int) -> int:
    step, slot = int(step), int(slot)
    if not 0 <= slot < batch_size:
        raise QueryError(f"slot {slot:,} is out of range; a step has slots 0..{batch_size - 1:,} (batch size {batch_size:,})")
    if step < 0:
        raise QueryError(f"step {step:,} is negative; steps start at 0")
    k = step * batch_size + slot
    if k >= num_samples:
        last = (num_samples - 1) // batch_size
        raise QueryError(
            f"step {step:,} slot {slot:,} is sample {k:,}, past the {num_samples:,} samples of this order "
            f"(last step with rows: {last:,})"
        )
    return k


def _check_sample(k: int, num_samples: int) -> int:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise QueryError(f"a sample index must be an integer, found {k!r}")
    k = int(k)
    if not 0 <= k < num_samples:
        raise QueryError(f"sample index {k:,} is out of range; this order has samples 0..{num_samples - 1:,}")
    return k


def _check_samples(ks: np.ndarray, num_samples: int) -> np.ndarray:
    ks = np.asarray(ks)
    if ks.ndim != 1:
        raise QueryError(f"sample indices must be a 1-D array, found shape {ks.shape}")
    if ks.size and not np.issubdtype(ks.dtype, np.integer):
        raise QueryError(f"sample indices must be integers, found {ks.dtype}")
    ks = ks.astype(np.int64, copy=False)
    if ks.size and (int(ks.min()) < 0 or int(ks.max()) >= num_samples):
        bad = int(ks[(ks < 0) | (ks >= num_samples)][0])
        raise QueryError(f"sample index {bad:,} is out of range; this order has samples 0..{num_samples - 1:,}")
    return ks


class _OrderBase(ABC):
    """What raw and preshuffled orders share: step/slot arithmetic, trained rows, batches; each order
    supplies :meth:`rows` and :meth:`spans`."""

    seq_length: int
    batch_size: int
    num_samples: int
    train_steps: int
    preshuffled: bool
    store: TokenStore

    @property
    def trained_samples(self) -> int:
        """Rows counted as trained: train_steps x batch_size."""
        return self.train_steps * self.batch_size

    def _set_train_steps(self, cfg: OrderConfig, default: int, what: str) -> None:
        """``cfg.train_steps``, or ``default``; refuse more trained rows than the order has samples."""
        self.train_steps = default if cfg.train_steps is None else cfg.train_steps
        if self.trained_samples > self.num_samples:
            raise ConfigError(
                f"train_steps {self.train_steps:,} x batch_size {cfg.batch_size:,} = {self.trained_samples:,} rows, "
                f"but the order has {self.num_samples:,} {what}; pass `train_steps` <= "
                f"{self.num_samples // cfg.batch_size:,}"
            )

    @property
    def full_steps(self) -> int:
        """Steps whose batch_size rows all exist: num_samples // batch_size."""
        return self.num_samples // self.batch_size

    def sample_index(self, step: int | np.ndarray, slot: int | np.ndarray) -> int | np.ndarray:
        """Global sample index of (step, slot): step * batch_size + slot, range-checked; an int64 array when
        step or slot is an array (broadcast), checked as a whole (the first bad pair is named)."""
        if np.ndim(step) == 0 and np.ndim(slot) == 0:
            return _check_step_slot(step, slot, self.batch_size, self.num_samples)
        steps, slots = np.broadcast_arrays(np.asarray(step, dtype=np.int64), np.asarray(slot, dtype=np.int64))
        ks = steps * self.batch_size + slots
        bad = (slots < 0) | (slots >= self.batch_size) | (steps < 0) | (ks >= self.num_samples)
        if bad.any():
            i = np.flatnonzero(bad.reshape(-1))[0]
            _check_step_slot(steps.reshape(-1)[i], slots.reshape(-1)[i], self.batch_size, self.num_samples)
        return ks

    def step_slot(self, k: int | np.ndarray) -> tuple[int, int] | tuple[np.ndarray, np.ndarray]:
        """(step, slot) of sample index k: k // batch_size, k % batch_size (ints, or arrays for an array)."""
        if isinstance(k, (int, np.integer)):
            return int(k) // self.batch_size, int(k) % self.batch_size
        ks = np.asarray(k)
        return ks // self.batch_size, ks % self.batch_size

    def step_rows(self, step: int, to_step: int | None = None) -> tuple[int, int]:
        """Sample indices [k0, k1) of steps step..to_step inclusive (default: step alone), range-checked."""
        to_step = step if to_step is None else to_step
        step, to_step = int(step), int(to_step)
        if to_step < step:
            raise QueryError(f"`to` {to_step:,} is before step {step:,}; expected `to` >= step")
        first = self.sample_index(step, 0)
        last = self.sample_index(to_step, self.batch_size - 1)
        return first, last + 1

    def trained(self, sample_indices: np.ndarray | int) -> np.ndarray | bool:
        """Whether each sample index is a trained row (k < train_steps x batch_size); a bool for an int.
        Rows from there up to num_samples exist in the order but training never read them."""
        if isinstance(sample_indices, (int, np.integer)) and not isinstance(sample_indices, (bool, np.bool_)):
            return int(sample_indices) < self.trained_samples
        return np.asarray(sample_indices) < self.trained_samples

    @abstractmethod
    def rows(self, sample_indices: np.ndarray) -> np.ndarray:
        """Rows of the given sample indices, (n, seq_length + 1), store dtype."""

    @abstractmethod
    def spans(self, k: int) -> list[dict[str, int]] | None:
        """Document pieces of row k (doc_id, doc_start, doc_end, sample_start), None without document identity."""

    def row(self, k: int) -> np.ndarray:
        """Row of sample index k: seq_length + 1 tokens of the store's dtype."""
        return self.rows(np.array([int(k)], dtype=np.int64))[0]

    def batch(self, step: int, to_step: int | None = None) -> np.ndarray:
        """Rows of steps step..to_step inclusive, (rows, seq_length + 1), in slot order."""
        k0, k1 = self.step_rows(step, to_step)
        return self.rows(np.arange(k0, k1, dtype=np.int64))


class TrainingOrder(_OrderBase):
    """A raw store (one item per document) read in GPT-NeoX's training order through its index maps."""

    preshuffled = False

    def __init__(self, store: TokenStore, maps: IndexMaps, cfg: OrderConfig):
        cfg.validate()
        self.store = store
        self.maps = maps
        self.cfg = cfg
        self.seq_length = cfg.seq_length
        self.batch_size = cfg.batch_size
        self.num_samples = maps.usable_samples
        self.epochs = maps.epochs
        self.n_docs = len(store)
        self._set_train_steps(cfg, min(cfg.num_samples, self.num_samples) // cfg.batch_size,
                              "usable samples (GPT2Dataset.__len__; GPT-NeoX wraps larger indices modulo it)")
        # Plain ndarray views of the memmaps: numba dispatches on them without the subclass slow path.
        self._doc_idx = np.asarray(maps.doc_idx)
        self._sample_idx = np.asarray(maps.sample_idx)
        self._shuffle_idx = np.asarray(maps.shuffle_idx)
        self._sizes = np.asarray(store.sizes)
        self._positions: np.ndarray | None = None
        self._inverse: np.ndarray | None = None
        self._span: int | None = None

    @property
    def _max_span(self) -> int:
        """Most doc_idx positions a valid row spans past its first: seq_length + 1 (each document after the
        first adds a token, save empty ones) plus every empty document's E copies. A bound for the kernels,
        so a damaged sample_idx cannot make them allocate or walk without end."""
        if self._span is None:
            self._span = self.seq_length + 1 + self.epochs * int(np.count_nonzero(self._sizes == 0))
        return self._span

    def _map_error(self, code: int, index: int) -> FormatError:
        """The FormatError for a kernel's (code, index), naming the map or inverse file at fault."""
        if int(code) == _ROW_TOKENS:
            return FormatError(self._corrupt(int(index)))
        arrays = {"doc_idx": self._doc_idx, "sample_idx": self._sample_idx, "shuffle_idx": self._shuffle_idx,
                  "doc_idx_inverse": self._positions, "shuffle_idx_inverse": self._inverse}
        paths = {**index_map_paths(self.store.prefix, self.cfg), **self.inverse_paths()}
        return map_error(int(code), int(index), arrays, paths, self.n_docs, self.store.prefix, self.cfg,
                         self._max_span)

    # -- rows

    def rows(self, sample_indices: np.ndarray) -> np.ndarray:
        """Rows of the given sample indices, (n, seq_length + 1), store dtype (GPT2Dataset.__getitem__)."""
        ks = _check_samples(sample_indices, self.num_samples)
        width = self.seq_length + 1
        out = np.empty((ks.size, width), dtype=self.store.dtype)
        if ks.size == 0:
            return out
        if len(self.store.parts) == 1:
            part = self.store.parts[0]
            pointers, tokens = np.asarray(part.pointers), np.asarray(part.tokens)

            def block(a: int, b: int) -> tuple[int, int]:
                code, index = _rows_kernel(ks[a:b], self._shuffle_idx, self._sample_idx, self._doc_idx, self._sizes,
                                           pointers, np.int64(part.dtype.itemsize), tokens, out[a:b].reshape(-1),
                                           np.int64(width), np.int64(self._max_span))
                return int(code), int(ks[a + index]) if code == _ROW_TOKENS else int(index)

            for code, index in run_blocks(block, ks.size, _ROWS_PER_BLOCK, 4 * POOL_THREADS):
                if code:
                    raise self._map_error(code, index)
            return out
        _, items, offsets, lengths = self.pieces(ks)
        flat = self.store.gather(items, offsets, lengths)
        if flat.size != ks.size * width:
            raise FormatError(self._corrupt(int(ks[0])))
        return flat.reshape(ks.size, width)

    def pieces(self, sample_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(row, item, offset, length) int64 arrays of every non-empty piece of the given rows, in order: piece
        i is document item[i]'s tokens [offset[i], offset[i] + length[i]), in the row sample_indices[row[i]]
        (GPT2Dataset.__getitem__'s walk, range-checked)."""
        ks = _check_samples(sample_indices, self.num_samples)
        code, index, *pieces = _pieces_kernel(ks, self._shuffle_idx, self._sample_idx, self._doc_idx, self._sizes,
                                              np.int64(self.seq_length + 1), np.int64(self._max_span))
        if code:
            raise self._map_error(code, int(ks[index]) if code == _ROW_TOKENS else index)
        return tuple(pieces)

    def row_pieces(self, sample_indices: np.ndarray) -> dict[str, np.ndarray]:
        """The non-empty pieces of many rows at once (what :meth:`spans` gives for one): equal-length int64
        arrays ``row`` (position in ``sample_indices``, ascending), ``doc_id``, ``doc_start``, ``doc_end``, in
        row order and, within a row, in token order. Rows whose pieces do not tile seq_length + 1 are a
        FormatError, as in :meth:`rows`."""
        row, items, offsets, lengths = self.pieces(sample_indices)
        return {"row": row, "doc_id": items, "doc_start": offsets, "doc_end": offsets + lengths}

    def _corrupt(self, k: int) -> str:
        return (f"sample {k:,}: the index maps do not assemble {self.seq_length + 1:,} tokens; they do not belong to "
                f"this store. Delete them and run `{build_command(self.store.prefix, self.cfg)}`")

    # -- spans

    def spans(self, k: int) -> list[dict[str, int]]:
        """Pieces of row k in order: document tokens [doc_start, doc_end) sit at row positions
        [sample_start, sample_start + doc_end - doc_start). Empty documents hold no tokens and are left out."""
        k = _check_sample(k, self.num_samples)
        _, items, offsets, lengths = self.pieces(np.array([k], dtype=np.int64))
        out = []
        pos = 0
        for d, s0, n in zip(items.tolist(), offsets.tolist(), lengths.tolist()):
            out.append({"doc_id": d, "doc_start": s0, "doc_end": s0 + n, "sample_start": pos})
            pos += n
        return out

    # -- inverse files

    def inverse_paths(self) -> dict[str, Path]:
        return inverse_paths(self.store.prefix, self.cfg)

    def build_inverse(self, progress: bool = True) -> dict[str, Path]:
        """Write the two inverse files (atomically) unless both exist; returns their paths."""
        paths = self.inverse_paths()
        if all(p.is_file() for p in paths.values()):
            ensure_digests(paths.values())  # a build killed before its records
            return paths
        if not paths["doc_idx_inverse"].is_file():
            counts = np.zeros(self.n_docs, dtype=np.uint8 if self.epochs < 256 else np.int32)
            positions = np.empty(self._doc_idx.size, dtype=np.int32)
            code, index = _doc_positions_kernel(self._doc_idx, np.int64(self.epochs), counts, positions)
            del counts
            if code:
                raise self._map_error(code, index)
            save_npy(paths["doc_idx_inverse"], positions)
            del positions
        if not paths["shuffle_idx_inverse"].is_file():
            inverse = np.empty(self._shuffle_idx.size, dtype=self._shuffle_idx.dtype)
            code, index = _inverse_permutation_kernel(self._shuffle_idx, inverse)
            if code:
                raise self._map_error(code, index)
            save_npy(paths["shuffle_idx_inverse"], inverse)
        ensure_digests(paths.values())  # FILE.sha256 beside each inverse file, for `pile-index verify`
        log.info("inverse files written beside %s", self.store.prefix)
        return paths

    def _load_inverse(self) -> tuple[np.ndarray, np.ndarray]:
        if self._positions is None or self._inverse is None:
            paths = self.inverse_paths()
            for kind, path in paths.items():
                if not path.is_file():
                    raise NotFoundError(
                        f"{path}: the {kind} file (needed for document -> steps) is missing; build it with "
                        f"`{build_command(self.store.prefix, self.cfg)}`"
                    )
            positions = np.load(paths["doc_idx_inverse"], mmap_mode="r")
            inverse = np.load(paths["shuffle_idx_inverse"], mmap_mode="r")
            if positions.shape != self._doc_idx.shape or positions.dtype != np.int32:
                raise FormatError(f"{paths['doc_idx_inverse']}: expected int32 {self._doc_idx.shape}, found "
                                  f"{positions.dtype} {positions.shape}; delete it and run `order build` again")
            if inverse.shape != self._shuffle_idx.shape or inverse.dtype != self._shuffle_idx.dtype:
                raise FormatError(f"{paths['shuffle_idx_inverse']}: expected {self._shuffle_idx.dtype} "
                                  f"{self._shuffle_idx.shape}, found {inverse.dtype} {inverse.shape}; delete it "
                                  f"and run `order build` again")
            # No spot checks here: every entry a query follows is checked against the map it inverts, in
            # the kernels (_doc_rows_kernel, _seen_counts_kernel), so a damaged entry is found when touched.
            self._positions, self._inverse = np.asarray(positions), np.asarray(inverse)
        return self._positions, self._inverse

    # -- document -> rows

    def _check_docs(self, doc_ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(doc_ids)
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise QueryError(f"doc_ids must be a 1-D integer array, found {ids.dtype} {ids.shape}")
        ids = ids.astype(np.int64, copy=False)
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= self.n_docs):
            bad = int(ids[(ids < 0) | (ids >= self.n_docs)][0])
            raise NotFoundError(f"doc_id {bad:,} is out of range; the store has documents 0..{self.n_docs - 1:,}")
        return ids

    def doc_rows(self, doc_ids: np.ndarray, limit: int | None = None,
                 max_occurrences: int | None = None) -> dict[str, np.ndarray]:
        """Every row (sample index < limit, default all usable samples) holding tokens of each document:
        equal-length int64 arrays doc_id, sample_index, doc_start, doc_end, grouped by input document.
        LimitError ``max_occurrences`` (None: no bound) when there are more rows than that: counted first,
        refused before any is written out."""
        ids = self._check_docs(doc_ids)
        positions, inverse = self._load_inverse()
        limit = self.num_samples if limit is None else int(limit)
        empty = np.empty(0, np.int64)
        args = (ids, positions, np.int64(self.epochs), self._doc_idx, self._sample_idx, self._shuffle_idx, inverse,
                self._sizes, np.int64(limit))
        code, index, n = _doc_rows_kernel(*args, empty, empty, empty, empty, False)
        if code:
            raise self._map_error(code, index)
        if max_occurrences is not None and n > max_occurrences:
            what = f"document {int(ids[0]):,}" if ids.size == 1 else f"{ids.size:,} documents"
            raise LimitError(f"{what} sits in {n:,} rows; max_occurrences={int(max_occurrences):,}",
                             "max_occurrences")
        out = {key: np.empty(n, np.int64) for key in ("doc_id", "sample_index", "doc_start", "doc_end")}
        _doc_rows_kernel(*args, out["doc_id"], out["sample_index"], out["doc_start"], out["doc_end"], True)
        return out

    def doc_steps(self, doc_id: int, max_occurrences: int | None = None) -> DocSteps:
        """Every trained row (sample index < train_steps * batch_size) holding tokens of ``doc_id``; at most
        ``max_occurrences`` of them (None: no bound; LimitError before they are expanded)."""
        r = self.doc_rows(np.array([int(doc_id)], dtype=np.int64), limit=self.trained_samples,
                          max_occurrences=max_occurrences)
        order = np.argsort(r["sample_index"], kind="stable")
        occ = []
        for i in order:
            k = int(r["sample_index"][i])
            step, slot = self.step_slot(k)
            occ.append(RowOccurrence(step=step, slot=slot, sample_index=k, doc_start=int(r["doc_start"][i]),
                                     doc_end=int(r["doc_end"][i])))
        return DocSteps(doc_id=int(doc_id), occurrences=occ, first_step=occ[0].step if occ else None,
                        last_step=occ[-1].step if occ else None)

    # -- facts

    def stats(self) -> OrderStats:
        """Epochs, sample counts, documents seen 0 / 1 / 2+ times within the trained rows (a document
        occurrence is seen when a trained row holds any of its tokens), and the first repeated document."""
        positions, _ = self._load_inverse()
        s = self._shuffle_idx.size
        dtype = np.uint32 if s < np.iinfo(np.uint32).max else np.int64
        never = np.iinfo(dtype).max
        first = np.full(self._doc_idx.size, never, dtype=dtype)
        code, index = _first_seen_kernel(self._shuffle_idx, self._sample_idx, self._doc_idx, self._sizes,
                                         np.int64(self.trained_samples), np.int64(self._max_span), first)
        if code:
            raise self._map_error(code, index)
        hist = np.zeros(self.epochs + 1, dtype=np.int64)
        best_k, best_doc, code, index = _seen_counts_kernel(first, positions, np.int64(self.epochs), self._doc_idx,
                                                            self._sizes, dtype(never), hist)
        del first
        if code:
            raise self._map_error(code, index)
        n_empty = int(np.count_nonzero(self._sizes == 0))
        repeat = None
        if int(best_doc) >= 0:
            k = int(best_k)
            step, slot = self.step_slot(k)
            repeat = FirstRepeat(step=step, slot=slot, sample_index=k, doc_id=int(best_doc))
        return OrderStats(
            epochs=int(self.epochs), tokens_per_epoch=int(self.maps.tokens_per_epoch), documents=int(self.n_docs),
            documents_empty=n_empty, seq_length=int(self.seq_length), samples_total=int(s),
            samples_usable=int(self.num_samples), batch_size=int(self.batch_size), train_steps=int(self.train_steps),
            trained_samples=int(self.trained_samples),
            documents_seen={"0": int(hist[0]), "1": int(hist[1]), "2+": int(hist[2:].sum())}, first_repeat=repeat,
        )


class PreshuffledOrder(_OrderBase):
    """A preshuffled store: item k is training sample k (seq_length + 1 tokens); no document identity."""

    preshuffled = True

    def __init__(self, store: TokenStore, cfg: OrderConfig):
        self.store = store
        self.cfg = cfg
        self.seq_length = cfg.seq_length
        self.batch_size = cfg.batch_size
        self.num_samples = len(store)
        width = cfg.seq_length + 1
        sizes = store.sizes
        if self.num_samples == 0:
            raise FormatError(f"{store.prefix}: the preshuffled store has no rows")
        for k in (0, self.num_samples - 1):
            if int(sizes[k]) != width:
                raise FormatError(
                    f"{store.prefix}: item {k:,} has {int(sizes[k]):,} tokens; a preshuffled store for seq_length "
                    f"{cfg.seq_length:,} has {width:,} per item. Check `seq_length` or drop `preshuffled`"
                )
        self._set_train_steps(cfg, self.full_steps, "rows in the preshuffled store")

    def rows(self, sample_indices: np.ndarray) -> np.ndarray:
        ks = _check_samples(sample_indices, self.num_samples)
        width = self.seq_length + 1
        if ks.size == 0:
            return np.empty((0, width), dtype=self.store.dtype)
        sizes = np.asarray(self.store.sizes)[ks]
        if np.any(sizes != width):
            bad = int(np.flatnonzero(sizes != width)[0])
            raise FormatError(f"{self.store.prefix}: item {int(ks[bad]):,} has {int(sizes[bad]):,} tokens, "
                              f"expected {width:,} (seq_length + 1)")
        k0 = int(ks[0])
        if len(self.store.parts) == 1 and ks.size > 1 and int(ks[-1]) - k0 == ks.size - 1 and np.all(np.diff(ks) == 1):
            part = self.store.parts[0]
            start = int(part.pointers[k0]) // part.dtype.itemsize
            return np.array(part.tokens[start : start + ks.size * width]).reshape(ks.size, width)
        flat = self.store.gather(ks, np.zeros(ks.size, np.int64), np.full(ks.size, width, np.int64))
        return flat.reshape(ks.size, width)

    def spans(self, k: int) -> None:
        """A preshuffled store has no document identity."""
        _check_sample(k, self.num_samples)
        return None


Order = TrainingOrder | PreshuffledOrder


def open_order(prefixes: str | os.PathLike | Sequence[str | os.PathLike], cfg: OrderConfig,
               preshuffled: bool = False, build: bool = False, progress: bool = False,
               max_epochs: int | None = MAX_EPOCHS) -> Order:
    """Open a store in training order: raw + index maps (built and inverted first when ``build``), or preshuffled.

    With ``build``, an order of more than ``max_epochs`` epochs is refused (LimitError, with the epochs and
    bytes it would take) before any of its five files is written; None lifts the bound."""
    cfg.validate()
    store = prefixes if isinstance(prefixes, TokenStore) else TokenStore(prefixes)
    if preshuffled:
        return PreshuffledOrder(store, cfg)
    if build:
        files = [*index_map_paths(store.prefix, cfg).values(), *inverse_paths(store.prefix, cfg).values()]
        if not all(p.is_file() for p in files):
            check_build_size(store.sizes, cfg, max_epochs)
    maps = (build_index_mappings(store, cfg, progress=progress, max_epochs=max_epochs) if build
            else load_index_mappings(store, cfg))
    order = TrainingOrder(store, maps, cfg)
    if build:
        order.build_inverse(progress=progress)
    return order


# ----------------------------------------------------------------------------------------------- records


def describe_sample(order: Order, step: int, slot: int, tokenizer=None, documents=None) -> Sample:
    """One row: step, slot, sample_index, tokens, spans (None when preshuffled), ``text`` with a tokenizer,
    and per-span ``metadata`` (the documents-table row, as ``/v1/documents`` shows it) with a documents table."""
    k = order.sample_index(step, slot)
    tokens = order.row(k).tolist()
    pieces = order.spans(k)
    spans = None
    if pieces is not None:
        rows = documents.rows(sorted({p["doc_id"] for p in pieces})) if documents is not None else {}
        spans = [Span(**p, metadata=public_metadata(rows.get(p["doc_id"]))) for p in pieces]
    text = tokenizer.decode(tokens, skip_special_tokens=False) if tokenizer is not None else None
    return Sample(step=int(step), slot=int(slot), sample_index=k, trained=bool(order.trained(k)), tokens=tokens,
                  spans=spans, text=text)


def describe_batch(order: Order, step: int, to_step: int | None = None,
                   max_rows: int | None = None) -> tuple[np.ndarray, BatchInfo]:
    """Rows of steps step..to_step (inclusive) and what they are: step, to_step, first_sample_index, rows,
    seq_length, train_steps, ``trained`` (one bool per step of the range: whether training read that step's
    rows; rows of one step share it) and ``trained_rows`` (the first that many rows are trained). LimitError
    ``max_rows_per_request`` before any row is read when the range holds more than ``max_rows`` rows (None: no
    bound)."""
    to_step = int(step) if to_step is None else int(to_step)
    if max_rows is not None:
        n_rows = (to_step - int(step) + 1) * int(order.batch_size)
        if n_rows > max_rows:
            raise LimitError(f"steps {int(step):,}..{to_step:,} are {n_rows:,} rows; max_rows_per_request="
                             f"{int(max_rows):,}. Ask for fewer steps per request", "max_rows_per_request")
    rows = order.batch(step, to_step)
    trained = order.trained(order.sample_index(np.arange(int(step), to_step + 1, dtype=np.int64), 0))
    info = BatchInfo(step=int(step), to_step=to_step, first_sample_index=order.sample_index(step, 0),
                     rows=int(rows.shape[0]), seq_length=int(order.seq_length), train_steps=int(order.train_steps),
                     trained=[bool(x) for x in trained], trained_rows=int(trained.sum()) * int(order.batch_size))
    return rows, info


def verify_orders(raw: TrainingOrder, pre: PreshuffledOrder, start: int = 0, stop: int | None = None,
                  chunk: int = 1024, progress: bool = False) -> OrderVerify:
    """Compare rows [start, stop) of a preshuffled store with raw + index maps; report the first mismatch."""
    if raw.seq_length != pre.seq_length:
        raise ConfigError(f"seq_length differs: raw {raw.seq_length:,}, preshuffled {pre.seq_length:,}")
    limit = min(raw.num_samples, pre.num_samples)
    stop = limit if stop is None else int(stop)
    if not 0 <= start <= stop <= limit:
        raise QueryError(f"row range {start:,}..{stop:,} must lie within 0..{limit:,} (rows both stores have)")
    bar = None
    if progress:
        from ..progress import progress_bar

        bar = progress_bar(total=stop - start, desc="order verify", unit="row", leave=False)
    mismatch = None
    k = start
    while k < stop:
        k1 = min(stop, k + chunk)
        ks = np.arange(k, k1, dtype=np.int64)
        a, b = raw.rows(ks), pre.rows(ks)
        diff = a != b
        if diff.any():
            r, col = (int(x) for x in np.argwhere(diff)[0])
            kk = k + r
            step, slot = raw.step_slot(kk)
            mismatch = Mismatch(sample_index=kk, step=step, slot=slot, position=col, expected=int(a[r, col]),
                                found=int(b[r, col]))
            k = kk + 1
            break
        k = k1
        if bar is not None:
            bar.update(k1 - ks[0])
    if bar is not None:
        bar.close()
    return OrderVerify(start=start, stop=stop, checked=k - start, equal=mismatch is None, first_mismatch=mismatch)
