"""Rows, spans, document -> steps and stats over a training order, against direct reimplementations.

``ref_getitem`` below is GPT2Dataset.__getitem__ (GPT-NeoX v1.0) written out for one index; everything the
library computes with kernels and inverse files is checked against brute force over every sample.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pile_index.errors import ConfigError, FormatError, NotFoundError, QueryError
from pile_index.format import IndexedDataset, IndexedDatasetWriter, write_indexed
from pile_index.order import OrderConfig, build_index_mappings
from pile_index.sql import DOCUMENT_SCHEMA, DocumentTable
from pile_index.order import (
    PreshuffledOrder,
    TrainingOrder,
    describe_sample,
    inverse_paths,
    open_order,
    verify_orders,
)
from pile_index.format import load_tokenizer


def ref_getitem(ds: IndexedDataset, doc_idx, sample_idx, shuffle_idx, idx: int) -> np.ndarray:
    u = int(shuffle_idx[idx])
    f, a = (int(x) for x in sample_idx[u])
    last, b = (int(x) for x in sample_idx[u + 1])
    if f == last:
        return np.array(ds.get(int(doc_idx[f]), offset=a, length=b - a + 1))
    parts = [ds.get(int(doc_idx[f]), offset=a)]
    parts += [ds.get(int(doc_idx[i])) for i in range(f + 1, last)]
    parts.append(ds.get(int(doc_idx[last]), length=b + 1))
    return np.concatenate(parts)


def make_store(folder: Path, sizes, seed=0, name="raw") -> str:
    rng = np.random.default_rng(seed)
    prefix = str(folder / name)
    write_indexed(prefix, [rng.integers(2, 60000, int(n)).astype(np.uint16) for n in sizes], np.uint16)
    return prefix


SIZES = [5, 0, 1, 1, 37, 200, 3, 0, 64, 65, 66, 1, 150, 9, 0, 2, 2, 300, 17, 40]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    folder = tmp_path_factory.mktemp("raw")
    prefix = make_store(folder, SIZES)
    cfg = OrderConfig(seed=42, seq_length=16, num_samples=250, batch_size=8)
    order = open_order(prefix, cfg, build=True)
    return prefix, cfg, order


def brute_spans(order: TrainingOrder):
    """(doc, k, start, end) for every usable k, from spans()."""
    out = []
    for k in range(order.num_samples):
        for s in order.spans(k):
            out.append((s["doc_id"], k, s["doc_start"], s["doc_end"]))
    return out


def test_rows_equal_getitem(raw):
    prefix, cfg, order = raw
    ds = IndexedDataset(prefix)
    m = order.maps
    assert order.epochs == m.epochs >= 3
    assert order.num_samples == m.shuffle_idx.size - 1
    rows = order.rows(np.arange(order.num_samples))
    assert rows.shape == (order.num_samples, 17) and rows.dtype == np.uint16
    for k in range(order.num_samples):
        np.testing.assert_array_equal(rows[k], ref_getitem(ds, m.doc_idx, m.sample_idx, m.shuffle_idx, k))
    np.testing.assert_array_equal(order.row(7), rows[7])
    np.testing.assert_array_equal(order.batch(2), rows[16:24])
    np.testing.assert_array_equal(order.batch(1, 3), rows[8:32])
    ks = np.array([5, 3, 5, 0])
    np.testing.assert_array_equal(order.rows(ks), rows[ks])


def test_rows_from_8_threads_equal_sequential(raw, monkeypatch):
    """API worker threads gather rows at once, each call split over the shared pool: 8 threads hammering
    rows() with 3-row blocks give exactly the sequential rows, and GPT2Dataset.__getitem__'s."""
    from concurrent.futures import ThreadPoolExecutor

    from pile_index.order import training

    prefix, cfg, order = raw
    ds = IndexedDataset(prefix)
    m = order.maps
    want = np.stack([ref_getitem(ds, m.doc_idx, m.sample_idx, m.shuffle_idx, k) for k in range(order.num_samples)])
    monkeypatch.setattr(training, "_ROWS_PER_BLOCK", 3)
    rng = np.random.default_rng(3)
    picks = [rng.integers(0, order.num_samples, int(rng.integers(1, 60))) for _ in range(64)]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            for ks, got in zip(picks, pool.map(order.rows, picks)):
                np.testing.assert_array_equal(got, want[ks])
    np.testing.assert_array_equal(order.rows(np.arange(order.num_samples)), want)


