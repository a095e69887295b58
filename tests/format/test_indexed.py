"""The GPT-NeoX MMIDIDX format: byte identity with an independent reference writer, round trips,
and every corruption raising a FormatError that names the file and field."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pile_index import FormatError, IndexedDataset, IndexedDatasetWriter, QueryError, TokenStore, write_indexed
from pile_index.format import DTYPES, best_fitting_dtype, code_of

# Written from docs/FORMATS.md ("The indexed dataset"), independently of pile_index.format.indexed.
REF_CODES = {np.uint8: 1, np.int8: 2, np.int16: 3, np.int32: 4, np.int64: 5, np.float32: 6, np.float64: 7, np.uint16: 8}


def reference_write(prefix: str, docs: list[np.ndarray], dtype) -> None:
    dt = np.dtype(dtype)
    with open(prefix + ".bin", "wb") as f:
        for d in docs:
            f.write(np.asarray(d, dtype=dt).tobytes())
    sizes = [len(d) for d in docs]
    pointers, addr = [], 0
    for s in sizes:
        pointers.append(addr)
        addr += s * dt.itemsize
    doc_idx = list(range(len(docs) + 1))
    with open(prefix + ".idx", "wb") as f:
        f.write(b"MMIDIDX\x00\x00")
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<B", REF_CODES[dt.type]))
        f.write(struct.pack("<Q", len(sizes)))
        f.write(struct.pack("<Q", len(doc_idx)))
        for s in sizes:
            f.write(struct.pack("<i", s))
        for p in pointers:
            f.write(struct.pack("<q", p))
        for d in doc_idx:
            f.write(struct.pack("<q", d))


def _docs(rng, n, dtype, max_len=50):
    hi = 100 if np.dtype(dtype).kind == "f" else min(np.iinfo(dtype).max, 60000)
    return [rng.integers(0, hi, size=int(rng.integers(0, max_len))).astype(dtype) for _ in range(n)]


@pytest.mark.parametrize("dtype", list(REF_CODES))
def test_bytes_identical_to_reference_writer(tmp_path, dtype):
    rng = np.random.default_rng(0)
    docs = _docs(rng, 25, dtype)
    write_indexed(tmp_path / "ours", docs, dtype)
    reference_write(str(tmp_path / "ref"), docs, dtype)
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"ours{ext}").read_bytes() == (tmp_path / f"ref{ext}").read_bytes()
    ds = IndexedDataset(tmp_path / "ref")
    assert ds.dtype == np.dtype(dtype)
    for i, d in enumerate(docs):
        np.testing.assert_array_equal(ds.get(i), d)


def test_code_table_and_dtype_rule():
    assert code_of(np.uint16) == 8 and code_of(np.int32) == 4 and DTYPES[6] == np.float32
    with pytest.raises(FormatError, match="uint32"):
        code_of(np.uint32)
    assert best_fitting_dtype(50277) == np.uint16
    assert best_fitting_dtype(65500) == np.int32
    assert best_fitting_dtype(None) == np.int32


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=0, max_size=30),
    dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.int64]),
    seed=st.integers(0, 2**31),
)
def test_round_trip_property(tmp_path_factory, sizes, dtype, seed):
    tmp = tmp_path_factory.mktemp("rt")
    rng = np.random.default_rng(seed)
    hi = min(np.iinfo(dtype).max, 50000)
    docs = [rng.integers(0, hi, size=s).astype(dtype) for s in sizes]
    write_indexed(tmp / "x", docs, dtype)
    reference_write(str(tmp / "r"), docs, dtype)
    assert (tmp / "x.idx").read_bytes() == (tmp / "r.idx").read_bytes()
    ds = IndexedDataset(tmp / "x")
    assert len(ds) == len(docs) and ds.n_tokens == sum(sizes)
    np.testing.assert_array_equal(np.asarray(ds.sizes), np.asarray(sizes, dtype=np.int32))
    for i, d in enumerate(docs):
        np.testing.assert_array_equal(ds.get(i), d)
        if len(d) >= 2:
            np.testing.assert_array_equal(ds.get(i, 1, len(d) - 2), d[1:-1])


def test_views_are_read_only_and_zero_copy(tmp_path):
    write_indexed(tmp_path / "s", [np.arange(10), np.arange(5)], np.uint16)
    ds = IndexedDataset(tmp_path / "s")
    v = ds.get(0)
    assert not v.flags.writeable
    assert np.shares_memory(v, ds.tokens)
    with pytest.raises(QueryError, match="reaches past"):
        ds.get(1, 3, 5)
    with pytest.raises(QueryError, match="out of range"):
        ds.get(2)


def _write(tmp_path, docs=None, dtype=np.uint16):
    docs = docs if docs is not None else [np.arange(1, 6), np.arange(3), np.arange(7)]
    write_indexed(tmp_path / "c", docs, dtype)
    return tmp_path / "c.idx", tmp_path / "c.bin"


def _patch(path, offset, data):
    b = bytearray(path.read_bytes())
    b[offset : offset + len(data)] = data
    path.write_bytes(bytes(b))


def test_truncated_bin(tmp_path):
    idx, bin_ = _write(tmp_path)
    bin_.write_bytes(bin_.read_bytes()[:-2])
    with pytest.raises(FormatError, match=r"c\.bin: size: the index says 30 bytes.*found 28"):
        IndexedDataset(tmp_path / "c")


def test_missing_bin(tmp_path):
    idx, bin_ = _write(tmp_path)
    os.unlink(bin_)
    with pytest.raises(FormatError, match="data file not found"):
        IndexedDataset(tmp_path / "c")


def test_wrong_magic(tmp_path):
    idx, _ = _write(tmp_path)
    _patch(idx, 0, b"TNTIDX\x00\x00")
    with pytest.raises(FormatError, match=r"c\.idx: magic: expected"):
        IndexedDataset(tmp_path / "c")


def test_wrong_version(tmp_path):
    idx, _ = _write(tmp_path)
    _patch(idx, 9, struct.pack("<Q", 2))
    with pytest.raises(FormatError, match="version: expected 1, found 2"):
        IndexedDataset(tmp_path / "c")


@pytest.mark.parametrize("code", [0, 9, 255])
def test_wrong_dtype_code(tmp_path, code):
    idx, _ = _write(tmp_path)
    _patch(idx, 17, bytes([code]))
    with pytest.raises(FormatError, match=f"dtype code: expected one of .*found {code}"):
        IndexedDataset(tmp_path / "c")


def test_dtype_code_that_disagrees_with_pointers(tmp_path):
    idx, _ = _write(tmp_path)
    _patch(idx, 17, bytes([4]))  # claims int32, but pointers step by 2 bytes
    with pytest.raises(FormatError, match=r"pointers\[1\]: expected 20"):
        IndexedDataset(tmp_path / "c")


@pytest.mark.parametrize("field_offset,value,needle", [(18, 4, "len=4"), (26, 9, "doc_count=9")])
def test_bad_counts(tmp_path, field_offset, value, needle):
    idx, _ = _write(tmp_path)
    _patch(idx, field_offset, struct.pack("<Q", value))
    with pytest.raises(FormatError, match=f"size: header says .*{needle}"):
        IndexedDataset(tmp_path / "c")


def test_truncated_idx(tmp_path):
    idx, _ = _write(tmp_path)
    idx.write_bytes(idx.read_bytes()[:20])
    with pytest.raises(FormatError, match="header: expected at least 34 bytes, found 20"):
        IndexedDataset(tmp_path / "c")


@pytest.mark.parametrize("offset, value, needle", [
    (34 + 12 + 8 * 2, struct.pack("<q", 12), r"pointers\[2\]: expected 16"),  # pointers[2]
    (34 + 4, struct.pack("<i", -1), r"sizes\[1\]: expected >= 0, found -1"),  # sizes[1]
    (34 + 36 + 8 * 3, struct.pack("<q", 99), r"doc_idx\[-1\]: expected <= len=3, found 99"),  # doc_idx[3]
], ids=["pointer", "size", "doc_idx"])
def test_corrupt_array_entry(tmp_path, offset, value, needle):
    idx, _ = _write(tmp_path)
    _patch(idx, offset, value)
    with pytest.raises(FormatError, match=needle):
        IndexedDataset(tmp_path / "c")


def test_megatron_core_flavor_detected(tmp_path):
    # Megatron-core: code 6 means float64, and a trailing int8 sequence_modes array.
    docs = [np.array([1.5, 2.5]), np.array([3.5])]
    reference_write(str(tmp_path / "m"), docs, np.float64)
    idx = tmp_path / "m.idx"
    _patch(idx, 17, bytes([6]))
    idx.write_bytes(idx.read_bytes() + b"\x00\x00")
    ds = IndexedDataset(tmp_path / "m")
    assert ds.index.flavor == "megatron-core" and ds.dtype == np.float64
    np.testing.assert_array_equal(ds.get(0), [1.5, 2.5])
    np.testing.assert_array_equal(ds.index.sequence_modes, [0, 0])


def test_writer_exception_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with IndexedDatasetWriter(tmp_path / "w", np.uint16) as w:
            w.add_document(np.arange(5))
            raise RuntimeError("boom")
    assert sorted(os.listdir(tmp_path)) == []


def test_store_of_several_prefixes(tmp_path):
    rng = np.random.default_rng(3)
    a = _docs(rng, 7, np.uint16)
    b = _docs(rng, 5, np.uint16)
    write_indexed(tmp_path / "a", a, np.uint16)
    write_indexed(tmp_path / "b", b, np.uint16)
    store = TokenStore([tmp_path / "a", tmp_path / "b"])
    docs = a + b
    assert len(store) == 12 and store.n_tokens == sum(len(d) for d in docs)
    for i, d in enumerate(docs):
        np.testing.assert_array_equal(store[i], d)
    items = np.array([i for i, d in enumerate(docs) if len(d) > 2][::-1])
    got = store.gather(items, np.ones_like(items), np.full_like(items, 2))
    np.testing.assert_array_equal(got, np.concatenate([docs[i][1:3] for i in items]))
    offs = store.token_offsets()
    assert offs[-1] == store.n_tokens and offs[1] == len(docs[0])
    with pytest.raises(QueryError, match="reaches past"):
        store.gather([0], [0], [1000])


def test_store_refuses_mixed_dtypes(tmp_path):
    write_indexed(tmp_path / "a", [np.arange(3)], np.uint16)
    write_indexed(tmp_path / "b", [np.arange(3)], np.int32)
    with pytest.raises(Exception, match="share a dtype"):
        TokenStore([tmp_path / "a", tmp_path / "b"])


def test_fingerprint_changes_with_content(tmp_path):
    write_indexed(tmp_path / "a", [np.arange(3), np.arange(4)], np.uint16)
    write_indexed(tmp_path / "b", [np.arange(4), np.arange(3)], np.uint16)
    fa, fb = IndexedDataset(tmp_path / "a").fingerprint(), IndexedDataset(tmp_path / "b").fingerprint()
    assert fa != fb and fa == IndexedDataset(tmp_path / "a").fingerprint()


def test_written_files_get_ordinary_permissions(tmp_path):
    # Temp files from mkstemp are private (0600); the renamed outputs must be readable like open() makes them.
    write_indexed(tmp_path / "p", [np.arange(3)], np.uint16)
    mask = os.umask(0)
    os.umask(mask)
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"p{ext}").stat().st_mode & 0o777 == 0o666 & ~mask
