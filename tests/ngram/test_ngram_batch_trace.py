"""Batch counts and traces against one-at-a-time counts and brute force on tiny corpora."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from pile_index.errors import FormatError, LimitError, QueryError
from pile_index.ngram import NgramIndex, build_index
from pile_index.ngram.batch import read_queries_file
from pile_index.ngram.trace import maximal_spans

from test_ngram import brute, make_store, subpatterns
from brute import brute_duplicates, row_pieces


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(7)
    docs = [rng.integers(0, 4, size=int(rng.integers(0, 40))).astype(np.uint16) for _ in range(60)]
    docs.append(np.array([3, 1, 2, 3, 1, 2, 3, 1, 2, 0, 0, 1], dtype=np.uint16))  # long repeats
    store = make_store(tmp_path_factory.mktemp("bt"), docs, parts=2)
    build_index(store, shard_tokens=150)  # several shards per part
    return docs, NgramIndex(store)


def test_count_many_equals_single_counts_and_brute_force(corpus):
    docs, idx = corpus
    assert len(idx.shards) > 3
    rng = np.random.default_rng(0)
    pats = subpatterns(docs, rng, n=300, max_len=9)
    pats += [pats[3], pats[3], [9, 9], [3, 1, 2, 3, 1, 2, 3, 1, 2]]  # duplicates, absent ids, a long repeat
    got = idx.count_many(pats)
    assert got.dtype == np.int64 and got.shape == (len(pats),)
    assert got.tolist() == [idx.count(p) for p in pats] == [len(brute(docs, list(p))) for p in pats]


@pytest.mark.parametrize("layout", [{"shard_tokens": 400}, {"sample_every": 4, "sample_tokens": 3},
                                    {"sample_every": 64}])
def test_count_many_shared_bounds_on_common_prefixes(tmp_path, layout):
    """Sorted neighbours bound each other's search: queries that are prefixes of others, share long prefixes,
    repeat, or are absent, in both index formats (4-byte pointers, no sample; 5-byte with a sample)."""
    rng = np.random.default_rng(11)
    docs = [rng.integers(0, 3, size=int(rng.integers(0, 60))).astype(np.uint16) for _ in range(40)]
    docs += [np.tile(np.array([0, 1, 2], dtype=np.uint16), 20), np.zeros(30, dtype=np.uint16)]
    store = make_store(tmp_path, docs)
    build_index(store, **layout)
    idx = NgramIndex(store)
    assert idx.format_version == (2 if "shard_tokens" in layout else 3)
    stems = [list(map(int, rng.integers(0, 3, size=int(rng.integers(1, 6))))) for _ in range(40)]
    pats = [stem + list(map(int, rng.integers(0, 4, size=k))) for stem in stems for k in range(0, 9, 2)]
    pats += [[0] * k for k in range(1, 33)] + [[0, 1, 2] * 7, [0, 1, 2] * 7 + [0], [2, 3]]
    pats = [pats[i] for i in rng.permutation(len(pats))] + pats[:50]
    got = idx.count_many(pats).tolist()
    assert got == [idx.count(p) for p in pats] == [len(brute(docs, p)) for p in pats]
    assert idx.count_many(np.array([p[:1] for p in pats])).tolist() == [len(brute(docs, p[:1])) for p in pats]


@pytest.mark.parametrize("layout", [{"shard_tokens": 90}, {}, {"sample_every": 2}, {"sample_every": 3, "sample_tokens": 3},
                                    {"sample_every": 5, "sample_tokens": 4}, {"sample_every": 2, "sample_tokens": 12}],
                         ids=["v2-shards", "v3", "v3-every2", "v3-3tokens", "v3-4tokens", "v3-12tokens"])
def test_count_many_property_against_count_and_brute_force(tmp_path, monkeypatch, layout):
    """Random batches, in blocks of a few queries (so several threads and partial lockstep groups run), equal
    count() and brute force: duplicates, absent n-grams, tokens the store's dtype cannot hold, n-grams longer
    than the sample's tokens, items shorter than them, in format 2 (several shards) and format 3 with sample
    widths that fill 64-bit words (4, 12 tokens: the word compare) and that do not (3: token by token)."""
    from pile_index.ngram import batch

    monkeypatch.setattr(batch, "MIN_BLOCK", 7)
    rng = np.random.default_rng(len(str(layout)))
    docs = [rng.integers(0, 5, size=int(rng.integers(0, 30))).astype(np.uint16) for _ in range(30)]
    docs += [np.tile(np.array([1, 2, 3], dtype=np.uint16), 15), np.array([65_535, 4, 65_535], dtype=np.uint16)]
    store = make_store(tmp_path, docs, parts=2)
    build_index(store, **layout)
    idx = NgramIndex(store)
    assert (len(idx.shards) > 2) if "shard_tokens" in layout else idx.format_version == 3
    assert idx.count_many([]).tolist() == []
    for _ in range(4):
        pats = subpatterns(docs, rng, n=120, max_len=20)
        pats += [[1, 2, 3] * 6, [1, 2, 3] * 5 + [4], [65_535], [65_535, 4, 65_535], [70_000], [1, 70_000], [9] * 9]
        pats += [pats[int(k)] for k in rng.integers(0, len(pats), 40)]  # duplicates
        pats = [pats[int(k)] for k in rng.permutation(len(pats))]
        got = idx.count_many(pats)
        assert got.tolist() == [idx.count(p) for p in pats] == [len(brute(docs, p)) for p in pats]
        assert idx.count_many(pats[:1]).tolist() == got[:1].tolist()


def test_count_many_from_8_threads_equals_sequential(tmp_path, monkeypatch):
    """API worker threads call count_many at once: 8 threads hammering it (each call split over the pool's
    threads) give exactly the sequential answers."""
    from concurrent.futures import ThreadPoolExecutor

    from pile_index.ngram import batch

    monkeypatch.setattr(batch, "MIN_BLOCK", 16)
    rng = np.random.default_rng(5)
    docs = [rng.integers(0, 6, size=int(rng.integers(5, 80))).astype(np.uint16) for _ in range(60)]
    store = make_store(tmp_path, docs)
    build_index(store, sample_every=4)
    idx = NgramIndex(store)
    batches = [subpatterns(docs, rng, n=300, max_len=12) for _ in range(16)]
    want = [idx.count_many(b).tolist() for b in batches]
    assert want[0] == [idx.count(p) for p in batches[0]]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(5):
            got = list(pool.map(lambda b: idx.count_many(b).tolist(), batches))
            assert got == want


def test_count_many_2d_array_and_empty(corpus):
    docs, idx = corpus
    arr = np.array([[1, 2, 3], [0, 0, 0], [1, 2, 3], [3, 3, 3]], dtype=np.uint16)
    assert idx.count_many(arr).tolist() == [len(brute(docs, r.tolist())) for r in arr]
    assert idx.count_many([]).tolist() == []


@pytest.mark.parametrize("bad", [[[]], [[1, -1]], [["a"]], [[1.5]], "12", [[True]], [[1, 2**31]]])
def test_count_many_refuses_bad_queries(corpus, bad):
    with pytest.raises(QueryError):
        corpus[1].count_many(bad)


def test_count_many_reports_damage_as_format_error(tmp_path):
    docs = [np.arange(50, dtype=np.uint16) % 7]
    store = make_store(tmp_path, docs)
    build_index(store)
    idx = NgramIndex(store)
    idx.shards[0].words = idx.shards[0].words.copy()
    w = idx.shards[0].words  # format 3: 5-byte pointers (all bits set: 2**40 - 1); format 2: uint32 words
    if w.itemsize == 1:
        w[: 5 * 50] = 0xFF  # every pointer past the shard
    else:
        w[:50] = 10**6
    with pytest.raises(FormatError, match="suffix-array row"):
        idx.count_many([[1, 2], [3]])


def test_queries_file(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text("1,2,3\n 4 , 5\n7\n", encoding="utf-8")
    assert [q.tolist() for q in read_queries_file(str(path))] == [[1, 2, 3], [4, 5], [7]]
    path.write_text("1,2\n\n3\n", encoding="utf-8")
    with pytest.raises(QueryError, match=r"q.txt:2: an empty line"):
        read_queries_file(str(path))
    path.write_text("1\n2\n3\n", encoding="utf-8")
    with pytest.raises(LimitError, match="max_queries_per_request=2"):
        read_queries_file(str(path), max_queries=2)


def brute_maximal(docs, ids: list[int]) -> list[tuple[int, int, int]]:
    """Every occurring span, then those no other occurring span contains."""
    n = len(ids)
    occ = {(a, b): len(brute(docs, ids[a:b])) for a in range(n) for b in range(a + 1, n + 1)}
    occ = {k: c for k, c in occ.items() if c}
    return sorted((a, b, c) for (a, b), c in occ.items()
                  if not any(x <= a and b <= y and (x, y) != (a, b) for x, y in occ))


def test_maximal_spans_equal_brute_force(corpus):
    docs, idx = corpus
    rng = np.random.default_rng(3)
    for _ in range(40):
        n = int(rng.integers(1, 25))
        if rng.random() < 0.5:  # a passage stitched from corpus pieces and noise: long and overlapping matches
            pieces = [list(map(int, d[int(rng.integers(len(d))):][: int(rng.integers(1, 12))]))
                      for d in (docs[int(rng.integers(len(docs)))] for _ in range(4)) if len(d)]
            ids = [t for p in pieces for t in p + [int(rng.integers(0, 6))]][:n]
        else:
            ids = rng.integers(0, 6, size=n).tolist()
        if not ids:
            continue
        assert maximal_spans(idx, np.asarray(ids, dtype=np.int64)) == brute_maximal(docs, ids), ids


def test_trace_filters_counts_and_occurrences(corpus):
    docs, idx = corpus
    ids = [5, 3, 1, 2, 3, 1, 2, 3, 1, 2, 0, 0, 1, 5, 1, 2]
    spans = brute_maximal(docs, ids)
    out = asdict(idx.trace(ids, min_tokens=3, occurrences=2))
    want = [s for s in spans if s[1] - s[0] >= 3]
    assert [(s["start"], s["end"], s["count"]) for s in out["spans"]] == want
    assert out["maximal_spans"] == len(spans) and out["dropped_short"] == len(spans) - len(want)
    for s in out["spans"]:
        assert s["length"] == s["end"] - s["start"] and s["tokens"] == ids[s["start"]:s["end"]]
        where = brute(docs, s["tokens"])
        assert len(s["occurrences"]) == min(2, len(where))
        assert all((o["doc_id"], o["offset"]) in where and o["pile_set_name"] is None for o in s["occurrences"])
        assert s["steps_computed"] is False and s["first_step"] is None
    capped = asdict(idx.trace(ids, min_tokens=1, max_count=1))
    assert all(s["count"] <= 1 for s in capped["spans"])
    assert capped["dropped_frequent"] == sum(1 for s in spans if s[2] > 1)
    with pytest.raises(QueryError):
        idx.trace([])


def test_row_duplicates_equal_brute_force(tmp_path):
    from pile_index.format import TokenStore, write_indexed
    from pile_index.ngram.duplicates import row_duplicates
    from pile_index.order import open_order, order_config

    rng = np.random.default_rng(5)
    base = [rng.integers(0, 3, size=int(rng.integers(20, 160))).tolist() for _ in range(8)]
    docs = base + [base[1], base[1], base[4]] + [base[2][:70] + [1, 1] + base[2][70:]]  # copies, a near copy
    write_indexed(tmp_path / "s", [np.asarray(d, dtype=np.uint16) for d in docs], np.uint16)
    store = TokenStore(tmp_path / "s")
    total = sum(map(len, docs)) // 64
    order = open_order(store, order_config(seed=7, seq_length=63, num_samples=2 * total, batch_size=2,
                                           train_steps=total), build=True)
    idx = NgramIndex(store, build_index(store, shard_tokens=300))
    ks = np.arange(order.num_samples)
    got, defined = row_duplicates(idx, order, ks)
    trained_pieces = [row_pieces(order, r) for r in range(order.train_steps * order.batch_size)]
    want = [brute_duplicates(order, trained_pieces, int(k)) for k in ks]
    assert [int(g) if d else None for g, d in zip(got, defined)] == want
    trained = ks < order.train_steps * order.batch_size
    assert all(w >= 1 for w, t in zip(want, trained) if t and w is not None)
    assert max(w for w in want if w is not None) >= 3  # copies and epochs give real duplicates
    assert None in want  # some rows' tokens [32:64) cross a document boundary


def test_cli_count_file_and_trace(corpus, tmp_path, capsys):
    import json

    from cli.main import main

    docs, idx = corpus
    queries = [[1, 2, 3], [0], [1, 2, 3], [9], [3, 1, 2, 3, 1, 2]]
    path = tmp_path / "queries.txt"
    path.write_text("".join(",".join(map(str, q)) + "\n" for q in queries), encoding="utf-8")
    assert main(["ngram", "count", *idx.store.prefixes, "--file", str(path), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines == [{"count": len(brute(docs, q)), "tokens": q} for q in queries]
    path.write_text("1,2\nsome text\n", encoding="utf-8")  # a text line and no tokenizer: one error line
    assert main(["ngram", "count", *idx.store.prefixes, "--file", str(path)]) == 2
    assert "tokenizer" in capsys.readouterr().err

    passage = [5, 3, 1, 2, 3, 1, 2, 3, 1, 2, 0, 0, 1, 5]
    assert main(["ngram", "trace", *idx.store.prefixes, "--tokens", ",".join(map(str, passage)), "--min-tokens", "2",
                 "--occurrences", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == asdict(idx.trace(passage, min_tokens=2, occurrences=1))
    assert main(["ngram", "trace", *idx.store.prefixes, "--tokens", "1,2,3", "--min-tokens", "2"]) == 0
    assert "maximal spans" in capsys.readouterr().out


def test_cli_count_file_text_lines(tmp_path, real_tokenizer_path, capsys):
    import json

    from cli.main import main
    from pile_index.format.tokenizer import load_tokenizer

    tok = load_tokenizer(str(real_tokenizer_path))
    texts = ["the cat sat on the mat", "a dog", "the cat"]
    docs = [np.asarray(tok.encode(t).ids, dtype=np.uint16) for t in texts]
    store = make_store(tmp_path, docs)
    build_index(store)
    path = tmp_path / "q.txt"
    path.write_text("the cat\n" + ",".join(map(str, docs[1])) + "\nzebra\n", encoding="utf-8")
    assert main(["ngram", "count", store.prefix, "--file", str(path), "--tokenizer", str(real_tokenizer_path)]) == 0
    got = [json.loads(x)["count"] for x in capsys.readouterr().out.splitlines()]
    assert got == [2, 1, 0]