def test_damage_in_a_later_block_names_its_row(raw, monkeypatch):
    """A row whose pieces no longer add up, found by a later block on the pool, is named exactly as one
    sequential gather names it: the first such row of the request."""
    from pile_index.order import training

    prefix, cfg, order = raw
    damaged = open_order(prefix, cfg)
    sizes = np.array(damaged._sizes)
    sizes[SIZES.index(300)] += 1  # every row holding this document whole, or from an offset, is one token off
    damaged._sizes = sizes
    ks = np.arange(order.num_samples)
    monkeypatch.setattr(training, "_ROWS_PER_BLOCK", 10**9)
    with pytest.raises(FormatError) as sequential:
        damaged.rows(ks)
    named = int(str(sequential.value).split()[1].rstrip(":").replace(",", ""))
    assert named >= 10  # not in the first block below
    monkeypatch.setattr(training, "_ROWS_PER_BLOCK", 5)
    with pytest.raises(FormatError) as pooled:
        damaged.rows(ks)
    assert str(pooled.value) == str(sequential.value)
    before = np.arange(named)  # the rows before it are whole
    np.testing.assert_array_equal(damaged.rows(before), order.rows(before))


def test_multipart_store_agrees(raw, tmp_path):
    prefix, cfg, order = raw
    a = make_store(tmp_path, SIZES[:7], name="a")
    # same tokens: rewrite the parts from the single store's items
    ds = IndexedDataset(prefix)
    write_indexed(str(tmp_path / "a"), [ds.get(i) for i in range(7)], np.uint16)
    write_indexed(str(tmp_path / "b"), [ds.get(i) for i in range(7, len(SIZES))], np.uint16)
    two = open_order([a, str(tmp_path / "b")], cfg, build=True)
    np.testing.assert_array_equal(two.maps.shuffle_idx, order.maps.shuffle_idx)
    ks = np.arange(order.num_samples)
    np.testing.assert_array_equal(two.rows(ks), order.rows(ks))


def test_spans_reconstruct_rows(raw):
    prefix, cfg, order = raw
    ds = IndexedDataset(prefix)
    for k in range(order.num_samples):
        spans = order.spans(k)
        pos = 0
        pieces = []
        for s in spans:
            assert s["sample_start"] == pos
            assert 0 <= s["doc_start"] < s["doc_end"] <= SIZES[s["doc_id"]]
            pieces.append(ds.get(s["doc_id"], s["doc_start"], s["doc_end"] - s["doc_start"]))
            pos += s["doc_end"] - s["doc_start"]
        assert pos == cfg.seq_length + 1
        np.testing.assert_array_equal(np.concatenate(pieces), order.row(k))


