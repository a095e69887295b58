"""The GPT-NeoX indexed dataset: ``PREFIX.bin`` + ``PREFIX.idx`` ("MMIDIDX"), read and written exactly.

Reference: EleutherAI/gpt-neox v1.0, ``megatron/data/indexed_dataset.py`` (``MMapIndexedDataset`` and
``MMapIndexedDatasetBuilder``); layout in ``docs/FORMATS.md``. Upstream names are kept:
``sizes``, ``pointers``, ``doc_idx``, dtype codes.

``.idx`` layout, little-endian, no padding::

    magic b"MMIDIDX\\x00\\x00" | version u64 = 1 | dtype code u8 | len u64 | doc_count u64
    sizes int32[len] | pointers int64[len] | doc_idx int64[doc_count]

Unlike upstream (which validates with ``assert`` and reads past an item when asked), every read here is
checked and a violation raises :class:`FormatError` naming the file, the field, the expected and found value.
Newer Megatron-core files use the same magic but swap codes 6/7 (float64/float32) and may append a
``sequence_modes`` int8 array: both are detected from the byte counts, never guessed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from pathlib import Path

import numpy as np

from ..atomic import atomic_open
from ..errors import FormatError, QueryError

HDR_MAGIC = b"MMIDIDX\x00\x00"
HEADER_BYTES = 34  # 9 magic + 8 version + 1 dtype + 8 len + 8 doc_count
CHECK_CHUNK = 1 << 24  # items validated per pass when opening an index

# GPT-NeoX v1.0 codes (indexed_dataset.dtypes).
DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.uint8),
    2: np.dtype(np.int8),
    3: np.dtype(np.int16),
    4: np.dtype(np.int32),
    5: np.dtype(np.int64),
    6: np.dtype(np.float32),
    7: np.dtype(np.float64),
    8: np.dtype(np.uint16),
}
# Megatron-core's DType enum swaps the two float codes.
_MEGATRON_CORE_FLOATS = {6: np.dtype(np.float64), 7: np.dtype(np.float32)}


def code_of(dtype: np.dtype | type) -> int:
    """The GPT-NeoX v1.0 dtype code of ``dtype``; ConfigError if it has none (e.g. uint32)."""
    dt = np.dtype(dtype)
    for code, candidate in DTYPES.items():
        if candidate == dt:
            return code
    raise FormatError(
        f"dtype {dt} has no GPT-NeoX indexed-dataset code; expected one of "
        f"{', '.join(str(d) for d in DTYPES.values())}. Use int32 for vocabularies of 65,500 or more."
    )


def best_fitting_dtype(vocab_size: int | None) -> np.dtype:
    """GPT-NeoX's rule (``best_fitting_dtype``): uint16 below 65,500 entries, else int32.

    The MMIDIDX code table has no uint32, so int32 is what GPT-NeoX writes for large vocabularies.
    """
    if vocab_size is not None and vocab_size < 65500:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


def data_file_path(prefix: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(prefix)}.bin")


def index_file_path(prefix: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(prefix)}.idx")


def strip_prefix(path: str | os.PathLike) -> str:
    """Accept ``PREFIX``, ``PREFIX.bin`` or ``PREFIX.idx`` and return ``PREFIX``."""
    p = os.fspath(path)
    for ext in (".bin", ".idx"):
        if p.endswith(ext):
            return p[: -len(ext)]
    return p


class MMapIndex:
    """The parsed, validated ``.idx`` file. Arrays are read-only memmap views."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FormatError(f"{self.path}: index file not found; expected PREFIX.idx beside PREFIX.bin")
        file_size = self.path.stat().st_size
        if file_size < HEADER_BYTES:
            raise FormatError(
                f"{self.path}: header: expected at least {HEADER_BYTES} bytes, found {file_size:,}; the file is truncated"
            )
        with open(self.path, "rb") as f:
            head = f.read(HEADER_BYTES)
        magic = head[:9]
        if magic != HDR_MAGIC:
            raise FormatError(
                f"{self.path}: magic: expected {HDR_MAGIC!r}, found {magic!r}; not a GPT-NeoX MMIDIDX index "
                f"(the older 'TNTIDX' lazy format is not supported)"
            )
        (version,) = struct.unpack("<Q", head[9:17])
        if version != 1:
            raise FormatError(f"{self.path}: version: expected 1, found {version}")
        (code,) = struct.unpack("<B", head[17:18])
        if code not in DTYPES:
            raise FormatError(f"{self.path}: dtype code: expected one of {sorted(DTYPES)}, found {code}")
        (n, doc_count) = struct.unpack("<QQ", head[18:34])
        expected = HEADER_BYTES + 12 * n + 8 * doc_count
        self.sequence_modes: np.ndarray | None = None
        self.flavor = "gpt-neox"
        if file_size == expected + n and n > 0:
            self.flavor = "megatron-core"  # trailing int8 sequence_modes[len]
        elif file_size != expected:
            raise FormatError(
                f"{self.path}: size: header says len={n:,} doc_count={doc_count:,} so the file must be "
                f"{expected:,} bytes, found {file_size:,}; the file is truncated or its counts are wrong"
            )
        self.dtype_code = int(code)
        self.dtype = DTYPES[code]
        self._len = int(n)
        self._doc_count = int(doc_count)
        mm = np.memmap(self.path, dtype=np.uint8, mode="r") if file_size else np.zeros(0, np.uint8)
        off = HEADER_BYTES
        self.sizes = mm[off : off + 4 * n].view(np.int32)
        off += 4 * n
        self.pointers = mm[off : off + 8 * n].view(np.int64)
        off += 8 * n
        self.doc_idx = mm[off : off + 8 * doc_count].view(np.int64)
        off += 8 * doc_count
        if self.flavor == "megatron-core":
            self.sequence_modes = mm[off : off + n].view(np.int8)
        self._check()

    def _check(self) -> None:
        n = self._len
        if n and int(self.sizes.min()) < 0:
            bad = int(np.argmax(self.sizes < 0))
            raise FormatError(f"{self.path}: sizes[{bad:,}]: expected >= 0, found {int(self.sizes[bad]):,}")
        if n:
            # Byte offsets must be the running sum of sizes * itemsize. The itemsize is read off the
            # pointers, which settles the float32/float64 code ambiguity between NeoX and Megatron-core.
            self._resolve_itemsize()
            # Checked in chunks: whole-array temporaries would cost ~24 bytes per item (3 GB for the
            # deduped Pile's 134M documents).
            itemsize = self.dtype.itemsize
            running = 0
            for lo in range(0, n, CHECK_CHUNK):
                hi = min(n, lo + CHECK_CHUNK)
                sz = self.sizes[lo:hi].astype(np.int64) * itemsize
                expected = np.cumsum(sz) - sz + running
                mismatch = np.flatnonzero(expected != self.pointers[lo:hi])
                if mismatch.size:
                    i = int(mismatch[0])
                    raise FormatError(
                        f"{self.path}: pointers[{lo + i:,}]: expected {int(expected[i]):,} (sum of sizes before it "
                        f"x {itemsize}), found {int(self.pointers[lo + i]):,}; the index is corrupt"
                    )
                running = int(expected[-1] + sz[-1])
        if self._doc_count:
            d = self.doc_idx
            if int(d[0]) != 0:
                raise FormatError(f"{self.path}: doc_idx[0]: expected 0, found {int(d[0]):,}")
            for lo in range(0, self._doc_count - 1, CHECK_CHUNK):
                step = np.diff(d[lo : lo + CHECK_CHUNK + 1])
                if bool(np.any(step < 0)):
                    i = lo + int(np.argmax(step < 0)) + 1
                    raise FormatError(f"{self.path}: doc_idx[{i:,}]: expected non-decreasing, found {int(d[i]):,}")
            if int(d[-1]) > n:
                raise FormatError(f"{self.path}: doc_idx[-1]: expected <= len={n:,}, found {int(d[-1]):,}")

    def _resolve_itemsize(self) -> None:
        nz = np.flatnonzero(self.sizes[:-1])
        if nz.size == 0:
            return
        i = int(nz[0])
        step = int(self.pointers[i + 1] - self.pointers[i])
        if step == int(self.sizes[i]) * self.dtype.itemsize:
            return
        alt = _MEGATRON_CORE_FLOATS.get(self.dtype_code)
        if alt is not None and step == int(self.sizes[i]) * alt.itemsize:
            self.dtype = alt
            self.flavor = "megatron-core"

    def __len__(self) -> int:
        return self._len

    @property
    def doc_count(self) -> int:
        return self._doc_count

    @property
    def data_bytes(self) -> int:
        """Bytes the ``.bin`` must have: pointers[-1] + sizes[-1] * itemsize."""
        if self._len == 0:
            return 0
        return int(self.pointers[-1]) + int(self.sizes[-1]) * self.dtype.itemsize


