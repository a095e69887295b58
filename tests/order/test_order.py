"""The GPT-NeoX v1.0 index maps: numba kernels vs independent plain references written here.

References follow GPT-NeoX v1.0 ``megatron/data/gpt2_dataset.py`` and ``helpers.cpp`` semantics, written from
``docs/ORDER.md`` ("The algorithm"): the epoch loop, ``RandomState.shuffle`` itself, the helper's token-consuming
loop (pure Python) and a vectorised searchsorted formulation (plain numpy).
"""

from __future__ import annotations

import io
import os
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pile_index.errors import ConfigError, FormatError, LimitError, NotFoundError
from pile_index.format import write_indexed
from pile_index.order import (
    PRESETS,
    OrderConfig,
    build_doc_idx,
    build_index_mappings,
    build_plan,
    build_sample_idx,
    build_shuffle_idx,
    index_map_paths,
    legacy_shuffle,
    load_index_mappings,
    num_epochs,
    order_config,
)
from pile_index.format import TokenStore
from pile_index.order import open_order

# ------------------------------------------------------------------------------------------ references


def ref_num_epochs(tokens_per_epoch: int, seq_length: int, num_samples: int) -> int:
    e, total = 0, 0
    while True:
        e += 1
        total += tokens_per_epoch
        if (total - 1) // seq_length >= num_samples:
            return e


def ref_sample_idx_loop(sizes, doc_idx, seq_length, epochs, tokens_per_epoch) -> np.ndarray:
    """The helper's loop: consume seq_length + 1 tokens per sample, the last one shared with the next."""
    n = (epochs * tokens_per_epoch - 1) // seq_length
    out = np.zeros((n + 1, 2), dtype=np.int32)
    pos, off = 0, 0
    for i in range(1, n + 1):
        need = seq_length + 1
        while need:
            avail = int(sizes[doc_idx[pos]]) - off
            if avail >= need:
                off += need - 1
                need = 0
            else:
                need -= avail
                pos += 1
                off = 0
        out[i] = (pos, off)
    return out


def ref_sample_idx_numpy(sizes, doc_idx, seq_length, epochs, tokens_per_epoch) -> np.ndarray:
    """Row i = location of global token i*L in the doc_idx stream (searchsorted over cumulative sizes)."""
    n = (epochs * tokens_per_epoch - 1) // seq_length
    cum = np.zeros(doc_idx.size + 1, dtype=np.int64)
    np.cumsum(np.asarray(sizes, dtype=np.int64)[doc_idx], out=cum[1:])
    t = np.arange(n + 1, dtype=np.int64) * seq_length
    pos = np.searchsorted(cum, t, side="right") - 1
    out = np.stack([pos, t - cum[pos]], axis=1).astype(np.int32)
    out[0] = (0, 0)
    return out


def ref_index_maps(sizes, seed, seq_length, num_samples):
    t = int(np.sum(sizes, dtype=np.int64))
    e = ref_num_epochs(t, seq_length, num_samples)
    rng = np.random.RandomState(seed)
    doc_idx = np.tile(np.arange(len(sizes)), e).astype(np.int32)
    rng.shuffle(doc_idx)
    sample_idx = ref_sample_idx_numpy(sizes, doc_idx, seq_length, e, t)
    s = sample_idx.shape[0] - 1
    shuffle_idx = np.arange(s, dtype=np.uint32 if s < 2**32 - 2 else np.int64)
    rng.shuffle(shuffle_idx)
    return e, doc_idx, sample_idx, shuffle_idx


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ shuffle


@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 624, 625, 5000, 100_003])
@pytest.mark.parametrize("dtype", [np.int32, np.uint32, np.int64])
def test_legacy_shuffle_equals_randomstate(n, dtype):
    a = np.arange(n, dtype=dtype)
    b = a.copy()
    r1, r2 = np.random.RandomState(1234), np.random.RandomState(1234)
    r1.shuffle(a)
    legacy_shuffle(r2, b)
    np.testing.assert_array_equal(a, b)
    # the generator state continues identically (GPT-NeoX shuffles twice with one rng)
    c = np.arange(1000, dtype=np.uint32)
    d = c.copy()
    r1.shuffle(c)
    legacy_shuffle(r2, d)
    np.testing.assert_array_equal(c, d)
    assert r1.randint(0, 2**31) == r2.randint(0, 2**31)


def test_legacy_shuffle_rejects_2d():
    with pytest.raises(ValueError):
        legacy_shuffle(np.random.RandomState(0), np.zeros((2, 2)))


# ------------------------------------------------------------------------------------------ epochs


@given(st.integers(1, 10**7), st.integers(1, 4096), st.integers(1, 10**6))
@settings(max_examples=200, deadline=None)
def test_num_epochs_closed_form(t, sl, ns):
    if ns * sl // t > 10**5:
        return  # the reference loop would take too long
    assert num_epochs(t, sl, ns) == ref_num_epochs(t, sl, ns)