def test_doc_rows_and_doc_steps_invert_spans(raw):
    prefix, cfg, order = raw
    expected = brute_spans(order)
    r = order.doc_rows(np.arange(len(SIZES)))
    got = sorted(zip(*(r[c].tolist() for c in ("doc_id", "sample_index", "doc_start", "doc_end"))))
    assert got == sorted(expected)
    by_doc = defaultdict(list)
    for d, k, s, e in expected:
        if k < order.trained_samples:
            by_doc[d].append((k, s, e))
    assert order.trained_samples == 250 // 8 * 8
    for d in range(len(SIZES)):
        res = asdict(order.doc_steps(d))
        occ = sorted(by_doc[d])
        assert res["doc_id"] == d
        got = [(o["sample_index"], o["doc_start"], o["doc_end"]) for o in res["occurrences"]]
        assert sorted(got) == occ  # a row can hold two copies of one document (two epochs, adjacent)
        assert [g[0] for g in got] == sorted(g[0] for g in got)
        assert all(o["step"] * 8 + o["slot"] == o["sample_index"] for o in res["occurrences"])
        if occ:
            assert (res["first_step"], res["last_step"]) == (occ[0][0] // 8, occ[-1][0] // 8)
        else:
            assert res["first_step"] is None and res["last_step"] is None
    assert order.doc_steps(1).occurrences == []  # empty document


def test_stats_brute_force(raw):
    prefix, cfg, order = raw
    m = order.maps
    seen_pos = defaultdict(set)
    first_repeat = None
    for k in range(order.trained_samples):
        u = int(m.shuffle_idx[k])
        for p in range(int(m.sample_idx[u, 0]), int(m.sample_idx[u + 1, 0]) + 1):
            d = int(m.doc_idx[p])
            if SIZES[d] == 0:
                continue
            seen_pos[d].add(p)
            if first_repeat is None and len(seen_pos[d]) == 2:
                first_repeat = (k, d)
    nonempty = [d for d in range(len(SIZES)) if SIZES[d]]
    counts = [len(seen_pos[d]) for d in nonempty]
    st_ = asdict(order.stats())
    assert st_["documents_seen"] == {"0": counts.count(0), "1": counts.count(1), "2+": sum(c >= 2 for c in counts)}
    assert st_["documents_empty"] == SIZES.count(0)
    assert st_["epochs"] == m.epochs and st_["samples_total"] == m.shuffle_idx.size
    assert st_["first_repeat"]["sample_index"] == first_repeat[0]
    assert st_["first_repeat"]["step"] == first_repeat[0] // 8
    # ties at the same sample index: the reported document also repeats there
    d = st_["first_repeat"]["doc_id"]
    assert len({p for p in seen_pos[d]}) >= 2


def test_preshuffled_agrees_and_verify(raw, tmp_path):
    prefix, cfg, order = raw
    rows = order.rows(np.arange(order.num_samples))
    pre_prefix = str(tmp_path / "pre")
    with IndexedDatasetWriter(pre_prefix, np.uint16) as w:
        for r in rows:
            w.add_document(r)
    pre = open_order(pre_prefix, cfg, preshuffled=True)
    assert isinstance(pre, PreshuffledOrder) and pre.preshuffled and pre.num_samples == order.num_samples
    np.testing.assert_array_equal(pre.rows(np.arange(pre.num_samples)), rows)
    np.testing.assert_array_equal(pre.batch(3, 4), order.batch(3, 4))
    np.testing.assert_array_equal(pre.rows(np.array([9, 2])), rows[[9, 2]])
    assert pre.spans(5) is None
    assert asdict(verify_orders(order, pre)) == {"start": 0, "stop": order.num_samples, "checked": order.num_samples,
                                         "equal": True, "first_mismatch": None}
    bad = rows.copy()
    bad[100, 7] ^= 1
    bad[120, 0] ^= 1
    bad_prefix = str(tmp_path / "bad")
    write_indexed(bad_prefix, list(bad), np.uint16)
    res = asdict(verify_orders(order, open_order(bad_prefix, cfg, preshuffled=True), chunk=16))
    assert res["first_mismatch"] == {"sample_index": 100, "step": 12, "slot": 4, "position": 7,
                                     "expected": int(rows[100, 7]), "found": int(rows[100, 7] ^ 1)}
    assert res["checked"] == 101 and not res["equal"]


def test_errors(raw, tmp_path):
    prefix, cfg, order = raw
    with pytest.raises(QueryError, match="slot 8 is out of range"):
        order.sample_index(0, 8)
    with pytest.raises(QueryError, match="past the"):
        order.sample_index(10_000, 0)
    with pytest.raises(QueryError, match="negative"):
        order.sample_index(-1, 0)
    with pytest.raises(QueryError, match="out of range"):
        order.rows(np.array([order.num_samples]))
    with pytest.raises(QueryError, match="before step"):
        order.batch(3, 2)
    with pytest.raises(NotFoundError, match="doc_id 20 is out of range"):
        order.doc_steps(len(SIZES))
    with pytest.raises(ConfigError, match="train_steps"):
        TrainingOrder(order.store, order.maps, OrderConfig(seed=42, seq_length=16, num_samples=250, batch_size=8,
                                                           train_steps=10_000))
    # inverse files missing -> named, with the command that builds them
    p2 = make_store(tmp_path, SIZES)
    build_index_mappings(p2, cfg, progress=False)
    o2 = open_order(p2, cfg)
    assert not inverse_paths(p2, cfg)["doc_idx_inverse"].exists()
    with pytest.raises(NotFoundError, match="pile-index order build"):
        o2.doc_steps(0)
    np.testing.assert_array_equal(o2.row(3), order.row(3))  # rows need no inverse files


def test_step_slot_arithmetic_on_the_order(raw, tmp_path):
    """sample index <-> (step, slot), a step range's rows and trained rows: one definition on each order."""
    prefix, cfg, order = raw
    rows = order.rows(np.arange(order.num_samples))
    pre_prefix = str(tmp_path / "pre")
    write_indexed(pre_prefix, list(rows), np.uint16)
    pre = open_order(pre_prefix, cfg, preshuffled=True)
    for o in (order, pre):
        assert o.full_steps == o.num_samples // 8
        assert o.sample_index(3, 5) == 29 and o.step_slot(29) == (3, 5)
        assert all(isinstance(x, int) for x in o.step_slot(np.int64(29)))
        steps, slots = o.step_slot(np.array([0, 7, 8, 29]))
        assert steps.tolist() == [0, 0, 1, 3] and slots.tolist() == [0, 7, 0, 5]
        ks = o.sample_index(np.array([0, 1, 3]), np.array([7, 0, 5]))
        assert ks.dtype == np.int64 and ks.tolist() == [7, 8, 29]
        assert o.sample_index(np.arange(2, 5), 0).tolist() == [16, 24, 32]
        with pytest.raises(QueryError, match="step 1 slot 9|slot 9 is out of range"):
            o.sample_index(np.array([0, 1]), np.array([1, 9]))
        with pytest.raises(QueryError, match="past the"):
            o.sample_index(np.array([0, 10_000]), 0)
        assert o.step_rows(2) == (16, 24) and o.step_rows(1, 3) == (8, 32)
        with pytest.raises(QueryError, match="before step"):
            o.step_rows(3, 2)
        assert o.trained(o.trained_samples - 1) is True and o.trained(o.trained_samples) is False


def test_describe_sample_metadata_and_text(raw, tmp_path, request):
    prefix, cfg, order = raw
    docs = tmp_path / "docs.parquet"
    n = len(SIZES)
    table = pa.table({
        "doc_id": pa.array(range(n), pa.int64()),
        "source_file": pa.array(["00.jsonl.zst"] * n),
        "source_line": pa.array(range(100, 100 + n), pa.int64()),
        "pile_set_name": pa.array(["Pile-CC" if i % 2 else "Github" for i in range(n)]),
        "meta": pa.array(['{"pile_set_name": "x"}'] * n),
        "n_tokens": pa.array(SIZES, pa.int64()),
        "n_bytes": pa.array([0] * n, pa.int64()),
        "token_hash": pa.array([0] * n, pa.uint64()),
    }, schema=DOCUMENT_SCHEMA)
    pq.write_table(table, docs)
    rec = asdict(describe_sample(order, 2, 3, documents=DocumentTable(docs)))
    assert rec["sample_index"] == 19 and len(rec["tokens"]) == 17
    for s in rec["spans"]:
        assert s["metadata"]["source_line"] == 100 + s["doc_id"]
        assert s["metadata"]["meta"] == {"pile_set_name": "x"}
    tok = load_tokenizer(request.getfixturevalue("real_tokenizer_path"))  # skips with a reason when absent
    rec = asdict(describe_sample(order, 2, 3, tokenizer=tok))
    assert rec["text"] == tok.decode(rec["tokens"], skip_special_tokens=False)


@given(sizes=st.lists(st.one_of(st.integers(0, 2), st.integers(0, 120)), min_size=1, max_size=25),
       seq_length=st.integers(1, 64), seed=st.integers(0, 2**32 - 1), extra=st.integers(0, 3))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_rows_spans_docsteps(sizes, seq_length, seed, extra):
    if sum(sizes) < 2:
        sizes = sizes + [2]
    t = sum(sizes)
    num_samples = max(1, (t - 1) // seq_length * (1 + extra % 2) + extra // 2)
    with tempfile.TemporaryDirectory() as d:
        prefix = make_store(Path(d), sizes, seed=seed % 1000)
        cfg = OrderConfig(seed=seed, seq_length=seq_length, num_samples=num_samples, batch_size=4)
        order = open_order(prefix, cfg, build=True)
        ds = IndexedDataset(prefix)
        m = order.maps
        n = min(order.num_samples, 300)
        rows = order.rows(np.arange(n))
        spans = []
        for k in range(n):
            np.testing.assert_array_equal(rows[k], ref_getitem(ds, m.doc_idx, m.sample_idx, m.shuffle_idx, k))
            for s in order.spans(k):
                spans.append((s["doc_id"], k, s["doc_start"], s["doc_end"]))
        r = order.doc_rows(np.arange(len(sizes)), limit=n)
        got = sorted(zip(*(r[c].tolist() for c in ("doc_id", "sample_index", "doc_start", "doc_end"))))
        assert got == sorted(spans)
        del order, m


def test_orders_share_one_abstract_base():
    from pile_index.order.training import _OrderBase

    assert issubclass(TrainingOrder, _OrderBase) and issubclass(PreshuffledOrder, _OrderBase)

    class RowsOnly(_OrderBase):
        def rows(self, sample_indices):
            return np.empty((0, 1))

    with pytest.raises(TypeError, match="spans"):
        RowsOnly()