def _of_index(name: str) -> property:
    """A read-only attribute of :class:`IndexedDataset` that is its index's attribute ``name``."""
    return property(lambda self: getattr(self.index, name), doc=f"``index.{name}``, under GPT-NeoX's name")


class IndexedDataset:
    """One ``PREFIX.bin/.idx`` pair, validated, with zero-copy read access to items.

    ``tokens`` is the whole ``.bin`` as a read-only 1-D memmap of the store's dtype; ``get`` returns views.
    """

    def __init__(self, prefix: str | os.PathLike):
        self.prefix = strip_prefix(prefix)
        self.index = MMapIndex(index_file_path(self.prefix))
        bin_path = data_file_path(self.prefix)
        if not bin_path.is_file():
            raise FormatError(f"{bin_path}: data file not found; expected it beside {self.index.path}")
        found = bin_path.stat().st_size
        if found != self.index.data_bytes:
            raise FormatError(
                f"{bin_path}: size: the index says {self.index.data_bytes:,} bytes "
                f"(pointers[-1] + sizes[-1] x {self.dtype.itemsize}), found {found:,}; "
                f"the .bin is truncated or belongs to another .idx"
            )
        self.bin_path = bin_path
        if found:
            self.tokens = np.memmap(bin_path, dtype=self.dtype, mode="r")
        else:
            self.tokens = np.zeros(0, dtype=self.dtype)
        self._fingerprint: str | None = None

    # Upstream names: the index's arrays (np.ndarray) and dtype (np.dtype), read through.
    sizes = _of_index("sizes")
    pointers = _of_index("pointers")
    doc_idx = _of_index("doc_idx")
    dtype = _of_index("dtype")

    def __len__(self) -> int:
        return len(self.index)

    @property
    def n_tokens(self) -> int:
        return self.index.data_bytes // self.dtype.itemsize

    def get(self, idx: int, offset: int = 0, length: int | None = None) -> np.ndarray:
        """Tokens of item ``idx`` from ``offset``, ``length`` of them (all the rest if None). A view."""
        n = len(self)
        if not 0 <= idx < n:
            raise QueryError(f"item {idx:,} is out of range; {self.prefix} has items 0..{n - 1:,}")
        size = int(self.sizes[idx])
        if length is None:
            length = size - offset
        if offset < 0 or length < 0 or offset + length > size:
            raise QueryError(
                f"item {idx:,} has {size:,} tokens; offset={offset:,} length={length:,} reaches past its end"
            )
        start = int(self.pointers[idx]) // self.dtype.itemsize + offset
        return self.tokens[start : start + length]

    def fingerprint(self) -> str:
        """sha256 over the dtype, counts, ``.bin`` size and sizes: changes when the store does."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(f"mmidx:{self.dtype.str}:{len(self)}:{self.index.doc_count}:{self.index.data_bytes}".encode())
            h.update(np.ascontiguousarray(self.sizes).tobytes())
            h.update(np.ascontiguousarray(self.doc_idx).tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint


class IndexedDatasetWriter:
    """Streams items into ``PREFIX.bin`` and ``PREFIX.idx`` with the exact bytes GPT-NeoX's builder writes.

    Both files are written under temp names and renamed only in :meth:`finalize`, ``.bin`` first and
    ``.idx`` last, so an interrupted write never leaves a pair that reads as valid.
    Use as a context manager; an exception discards the partial files.
    """

    def __init__(self, prefix: str | os.PathLike, dtype: np.dtype | type):
        self.prefix = strip_prefix(prefix)
        self.dtype = np.dtype(dtype)
        self.code = code_of(self.dtype)
        self._stack = contextlib.ExitStack()  # holds the temp .bin: closed cleanly it is renamed into place
        self._bin = self._stack.enter_context(atomic_open(data_file_path(self.prefix), "wb"))
        self._sizes = np.empty(1 << 16, dtype=np.int32)
        self._n = 0
        # numpy buffers, not lists: a list costs ~36 bytes per document (~5 GB for the deduped Pile).
        self._doc_idx = np.zeros(1 << 16, dtype=np.int64)
        self._n_docs = 1  # doc_idx starts with 0
        self._done = False

    def add_item(self, tokens: np.ndarray) -> None:
        arr = np.asarray(tokens)
        if arr.dtype != self.dtype:
            arr = arr.astype(self.dtype)
        if self._n == self._sizes.size:
            self._sizes = np.resize(self._sizes, self._sizes.size * 2)
        self._sizes[self._n] = arr.size
        self._n += 1
        self._bin.write(np.ascontiguousarray(arr).tobytes())

    def end_document(self) -> None:
        if self._n_docs == self._doc_idx.size:
            self._doc_idx = np.resize(self._doc_idx, self._doc_idx.size * 2)
        self._doc_idx[self._n_docs] = self._n
        self._n_docs += 1

    def add_document(self, tokens: np.ndarray) -> None:
        """One item per document, as GPT-NeoX's preprocess_data writes."""
        self.add_item(tokens)
        self.end_document()

    def add_rows(self, rows: np.ndarray) -> None:
        """Each row of the 2-D ``rows`` as one item and one document: the bytes of ``add_document`` per row,
        in one write (a preshuffled store holds one training row per item)."""
        arr = np.asarray(rows)
        if arr.ndim != 2:
            raise QueryError(f"rows: expected a 2-D array (rows, tokens), found shape {arr.shape}")
        n = arr.shape[0]
        if arr.dtype != self.dtype:
            arr = arr.astype(self.dtype)
        while self._n + n > self._sizes.size:
            self._sizes = np.resize(self._sizes, self._sizes.size * 2)
        while self._n_docs + n > self._doc_idx.size:
            self._doc_idx = np.resize(self._doc_idx, self._doc_idx.size * 2)
        self._sizes[self._n : self._n + n] = arr.shape[1]
        self._doc_idx[self._n_docs : self._n_docs + n] = np.arange(self._n + 1, self._n + n + 1)
        self._n += n
        self._n_docs += n
        self._bin.write(np.ascontiguousarray(arr).tobytes())

    def finalize(self) -> None:
        sizes = self._sizes[: self._n]
        self._stack.close()
        write_index(index_file_path(self.prefix), self.dtype, sizes, self._doc_idx[: self._n_docs])
        self._done = True

    def __enter__(self) -> IndexedDatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._done:
            return
        if exc_type is None:
            self.finalize()
        else:  # the error passes through atomic_open's exit, which removes the temp .bin
            self._done = True
            self._stack.__exit__(exc_type, exc, tb)


