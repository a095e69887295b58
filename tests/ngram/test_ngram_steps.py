"""n-gram occurrences -> training steps, against brute force over the rows the order builds."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import main as cli_main
from pile_index.errors import LimitError
from pile_index.format import TokenStore, write_indexed
from pile_index.ngram import NgramIndex, build_index, ngram_steps, occurrence_rows, occurrences_table
from pile_index.order import open_order, order_config
from pile_index.sql import DOCUMENT_SCHEMA, DocumentTable


def brute_pairs(order, docs, pat):
    """(sample_index, doc_id, offset, kind) over every row the order can build, kind 'in' or 'split'.

    Rows come from ``order.rows`` and ``order.spans``; occurrences from a scan of the documents."""
    m = len(pat)
    L1 = order.seq_length + 1
    occ = {}
    for d, doc in enumerate(docs):
        occ[d] = [o for o in range(len(doc) - m + 1) if list(doc[o : o + m]) == pat]
    out = []
    for k in range(order.num_samples):
        row = order.rows(np.array([k]))[0]
        for sp in order.spans(k):
            d, s, e, at = sp["doc_id"], sp["doc_start"], sp["doc_end"], sp["sample_start"]
            assert row[at : at + e - s].tolist() == list(docs[d][s:e])
            for o in occ[d]:
                if s <= o and o + m <= e:
                    assert row[at + o - s : at + o - s + m].tolist() == pat
                    out.append((k, d, o, "in"))
                elif s <= o < e and o + m > e and at + (o - s) < L1 - 1:
                    out.append((k, d, o, "split"))
    return sorted(out)


def mine(order, idx, pat):
    r = occurrence_rows(idx, order, pat)
    return sorted((int(k), int(d), int(o), "in" if i else "split")
                  for k, d, o, i, s in zip(r["sample_index"], r["doc_id"], r["offset"], r["in_row"], r["split"]))


def make(tmp_path, docs, seq_length, num_samples, batch_size, seed=1234, name="s"):
    prefix = tmp_path / name
    write_indexed(prefix, [np.asarray(d, dtype=np.uint16) for d in docs], np.uint16)
    store = TokenStore(prefix)
    cfg = order_config(seed=seed, seq_length=seq_length, num_samples=num_samples, batch_size=batch_size)
    order = open_order(store, cfg, build=True)
    idx = NgramIndex(store, build_index(store, shard_tokens=23))
    return store, order, idx


def test_steps_match_brute_force(tmp_path):
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 3, size=int(rng.integers(0, 25))).tolist() for _ in range(30)]
    store, order, idx = make(tmp_path, docs, seq_length=7, num_samples=60, batch_size=4)
    assert order.epochs >= 2  # documents appear in several rows across epochs
    pats = [[0], [1, 2], [0, 0, 0], [2, 1, 0, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1], [0, 1, 2, 0, 1]]
    for pat in pats:
        want = brute_pairs(order, docs, pat)
        assert mine(order, idx, pat) == want, pat
        res = asdict(ngram_steps(idx, order, pat, bucket_steps=3))
        trained = [w for w in want if w[0] < order.trained_samples]
        seen = [w for w in trained if w[3] == "in"]
        assert res["count"] == idx.count(pat)
        assert res["count_in_rows"] == len(seen)
        assert res["count_split_by_row_boundary"] == sum(1 for w in trained if w[3] == "split")
        steps = [w[0] // 4 for w in seen]
        assert res["first_step"] == (min(steps) if steps else None)
        assert res["last_step"] == (max(steps) if steps else None)
        hist = np.bincount(np.array(steps, dtype=np.int64) // 3, minlength=-(-order.train_steps // 3))
        assert res["histogram"] == hist.tolist()
        assert sum(res["histogram"]) == res["count_in_rows"]


def test_split_occurrence_reported_apart(tmp_path):
    # one long document of distinct tokens: rows of 5 tokens overlap by one, so [3, 4, 5] is cut by the
    # boundary between the row holding tokens 0..4 and the row holding 4..8 ... in the unshuffled stream.
    docs = [list(range(1, 30))]
    store, order, idx = make(tmp_path, docs, seq_length=4, num_samples=6, batch_size=1)
    splits = 0
    for start in range(1, 27):
        pat = list(range(start, start + 3))
        res = asdict(ngram_steps(idx, order, pat))
        want = brute_pairs(order, docs, pat)
        trained = [w for w in want if w[0] < order.trained_samples]
        assert res["count_split_by_row_boundary"] == sum(1 for w in trained if w[3] == "split")
        assert res["count_in_rows"] == sum(1 for w in trained if w[3] == "in")
        # each document occurrence is, per row that holds its start, either whole or split, never both
        assert len({(w[0], w[2]) for w in want}) == len(want)
        splits += res["count_split_by_row_boundary"]
    assert splits > 0


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    docs=st.lists(st.lists(st.integers(0, 2), max_size=15), min_size=1, max_size=10),
    seq_length=st.integers(1, 6),
    pat=st.lists(st.integers(0, 2), min_size=1, max_size=5),
    seed=st.integers(0, 10),
)
def test_property_steps(tmp_path_factory, docs, seq_length, pat, seed):
    total = sum(len(d) for d in docs)
    if total < seq_length + 2:
        docs = docs + [[0, 1, 2] * (seq_length + 1)]
        total = sum(len(d) for d in docs)
    num_samples = max(1, (total - 1) // seq_length - 1)
    tmp = tmp_path_factory.mktemp("st")
    store, order, idx = make(tmp, docs, seq_length=seq_length, num_samples=num_samples, batch_size=2, seed=seed)
    assert mine(order, idx, pat) == brute_pairs(order, docs, pat)


def test_preshuffled_store(tmp_path):
    rng = np.random.default_rng(2)
    rows = [rng.integers(0, 3, size=5).tolist() for _ in range(12)]
    prefix = tmp_path / "pre"
    write_indexed(prefix, [np.asarray(r, np.uint16) for r in rows], np.uint16)
    store = TokenStore(prefix)
    cfg = order_config(seed=0, seq_length=4, num_samples=12, batch_size=4, train_steps=2)
    order = open_order(store, cfg, preshuffled=True)
    idx = NgramIndex(store, build_index(store))
    for pat in ([0], [1, 2], [2, 2, 0]):
        res = asdict(ngram_steps(idx, order, pat, bucket_steps=1))
        want = [(k, o) for k, r in enumerate(rows) for o in range(5 - len(pat) + 1) if r[o : o + len(pat)] == pat]
        seen = [k for k, _ in want if k < 8]
        assert res["count"] == len(want)
        assert res["count_in_rows"] == len(seen)
        assert res["count_split_by_row_boundary"] == 0
        assert res["histogram"] == [sum(1 for k in seen if k // 4 == s) for s in range(2)]
        assert res["first_step"] == (min(seen) // 4 if seen else None)


def test_by_source_and_limits(tmp_path):
    docs = [[1, 2, 3, 1, 2], [1, 2], [3, 3, 1, 2, 1, 2]]
    store, order, idx = make(tmp_path, docs, seq_length=3, num_samples=8, batch_size=2)
    names = ["A", None, "B"]
    pq.write_table(pa.table({
        "doc_id": np.arange(3, dtype=np.int64), "source_file": ["f"] * 3, "source_line": [1, 2, 3],
        "pile_set_name": names, "meta": [None] * 3, "n_tokens": [5, 2, 6], "n_bytes": [1, 1, 1],
        "token_hash": pa.array([0, 0, 0], pa.uint64())}, schema=DOCUMENT_SCHEMA), store.documents_path())
    res = asdict(ngram_steps(idx, order, [1, 2], documents=DocumentTable(store.documents_path())))
    pairs = occurrence_rows(idx, order, [1, 2])
    seen = pairs["in_row"] & pairs["trained"]
    want: dict[str, int] = {}
    for d in pairs["doc_id"][seen]:
        key = names[int(d)] or "(unknown)"
        want[key] = want.get(key, 0) + 1
    assert res["by_source"] == want and sum(want.values()) == res["count_in_rows"]
    with pytest.raises(LimitError) as e:
        ngram_steps(idx, order, [1], max_occurrences=2)
    assert e.value.setting == "max_occurrences"
    tbl = occurrences_table(idx, order, [1, 2], bucket_steps=2)
    assert tbl.num_rows == pairs["doc_id"].size


def test_steps_and_sql_cli(tmp_path, capsys):
    docs = [[5, 6, 7, 5, 6], [5, 6], [7, 7, 5, 6, 5, 6, 7]]
    store, order, idx = make(tmp_path, docs, seq_length=3, num_samples=8, batch_size=2)
    prefix = str(tmp_path / "s")
    opts = ["--seed", "1234", "--seq-length", "3", "--num-samples", "8", "--batch-size", "2"]
    assert cli_main(["ngram", "steps", prefix, "--tokens", "5,6", *opts, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {**asdict(ngram_steps(idx, order, [5, 6])), "by_source_available": False}
    assert cli_main(["sql", prefix, "SELECT sum(occurrences) AS n FROM ngram_timeseries", "--ngram-tokens", "5,6",
                     *opts, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["rows"] == [[out["count_in_rows"]]]
    assert cli_main(["sql", prefix, "SELECT count(*) FROM row_pieces", "--steps", "0:2", *opts, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["rows"][0][0] == sum(len(order.spans(k)) for k in range(4))


def test_steps_cli_opens_the_store_once(tmp_path, capsys, monkeypatch):
    store, order, idx = make(tmp_path, [[5, 6, 7, 5, 6], [5, 6]], seq_length=3, num_samples=3, batch_size=1)
    opened = []
    real = TokenStore.__init__
    monkeypatch.setattr(TokenStore, "__init__", lambda self, *a, **k: opened.append(1) or real(self, *a, **k))
    opts = ["--seed", "1234", "--seq-length", "3", "--num-samples", "3", "--batch-size", "1"]
    assert cli_main(["ngram", "steps", str(tmp_path / "s"), "--tokens", "5,6", *opts, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 3
    assert len(opened) == 1  # every .idx validated once (before: twice, once for the index, once for the order)


def test_long_documents_many_epochs_pair_only_the_rows_that_hold_them(tmp_path):
    # Documents far longer than a row, 4 epochs: each occurrence must pair only with the rows holding it
    # (at most 2 per epoch copy), found by search, not by expanding every row of its document.
    rng = np.random.default_rng(3)
    docs = [rng.integers(0, 4, size=int(rng.integers(60, 140))).tolist() for _ in range(4)] + [[1, 2]]
    total = sum(len(d) for d in docs)
    store, order, idx = make(tmp_path, docs, seq_length=6, num_samples=(4 * total - 1) // 6, batch_size=3)
    assert order.epochs == 4
    for pat in ([1], [2, 3], [0, 1, 2], [3, 3, 3, 3]):
        assert mine(order, idx, pat) == brute_pairs(order, docs, pat), pat
