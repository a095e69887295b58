"""A token store: one or more GPT-NeoX ``.bin/.idx`` prefixes read as one sequence of items.

Item ``i`` of the store is item ``i - item_offsets[p]`` of part ``p``; this is how GPT-NeoX sees a list of
data paths concatenated, and how the raw Pythia idxmaps read once their shards are joined. Reads are
zero-copy memmap views; a gather of many (item, offset, length) pieces runs in a numba kernel.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numba
import numpy as np

from .. import files
from ..errors import ConfigError, QueryError
from .indexed import IndexedDataset, strip_prefix


@numba.njit(cache=True, nogil=True)
def _gather_kernel(tokens, starts, lengths, out, out_pos):
    """Copy tokens[starts[i] : starts[i] + lengths[i]] to out[out_pos[i] : ...] for every i.

    Indices are unsigned so numba can drop the negative-index wrap checks and vectorise the copy
    (measured 4.7x faster than int64 indices)."""
    for i in range(starts.shape[0]):
        s = starts[i]
        o = out_pos[i]
        for j in range(lengths[i]):
            out[o + j] = tokens[s + j]


def documents_table_path(prefix: str | os.PathLike) -> Path:
    """Where a store's document table lives: ``PREFIX.documents.parquet``."""
    return files.documents_path(strip_prefix(prefix))


class TokenStore:
    """Several prefixes as one store of items (documents, or rows of a preshuffled store)."""

    def __init__(self, prefixes: str | os.PathLike | Sequence[str | os.PathLike]):
        if isinstance(prefixes, (str, os.PathLike)):
            prefixes = [prefixes]
        if not prefixes:
            raise ConfigError("TokenStore needs at least one PREFIX (the path of PREFIX.bin without .bin)")
        self.parts = [IndexedDataset(p) for p in prefixes]
        dtypes = {p.dtype for p in self.parts}
        if len(dtypes) != 1:
            listing = ", ".join(f"{p.prefix} ({p.dtype})" for p in self.parts)
            raise ConfigError(f"prefixes of one store must share a dtype; found {listing}")
        self.dtype: np.dtype = self.parts[0].dtype
        counts = np.array([len(p) for p in self.parts], dtype=np.int64)
        self.item_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if len(self.parts) == 1:
            self.sizes = self.parts[0].sizes
        else:
            self.sizes = np.concatenate([np.asarray(p.sizes) for p in self.parts]).astype(np.int32)
        self._cum_tokens: np.ndarray | None = None

    def __reduce__(self) -> tuple:
        """A store pickles as its prefixes: a Ray worker (:mod:`pile_index.fanout`) reopens and checks the files
        instead of receiving copies of the memmapped arrays."""
        return (TokenStore, (self.prefixes,))

    @property
    def prefixes(self) -> list[str]:
        return [p.prefix for p in self.parts]

    @property
    def prefix(self) -> str:
        """The first prefix: where derived files (index maps, n-gram index, documents table) live."""
        return self.parts[0].prefix

    def __len__(self) -> int:
        return int(self.item_offsets[-1])

    @property
    def n_tokens(self) -> int:
        return sum(p.n_tokens for p in self.parts)

    def token_offsets(self) -> np.ndarray:
        """int64[len + 1]: token position of each item's start in the concatenated store."""
        if self._cum_tokens is None:
            c = np.zeros(len(self) + 1, dtype=np.int64)
            np.cumsum(self.sizes, out=c[1:])
            self._cum_tokens = c
        return self._cum_tokens

    def locate_item(self, idx: int) -> tuple[int, int]:
        """(part, item within part) of store item ``idx``."""
        n = len(self)
        if not 0 <= idx < n:
            raise QueryError(f"item {idx:,} is out of range; the store has items 0..{n - 1:,}")
        part = int(np.searchsorted(self.item_offsets, idx, side="right")) - 1
        return part, idx - int(self.item_offsets[part])

    def get(self, idx: int, offset: int = 0, length: int | None = None) -> np.ndarray:
        part, local = self.locate_item(int(idx))
        return self.parts[part].get(local, offset, length)

    def __getitem__(self, idx: int) -> np.ndarray:
        return self.get(idx)

    def gather(self, items: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Concatenate ``get(items[i], offsets[i], lengths[i])`` for all i into one new array."""
        items = np.asarray(items, dtype=np.int64)
        offsets = np.asarray(offsets, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        if not (items.shape == offsets.shape == lengths.shape):
            raise QueryError("gather: items, offsets and lengths must have the same shape")
        n = len(self)
        if items.size and (items.min() < 0 or items.max() >= n):
            raise QueryError(f"gather: an item is out of range 0..{n - 1:,}")
        sizes = np.asarray(self.sizes)[items] if items.size else np.zeros(0, np.int64)
        if items.size and (offsets.min() < 0 or lengths.min() < 0 or np.any(offsets + lengths > sizes)):
            bad = int(np.flatnonzero((offsets < 0) | (lengths < 0) | (offsets + lengths > sizes))[0])
            raise QueryError(
                f"gather: piece {bad:,} (item {int(items[bad]):,}, offset {int(offsets[bad]):,}, "
                f"length {int(lengths[bad]):,}) reaches past the item's {int(sizes[bad]):,} tokens"
            )
        out_pos = np.zeros(items.size, dtype=np.uint64)
        if items.size > 1:
            np.cumsum(lengths[:-1], out=out_pos[1:])
        out = np.empty(int(lengths.sum()), dtype=self.dtype)
        ulen = lengths.astype(np.uint64)
        if len(self.parts) == 1:
            part = self.parts[0]
            starts = (np.asarray(part.pointers)[items] // part.dtype.itemsize + offsets).astype(np.uint64)
            _gather_kernel(part.tokens, starts, ulen, out, out_pos)
            return out
        part_of = np.searchsorted(self.item_offsets, items, side="right") - 1
        for p in np.unique(part_of):
            sel = np.flatnonzero(part_of == p)
            part = self.parts[p]
            local = items[sel] - self.item_offsets[p]
            starts = (np.asarray(part.pointers)[local] // part.dtype.itemsize + offsets[sel]).astype(np.uint64)
            _gather_kernel(part.tokens, starts, ulen[sel], out, out_pos[sel])
        return out

    def fingerprint(self) -> str:
        """sha256 over the parts' fingerprints in order: derived files record it and refuse a mismatch."""
        h = hashlib.sha256()
        for p in self.parts:
            h.update(p.fingerprint().encode())
        return h.hexdigest()

    def documents_path(self) -> Path:
        return documents_table_path(self.prefix)