def test_num_epochs_zero_tokens():
    with pytest.raises(ConfigError, match="0 tokens"):
        num_epochs(0, 2048, 10)


# ------------------------------------------------------------------------------------------ sample_idx

sizes_strategy = st.lists(
    st.one_of(st.integers(0, 3), st.integers(0, 300), st.integers(2000, 5000)), min_size=1, max_size=40
)


@given(sizes=sizes_strategy, seq_length=st.one_of(st.integers(1, 8), st.integers(9, 2048)),
       seed=st.integers(0, 2**32 - 1), epochs_wanted=st.integers(1, 6), edge=st.sampled_from([-1, 0, 1]))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_index_maps_match_references(sizes, seq_length, seed, epochs_wanted, edge):
    sizes = np.array(sizes, dtype=np.int32)
    t = int(sizes.sum())
    if t < 2:
        sizes[0] += 2
        t += 2
    # num_samples exactly at an epoch edge: the most samples epochs_wanted epochs give, or one more / less.
    num_samples = max(1, (epochs_wanted * t - 1) // seq_length + edge * (edge > 0))
    num_samples = max(1, num_samples - (edge < 0))
    e = num_epochs(t, seq_length, num_samples)
    assert e == ref_num_epochs(t, seq_length, num_samples)
    ref_e, ref_doc, ref_sample, ref_shuffle = ref_index_maps(sizes, seed, seq_length, num_samples)
    rng = np.random.RandomState(seed)
    doc_idx = build_doc_idx(len(sizes), e, rng)
    sample_idx = build_sample_idx(sizes, doc_idx, seq_length, e, t)
    shuffle_idx = build_shuffle_idx(sample_idx.shape[0] - 1, rng)
    assert (doc_idx.dtype, sample_idx.dtype, shuffle_idx.dtype) == (np.int32, np.int32, np.uint32)
    np.testing.assert_array_equal(doc_idx, ref_doc)
    np.testing.assert_array_equal(sample_idx, ref_sample)
    np.testing.assert_array_equal(shuffle_idx, ref_shuffle)
    if sample_idx.shape[0] <= 3000:
        np.testing.assert_array_equal(sample_idx, ref_sample_idx_loop(sizes, doc_idx, seq_length, e, t))
    # offsets always inside the document (rows 1..S never sit on an empty document)
    d = sizes[doc_idx[sample_idx[1:, 0]]]
    assert np.all(sample_idx[1:, 1] < d)


def test_sample_idx_hand_example():
    # documents of 3, 0, 5 tokens, one epoch, L = 2: stream positions 0..7
    sizes = np.array([3, 0, 5], dtype=np.int32)
    doc_idx = np.array([0, 1, 2], dtype=np.int32)
    out = build_sample_idx(sizes, doc_idx, 2, 1, 8)
    # tokens 0, 2, 4, 6 -> (doc pos 0, 0), (0, 2), (2, 1), (2, 3); S = 7 // 2 = 3
    np.testing.assert_array_equal(out, [[0, 0], [0, 2], [2, 1], [2, 3]])


def test_first_document_empty_keeps_row0():
    sizes = np.array([0, 4, 4], dtype=np.int32)
    doc_idx = np.array([0, 1, 2], dtype=np.int32)
    out = build_sample_idx(sizes, doc_idx, 3, 1, 8)
    np.testing.assert_array_equal(out, [[0, 0], [1, 3], [2, 2]])


# ------------------------------------------------------------------------------------------ files


def _store(tmp_path, sizes, name="raw"):
    rng = np.random.default_rng(0)
    prefix = str(tmp_path / name)
    write_indexed(prefix, [rng.integers(2, 50000, int(n)).astype(np.uint16) for n in sizes], np.uint16)
    return prefix


def test_files_byte_identical_and_reused(tmp_path):
    sizes = np.random.default_rng(3).integers(0, 200, 300).astype(np.int32)
    prefix = _store(tmp_path, sizes)
    cfg = OrderConfig(seed=1234, seq_length=32, num_samples=2500, name="train_0")
    maps = build_index_mappings(TokenStore(prefix), cfg, progress=False)
    paths = index_map_paths(prefix, cfg)
    assert paths["doc_idx"].name == "raw_train_0_indexmap_2500ns_32sl_1234s_doc_idx.npy"
    assert paths["sample_idx"].name == "raw_train_0_indexmap_2500ns_32sl_1234s_sample_idx.npy"
    assert paths["shuffle_idx"].name == "raw_train_0_indexmap_2500ns_32sl_1234s_shuffle_idx.npy"
    e, doc_idx, sample_idx, shuffle_idx = ref_index_maps(sizes, 1234, 32, 2500)
    assert maps.epochs == e and maps.tokens_per_epoch == int(sizes.sum())
    for kind, ref in (("doc_idx", doc_idx), ("sample_idx", sample_idx), ("shuffle_idx", shuffle_idx)):
        assert paths[kind].read_bytes() == npy_bytes(ref)
    assert isinstance(maps.doc_idx, np.memmap)
    assert maps.usable_samples == shuffle_idx.size - 1
    mtimes = {k: os.stat(p).st_mtime_ns for k, p in paths.items()}
    again = build_index_mappings(prefix, cfg, progress=False)
    assert {k: os.stat(p).st_mtime_ns for k, p in paths.items()} == mtimes
    np.testing.assert_array_equal(again.shuffle_idx, shuffle_idx)
    # load alone works too, and files written by np.save (as GPT-NeoX does) load directly
    for kind, ref in (("doc_idx", doc_idx), ("sample_idx", sample_idx), ("shuffle_idx", shuffle_idx)):
        np.save(paths[kind], ref, allow_pickle=True)
    loaded = load_index_mappings(prefix, cfg)
    np.testing.assert_array_equal(loaded.sample_idx, sample_idx)
    assert not list(tmp_path.glob(".*tmp-*"))


def test_missing_and_mismatched_files(tmp_path):
    prefix = _store(tmp_path, [10, 20, 30])
    cfg = OrderConfig(seed=1, seq_length=4, num_samples=5)
    with pytest.raises(NotFoundError, match=r"pile-index order build .*--seed 1 --seq-length 4 --num-samples 5"):
        load_index_mappings(prefix, cfg)
    build_index_mappings(prefix, cfg, progress=False)
    # a different store under the same prefix: counts no longer match
    prefix2 = _store(tmp_path, [10, 20, 30, 40])
    os.replace(prefix2 + ".bin", prefix + ".bin")
    os.replace(prefix2 + ".idx", prefix + ".idx")
    with pytest.raises(FormatError, match="belongs to another store"):
        load_index_mappings(prefix, cfg)


def test_config_validation_and_presets():
    p = PRESETS["pythia"]
    assert (p.seed, p.seq_length, p.num_samples, p.name, p.batch_size, p.train_steps) == (
        1234, 2048, 147_164_160, "train_0", 1024, 143_000)
    assert p.num_samples == -(-143_000 * 1024 * 1005 // 1000)
    assert order_config("pythia", batch_size=2048).batch_size == 2048
    assert order_config(seed=1, seq_length=2, num_samples=3).steps == 0
    with pytest.raises(ConfigError, match="`seq_length`, `num_samples`"):
        order_config(seed=1)
    with pytest.raises(ConfigError, match="unknown"):
        order_config("gpt3")
    for bad, field in ((dict(seq_length=0), "seq_length"), (dict(num_samples=0), "num_samples"),
                       (dict(seed=-1), "seed"), (dict(batch_size=0), "batch_size"), (dict(name="a/b"), "name"),
                       (dict(train_steps=-1), "train_steps"), (dict(seq_length=2.5), "seq_length")):
        with pytest.raises(ConfigError, match=f"OrderConfig.{field}"):
            order_config(**{**dict(seed=1, seq_length=8, num_samples=4), **bad})


def test_build_refuses_too_many_epochs_before_writing(tmp_path):
    # 1,000 tokens and num_samples 10,000 of 16 tokens: 161 epochs (the Pythia preset on a small store
    # asked for 256,594); nothing is written, and the message has the figures and both ways out
    prefix = _store(tmp_path, [100] * 10)
    cfg = OrderConfig(seed=1, seq_length=16, num_samples=10_000)
    before = sorted(p.name for p in tmp_path.iterdir())
    plan = build_plan(np.full(10, 100, np.int32), cfg)
    assert plan["epochs"] == 161 and plan["samples_total"] == 10_062
    assert plan["bytes"] == sum(plan["file_bytes"].values()) == 4 * 1610 * 2 + 8 * 10_063 + 4 * 10_062 * 2 + 5 * 128
    for build in (lambda: build_index_mappings(prefix, cfg, progress=False),
                  lambda: open_order(prefix, cfg, build=True)):
        with pytest.raises(LimitError, match=r"needs 161 epochs of this store's 1,000 tokens .*the bound is "
                                             r"max_epochs=100\. Nothing was written\. Lower num_samples \(at most "
                                             r"6,249 samples fit in 100 epochs\) or raise max_epochs") as e:
            build()
        assert e.value.setting == "max_epochs"
        assert sorted(p.name for p in tmp_path.iterdir()) == before
    open_order(prefix, OrderConfig(seed=1, seq_length=16, num_samples=6_249), build=True)  # 100 epochs: built
    assert open_order(prefix, cfg, build=True, max_epochs=200).epochs == 161
    with pytest.raises(ConfigError, match="max_epochs"):
        build_index_mappings(prefix, replace(cfg, num_samples=20_000), max_epochs=0)