def write_index(path: str | os.PathLike, dtype: np.dtype, sizes: np.ndarray, doc_idx: np.ndarray) -> None:
    """Write an ``.idx`` for ``sizes`` / ``doc_idx`` atomically."""
    dtype = np.dtype(dtype)
    sizes = np.asarray(sizes, dtype=np.int32)
    pointers = np.zeros(sizes.size, dtype=np.int64)
    if sizes.size > 1:
        np.cumsum(sizes[:-1].astype(np.int64) * dtype.itemsize, out=pointers[1:])
    doc_idx = np.asarray(doc_idx, dtype=np.int64)
    with atomic_open(path, "wb") as f:
        f.write(HDR_MAGIC)
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<B", code_of(dtype)))
        f.write(struct.pack("<Q", sizes.size))
        f.write(struct.pack("<Q", doc_idx.size))
        f.write(sizes.tobytes(order="C"))
        f.write(pointers.tobytes(order="C"))
        f.write(doc_idx.tobytes(order="C"))


def write_indexed(prefix: str | os.PathLike, documents, dtype: np.dtype | type) -> None:
    """Write an iterable of token arrays as one item per document."""
    with IndexedDatasetWriter(prefix, dtype) as w:
        for doc in documents:
            w.add_document(np.asarray(doc))
