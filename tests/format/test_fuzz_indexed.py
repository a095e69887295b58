"""Format fuzzing: 10,000 mutated ``.idx`` / ``.bin`` pairs (``PILE_INDEX_FUZZ_FULL=1``; 2,500 by default).
Every one either raises ``FormatError`` or opens as a store whose every read agrees with its own header
(no crash, no hang, no out-of-bounds read)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from pile_index import FormatError, IndexedDataset, write_indexed

MUTATIONS = 10_000  # full run; see the fuzz_count fixture


def _mutate(rng: np.random.Generator, idx: bytes, bin_: bytes) -> tuple[bytes, bytes]:
    idx_b, bin_b = bytearray(idx), bytearray(bin_)
    kind = int(rng.integers(0, 7))
    if kind == 0 and idx_b:  # flip a random byte of the index
        i = int(rng.integers(0, len(idx_b)))
        idx_b[i] ^= int(rng.integers(1, 256))
    elif kind == 1:  # truncate or extend the index
        cut = int(rng.integers(0, len(idx_b) + 9))
        idx_b = idx_b[:cut] if cut <= len(idx_b) else idx_b + bytes(cut - len(idx_b))
    elif kind == 2:  # truncate or extend the data
        cut = int(rng.integers(0, len(bin_b) + 5))
        bin_b = bin_b[:cut] if cut <= len(bin_b) else bin_b + bytes(cut - len(bin_b))
    elif kind == 3:  # overwrite a header count with a random u64
        off = [18, 26][int(rng.integers(0, 2))]
        idx_b[off : off + 8] = struct.pack("<Q", int(rng.integers(0, 2**63)))
    elif kind == 4:  # a random int32 into sizes
        n = struct.unpack("<Q", idx[18:26])[0]
        if n:
            i = 34 + 4 * int(rng.integers(0, n))
            idx_b[i : i + 4] = struct.pack("<i", int(rng.integers(-(2**31), 2**31)))
    elif kind == 5:  # a random int64 into pointers or doc_idx
        n = struct.unpack("<Q", idx[18:26])[0]
        start = 34 + 4 * n
        words = (len(idx) - start) // 8
        if words:
            i = start + 8 * int(rng.integers(0, words))
            idx_b[i : i + 8] = struct.pack("<q", int(rng.integers(-(2**40), 2**40)))
    else:  # flip a data byte: still a valid store, just other tokens
        if bin_b:
            i = int(rng.integers(0, len(bin_b)))
            bin_b[i] ^= 0xFF
    return bytes(idx_b), bytes(bin_b)


@pytest.mark.slow
def test_mutated_stores_fail_cleanly_or_read_consistently(tmp_path, fuzz_count):
    rng = np.random.default_rng(1234)
    bases = []
    for k, dtype in enumerate([np.uint16, np.int32, np.uint8]):
        docs = [rng.integers(0, 200, size=int(rng.integers(0, 12))).astype(dtype) for _ in range(int(rng.integers(1, 8)))]
        write_indexed(tmp_path / f"base{k}", docs, dtype)
        bases.append(((tmp_path / f"base{k}.idx").read_bytes(), (tmp_path / f"base{k}.bin").read_bytes()))
    prefix = tmp_path / "m"
    outcomes = {"format_error": 0, "opened": 0}
    n_runs = fuzz_count(MUTATIONS)
    for i in range(n_runs):
        idx, bin_ = _mutate(rng, *bases[i % len(bases)])
        (tmp_path / "m.idx").write_bytes(idx)
        (tmp_path / "m.bin").write_bytes(bin_)
        try:
            ds = IndexedDataset(prefix)
        except FormatError as e:
            assert str(e).startswith(str(tmp_path)), e  # the message names the file
            outcomes["format_error"] += 1
            continue
        outcomes["opened"] += 1
        # An opened store must be self-consistent: every item reads exactly sizes[i] tokens from .bin.
        raw = np.frombuffer(bin_, dtype=ds.dtype)
        pos = 0
        for j in range(len(ds)):
            got = ds.get(j)
            assert got.size == int(ds.sizes[j])
            np.testing.assert_array_equal(got, raw[pos : pos + got.size])
            pos += got.size
        assert pos == raw.size
        del ds
    assert outcomes["format_error"] > n_runs // 10 and outcomes["opened"] > n_runs // 10, outcomes
