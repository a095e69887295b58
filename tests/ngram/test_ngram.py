"""The n-gram index against a brute-force scan: counts and positions on random and adversarial corpora."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pile_index.errors import FormatError, LimitError, NotFoundError, QueryError
from pile_index.format import TokenStore, write_indexed
from pile_index.ngram import NgramIndex, build_index, plan_shards, query_tokens, suffix_array


def brute(docs: list[np.ndarray], pat: list[int]) -> list[tuple[int, int]]:
    """Every (doc, offset) where pat occurs inside one document, overlapping allowed."""
    m = len(pat)
    out = []
    for d, doc in enumerate(docs):
        doc = [int(x) for x in doc]
        for o in range(len(doc) - m + 1):
            if doc[o : o + m] == pat:
                out.append((d, o))
    return out


def make_store(tmp_path, docs, dtype=np.uint16, name="s", parts=1):
    """One store of ``docs``, split over ``parts`` prefixes."""
    cuts = np.array_split(np.arange(len(docs)), parts) if docs else [np.arange(0)]
    prefixes = []
    for i, cut in enumerate(cuts):
        prefix = tmp_path / f"{name}{i}"
        write_indexed(prefix, [np.asarray(docs[j], dtype=dtype) for j in cut], dtype)
        prefixes.append(str(prefix))
    return TokenStore(prefixes)


def check_all(idx: NgramIndex, docs, patterns):
    for pat in patterns:
        want = brute(docs, list(pat))
        assert idx.count(pat) == len(want), pat
        d, o = idx.locate(pat)
        assert sorted(zip(d.tolist(), o.tolist())) == want, pat


def subpatterns(docs, rng, n=40, max_len=8):
    """Patterns drawn from the corpus (they occur), plus random ones (they mostly do not)."""
    pats = []
    flat = [d for d in docs if len(d)]
    for _ in range(n):
        if flat and rng.random() < 0.7:
            doc = flat[rng.integers(len(flat))]
            o = int(rng.integers(len(doc)))
            m = int(rng.integers(1, max_len + 1))
            pats.append([int(x) for x in doc[o : o + m]])
        else:
            pats.append([int(x) for x in rng.integers(0, 5, size=int(rng.integers(1, 4)))])
    return pats


def test_suffix_array_matches_sorting():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 50))
        k = int(rng.integers(1, 4))
        T = np.concatenate([rng.integers(1, k + 1, size=n - 1), [0]]).astype(np.int32)
        ref = sorted(range(n), key=lambda i: T[i:].tolist())
        before = T.copy()
        assert suffix_array(T, k + 1).tolist() == ref
        np.testing.assert_array_equal(T, before)  # the types packed into T while sorting are taken out again
        wide = T.astype(np.int64)  # the symbol type of parts past 2**31 tokens
        assert suffix_array(wide, k + 1).tolist() == ref
        np.testing.assert_array_equal(wide, before)


def test_prefix_doubling_matches_sorting():
    """The reduced problems' prefix doubling, alone: random and repetitive strings (many rounds)."""
    from pile_index.ngram.suffix_array import _doubling_sa

    rng = np.random.default_rng(11)
    cases = [rng.integers(1, int(rng.integers(2, 9)), size=int(rng.integers(1, 80))) for _ in range(200)]
    cases += [np.tile([1, 2, 2], 30), np.ones(100, dtype=np.int64), np.tile(rng.integers(1, 4, 7), 20)]
    for body in cases:
        T = np.concatenate([body, [0]]).astype(np.int32)
        ref = sorted(range(T.size), key=lambda i: T[i:].tolist())
        out = np.empty(T.size, dtype=np.int32)
        _doubling_sa(T, int(T.max()) + 1, out)
        assert out.tolist() == ref


@pytest.mark.parametrize("unique", [0.0, 2.0])
def test_suffix_array_with_and_without_doubling(monkeypatch, unique):
    """Reduced problems sorted by doubling (any share of distinct names) or always by SA-IS: the same array."""
    import importlib

    sa_mod = importlib.import_module("pile_index.ngram.suffix_array")  # the package exports the function
    monkeypatch.setattr(sa_mod, "DOUBLING_UNIQUE", unique)
    rng = np.random.default_rng(12)
    for body in [rng.integers(1, 3, size=3000), rng.integers(1, 300, size=5000),
                 np.tile(rng.integers(1, 4, size=37), 60), np.concatenate([np.tile([1, 2], 500), rng.integers(1, 5, 400)])]:
        T = np.concatenate([body, [0]]).astype(np.int32)
        assert _is_sorted_sa(T, suffix_array(T, int(T.max()) + 1))


def _is_sorted_sa(T: np.ndarray, sa: np.ndarray) -> bool:
    if sorted(sa.tolist()) != list(range(T.size)):
        return False
    for a, b in zip(sa[:-1].tolist(), sa[1:].tolist()):
        x, y = T[a:], T[b:]
        k = min(x.size, y.size)
        diff = np.flatnonzero(x[:k] != y[:k])
        if diff.size:
            if x[diff[0]] > y[diff[0]]:
                return False
        elif x.size > y.size:
            return False
    return True


@pytest.mark.slow
def test_suffix_array_deep_recursion():
    """Larger inputs whose reduced problems recurse several levels: binary, periodic, one symbol."""
    rng = np.random.default_rng(4)
    cases = [
        rng.integers(1, 3, size=3000),
        np.tile(rng.integers(1, 4, size=37), 60),
        np.ones(2000, dtype=np.int64),
        np.concatenate([np.tile([1, 2], 500), np.tile([2, 1, 1], 300), rng.integers(1, 5, size=400)]),
    ]
    for body in cases:
        T = np.concatenate([body, [0]]).astype(np.int32)
        assert _is_sorted_sa(T, suffix_array(T, int(T.max()) + 1))


def test_random_corpus_matches_brute_force(tmp_path):
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 4, size=int(rng.integers(0, 30))) for _ in range(40)]
    store = make_store(tmp_path, docs)
    idx = NgramIndex(store, build_index(store))
    check_all(idx, docs, subpatterns(docs, rng, n=80))


def test_adversarial_corpora(tmp_path):
    cases = {
        "one_token": [np.zeros(50, np.int64), np.zeros(7, np.int64), np.zeros(1, np.int64)],
        "long_repeat": [np.tile([1, 2, 3], 40), np.tile([1, 2, 3], 13)[:-1], np.array([3, 1, 2])],
        "empty_items": [np.zeros(0, np.int64), np.array([5, 5]), np.zeros(0, np.int64), np.zeros(0, np.int64),
                        np.array([5]), np.zeros(0, np.int64)],
        "max_ids": [np.array([65535, 0, 65535, 65535]), np.array([0, 65535])],
    }
    for name, docs in cases.items():
        store = make_store(tmp_path, docs, name=name)
        idx = NgramIndex(store, build_index(store))
        vals = sorted({int(x) for d in docs for x in d})
        pats = [[v] for v in vals] + [[v] * k for v in vals for k in (2, 3, 7, 49, 50, 51)]
        pats += [[1, 2, 3, 1], [3, 1, 2], [2, 3, 1, 2, 3], [65535, 65535], [0, 65535], [65535, 0, 65535, 65535]]
        check_all(idx, docs, pats)


def test_query_longer_than_any_document(tmp_path):
    docs = [np.array([1, 2, 3]), np.array([1, 2])]
    store = make_store(tmp_path, docs)
    idx = NgramIndex(store, build_index(store))
    assert idx.count([1, 2, 3, 1, 2]) == 0  # would match across the item boundary in the .bin
    assert idx.count([3, 1]) == 0
    assert idx.count([1, 2]) == 2
    assert idx.count(list(range(100))) == 0


def test_shards_and_parts_lose_nothing(tmp_path):
    rng = np.random.default_rng(3)
    docs = [rng.integers(0, 3, size=int(rng.integers(0, 12))) for _ in range(60)]
    for parts in (1, 3):
        for shard_tokens in (1, 5, 17, 10_000):
            store = make_store(tmp_path, docs, name=f"p{parts}_{shard_tokens}_", parts=parts)
            folder = build_index(store, tmp_path / f"idx{parts}_{shard_tokens}", shard_tokens=shard_tokens)
            idx = NgramIndex(store, folder)
            assert sum(s.n for s in idx.shards) == store.n_tokens
            if shard_tokens == 5:
                assert len(idx.shards) > 3
            check_all(idx, docs, subpatterns(docs, rng, n=25, max_len=5))


def test_plan_shards_respects_items_and_parts(tmp_path):
    docs = [np.arange(n) % 7 for n in (4, 0, 9, 3, 3, 20, 1)]
    store = make_store(tmp_path, docs, parts=2)
    plan = plan_shards(store, 6)
    assert [(s.part, s.item_lo, s.item_hi) for s in plan] == [(0, 0, 2), (0, 2, 3), (0, 3, 4), (1, 4, 5), (1, 5, 6), (1, 6, 7)]
    assert sum(s.n_tokens for s in plan) == store.n_tokens


def test_int32_store(tmp_path):
    rng = np.random.default_rng(5)
    docs = [rng.choice([0, 70_000, 2**31 - 1, 5], size=int(rng.integers(1, 15))) for _ in range(20)]
    store = make_store(tmp_path, docs, dtype=np.int32)
    idx = NgramIndex(store, build_index(store))
    check_all(idx, docs, subpatterns(docs, rng, n=30, max_len=4) + [[2**31 - 1, 2**31 - 1], [70_000]])


def test_pagination(tmp_path):
    docs = [np.zeros(10, np.int64), np.zeros(5, np.int64)]
    store = make_store(tmp_path, docs)
    idx = NgramIndex(store, build_index(store, shard_tokens=6))
    full = list(zip(*[a.tolist() for a in idx.locate([0, 0])]))
    assert len(full) == 13
    pages = []
    for off in range(0, 13, 4):
        d, o = idx.locate([0, 0], offset=off, limit=4)
        pages += list(zip(d.tolist(), o.tolist()))
    assert pages == full
    assert idx.locate([0, 0], offset=13, limit=4)[0].size == 0


def test_empty_store(tmp_path):
    store = make_store(tmp_path, [np.zeros(0, np.int64), np.zeros(0, np.int64)])
    idx = NgramIndex(store, build_index(store))
    assert idx.count([1]) == 0
    assert idx.locate([1])[0].size == 0
    with pytest.raises(QueryError):
        idx.count([])


def test_refuses_a_changed_store_and_missing_index(tmp_path):
    store = make_store(tmp_path, [np.array([1, 2, 3])], name="a")
    with pytest.raises(NotFoundError):
        NgramIndex(store)
    folder = build_index(store)
    other = make_store(tmp_path, [np.array([1, 2, 3, 4])], name="b")  # the fingerprint covers sizes, not token values
    with pytest.raises(FormatError, match="fingerprint"):
        NgramIndex(other, folder)
    bin_path = tmp_path / "a0.bin"  # same sizes, other token values: the fingerprint cannot see it
    original = bin_path.read_bytes()
    bin_path.write_bytes(np.array([1, 2, 9], np.uint16).tobytes())
    with pytest.raises(FormatError, match="differ"):
        NgramIndex(TokenStore(str(tmp_path / "a0")), folder)
    bin_path.write_bytes(original)
    sa = folder / "shard-00000.sa"
    sa.write_bytes(sa.read_bytes()[:-1])
    with pytest.raises(FormatError, match="truncated"):
        NgramIndex(store, folder)


def test_build_resumes_finished_shards(tmp_path):
    docs = [np.arange(5), np.arange(5), np.arange(3)]
    store = make_store(tmp_path, docs)
    folder = build_index(store, shard_tokens=5)
    marker = folder / "shard-00001.json"
    stamp = (folder / "shard-00001.sa").stat().st_mtime_ns
    (folder / "manifest.json").unlink()  # as if interrupted before the manifest
    (folder / "shard-00002.json").unlink()
    build_index(store, shard_tokens=5)
    assert (folder / "shard-00001.sa").stat().st_mtime_ns == stamp
    assert json.loads(marker.read_text())["item_lo"] == 1
    assert NgramIndex(store).count([0, 1, 2]) == 3


def test_query_tokens_parsing_and_limits():
    assert query_tokens(tokens="1, 2,3").tolist() == [1, 2, 3]
    with pytest.raises(QueryError):
        query_tokens(tokens="1,x")
    with pytest.raises(QueryError):
        query_tokens(tokens="1", text="a")
    with pytest.raises(LimitError) as e:
        query_tokens(tokens=[1] * 5, max_tokens=4)
    assert e.value.setting == "max_tokens_per_query"


def test_text_query_with_real_tokenizer(tmp_path, real_tokenizer_path):
    from pile_index.format import load_tokenizer

    tok = load_tokenizer(real_tokenizer_path)
    texts = ["Hello, I am here. Hello, I am", "I am Hello, I am"]
    docs = [np.array(tok.encode(t).ids) for t in texts]
    store = make_store(tmp_path, docs)
    idx = NgramIndex(store, build_index(store))
    ids = query_tokens(text="Hello, I am", tokenizer=tok)
    assert ids.tolist() == [12092, 13, 309, 717]
    # " Hello" after a space is another token than "Hello" at the start: one occurrence, not two
    assert idx.count(ids) == len(brute(docs, ids.tolist())) == 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    docs=st.lists(st.lists(st.integers(0, 3), max_size=20), max_size=12),
    shard_tokens=st.integers(1, 40),
    pats=st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=6), min_size=1, max_size=8),
)
def test_property_counts_and_positions(tmp_path_factory, docs, shard_tokens, pats):
    tmp = tmp_path_factory.mktemp("h")
    arrays = [np.asarray(d, dtype=np.int64) for d in docs]
    store = make_store(tmp, arrays)
    idx = NgramIndex(store, build_index(store, shard_tokens=shard_tokens))
    # patterns from the corpus, including ones that straddle a document boundary in the .bin
    flat = [int(x) for d in docs for x in d]
    for i in range(0, max(len(flat) - 3, 0), 5):
        pats.append(flat[i : i + 4])
    check_all(idx, arrays, pats)


def test_cli_build_count_locate(tmp_path, capsys):
    from cli.main import main as cli_main

    docs = [np.array([3, 4, 3, 4]), np.array([4, 3]), np.array([3, 4])]
    store = make_store(tmp_path, docs)
    prefix = store.prefix
    assert cli_main(["ngram", "build", prefix, "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["shards"] == 1 and built["tokens"] == 8 and built["format_version"] == 3 and built["memory"] > 0
    assert (tmp_path / "s0.ngram" / "shard-00000.sa").stat().st_size == 5 * 8 + 2  # 8 pointers + 2 bitmap bytes
    assert cli_main(["ngram", "count", prefix, "--tokens", "3,4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"count": 3, "tokens": [3, 4]}
    assert cli_main(["ngram", "locate", prefix, "--tokens", "3,4", "--limit", "2", "--json"]) == 0
    page = json.loads(capsys.readouterr().out)
    assert page["count"] == 3 and len(page["occurrences"]) == 2 and page["next_offset"] == 2
    assert cli_main(["ngram", "locate", prefix, "--tokens", "3,4", "--offset", "2", "--json"]) == 0
    last = json.loads(capsys.readouterr().out)
    got = sorted((o["doc_id"], o["offset"]) for o in page["occurrences"] + last["occurrences"])
    assert got == brute(docs, [3, 4]) and last["next_offset"] is None
    assert cli_main(["ngram", "count", prefix, "--text", "hi", "--json"]) == 2  # no tokenizer: one-line error
    assert "tokenizer" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_shard_build_gives_the_same_files(tmp_path):
    pytest.importorskip("ray")
    rng = np.random.default_rng(4)
    docs = [rng.integers(0, 50, size=int(rng.integers(0, 300))).astype(np.uint16) for _ in range(60)]
    write_indexed(tmp_path / "s", docs, np.uint16)
    store = TokenStore(str(tmp_path / "s"))
    single = build_index(store, tmp_path / "single", shard_tokens=2000)
    on_ray = build_index(store, tmp_path / "ray", shard_tokens=2000, ray_address="local", ray_num_cpus=2)
    names = sorted(p.name for p in single.iterdir())
    assert len([n for n in names if n.endswith(".sa")]) >= 3
    assert names == sorted(p.name for p in on_ray.iterdir())
    for n in names:
        if n != "manifest.json":
            assert (single / n).read_bytes() == (on_ray / n).read_bytes(), n
    idx = NgramIndex(store, on_ray)
    assert idx.count([int(docs[5][0])]) == NgramIndex(store, single).count([int(docs[5][0])])


# -- damaged index files: a named error, never a number (issue 16, items 5 and 10) ---------------------------


def _rewrite_in_place(path, data: bytes) -> None:
    """Overwrite ``path`` with ``data`` (same size) and put its mtime back, as a silent corruption would."""
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


FORMATS = pytest.mark.parametrize("fmt", [2, 3])


def _build(store, fmt, folder=None):
    """Format 2 (the old layout, one shard) or format 3 (the default build)."""
    return build_index(store, folder, shard_tokens=10**6) if fmt == 2 else build_index(store, folder)


def _pointers(path, n, fmt):
    """(the n suffix pointers as int64, the bitmap's bytes) of a shard file in either format."""
    raw = path.read_bytes()
    if fmt == 2:
        return np.frombuffer(raw, dtype="<u4")[:n].astype(np.int64), raw[4 * n :]
    b = np.frombuffer(raw[: 5 * n], dtype=np.uint8).reshape(n, 5).astype(np.int64)
    return (b << (8 * np.arange(5))).sum(axis=1), raw[5 * n :]


def _with_pointers(ptrs, tail, fmt) -> bytes:
    if fmt == 2:
        return ptrs.astype("<u4").tobytes() + tail
    return (ptrs[:, None] >> (8 * np.arange(5)) & 0xFF).astype(np.uint8).tobytes() + tail


def _damage_store(tmp_path, fmt=2):
    rng = np.random.default_rng(2)
    docs = [rng.integers(0, 4, size=int(rng.integers(5, 40))) for _ in range(30)]
    store = make_store(tmp_path, docs)
    folder = _build(store, fmt)
    return docs, store, folder


@FORMATS
def test_out_of_range_suffix_pointers_are_a_named_error(tmp_path, fmt):
    docs, store, folder = _damage_store(tmp_path, fmt)
    sa = folder / "shard-00000.sa"
    ptrs, tail = _pointers(sa, store.n_tokens, fmt)
    ptrs[::7] = 0xFFFFFFFF  # the damage: every 7th suffix pointer
    _rewrite_in_place(sa, _with_pointers(ptrs, tail, fmt))
    idx = NgramIndex(store)  # opening reads no pointer; the queries check each one they follow
    for pat in ([1, 2], [3], [0, 0, 1]):
        with pytest.raises(FormatError, match=r"shard-00000\.sa: suffix-array row [\d,]+ holds 4,294,967,295"):
            idx.count(pat)
        with pytest.raises(FormatError, match=r"shard-00000\.sa"):
            idx.locate(pat)


@FORMATS
def test_rows_out_of_suffix_order_around_an_answer_are_a_named_error(tmp_path, fmt):
    docs, store, folder = _damage_store(tmp_path, fmt)
    sa = folder / "shard-00000.sa"
    pristine = sa.read_bytes()
    idx = NgramIndex(store)
    s = idx.shards[0]
    pat = np.array([1, 2], dtype=np.int64)
    lo, hi = s.range(s.tokens, s.words, pat)
    assert (lo, hi) == s.count_range(pat)  # through the sample: the same rows
    assert hi - lo == idx.count(pat) == len(brute(docs, [1, 2])) > 3
    words, tail = _pointers(sa, store.n_tokens, fmt)
    other = int(words[hi + 3])  # a valid pointer, to a suffix that sorts after [1, 2]
    for row in (lo - 2, lo - 1, lo, lo + 1, (lo + hi) // 2):  # a damaged row the search meets or ends beside
        damaged = words.copy()
        damaged[row] = other
        _rewrite_in_place(sa, _with_pointers(damaged, tail, fmt))
        with pytest.raises(FormatError, match="out of suffix order"):
            NgramIndex(store).count(pat)
        with pytest.raises(FormatError, match="out of suffix order"):
            NgramIndex(store).locate(pat)
    _rewrite_in_place(sa, pristine)
    assert NgramIndex(store).count(pat) == hi - lo


@FORMATS
def test_locate_checks_each_position_it_returns(tmp_path, fmt):
    docs, store, folder = _damage_store(tmp_path, fmt)
    sa = folder / "shard-00000.sa"
    s = NgramIndex(store).shards[0]
    pat = np.array([1, 2], dtype=np.int64)
    lo, hi = s.range(s.tokens, s.words, pat)
    pristine, tail = _pointers(sa, store.n_tokens, fmt)
    for row in range(lo + 1, hi - 1):  # inside the answer, on a row no search probes: the count cannot see it ...
        words = pristine.copy()
        words[row] = words[hi + 3]
        _rewrite_in_place(sa, _with_pointers(words, tail, fmt))
        idx = NgramIndex(store)
        try:
            if idx.count(pat) == hi - lo:
                break
        except FormatError:
            continue
    assert idx.count(pat) == hi - lo
    with pytest.raises(FormatError, match=f"row {row:,} .* out of suffix order"):  # ... locate does
        idx.locate(pat)
    words[row] = 0xFFFFFFFF
    _rewrite_in_place(sa, _with_pointers(words, tail, fmt))
    with pytest.raises(FormatError, match=f"row {row:,} holds 4,294,967,295"):
        idx.locate(pat)


@FORMATS
def test_damaged_boundary_bitmap_is_a_named_error(tmp_path, fmt):
    docs = [np.array([1, 2]), np.array([3, 4])]
    store = make_store(tmp_path, docs)
    folder = _build(store, fmt)
    sa = folder / "shard-00000.sa"
    n = store.n_tokens
    ptrs, tail = _pointers(sa, n, fmt)
    dt = "<u4" if fmt == 2 else np.uint8
    pristine = np.frombuffer(tail, dtype=dt).copy()
    bits = pristine.copy()
    bits[0] &= ~bits.dtype.type(1 << 2)  # item 1's start bit cleared: [2, 3] would look like one item's tokens
    _rewrite_in_place(sa, _with_pointers(ptrs, bits.tobytes(), fmt))
    with pytest.raises(FormatError, match="run past the end of document 0"):
        NgramIndex(store).locate([2, 3])
    bits = pristine.copy()
    bits[0] &= ~bits.dtype.type(1 << n)  # the end bit
    _rewrite_in_place(sa, _with_pointers(ptrs, bits.tobytes(), fmt))
    with pytest.raises(FormatError, match="bitmap"):
        NgramIndex(store)


def _manifest_edit(folder, edit) -> None:
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["shards"][0].pop("n_tokens"), r"shards\[0\]\.n_tokens: expected an integer, found nothing"),
    (lambda m: m["shards"][0].update(n_tokens="9"), r"shards\[0\]\.n_tokens: expected an integer, found \"9\""),
    (lambda m: m["shards"][0].update(part=True), r"shards\[0\]\.part: expected an integer, found true"),
    (lambda m: m["shards"][0].update(token_lo=1), r"shards\[0\]\.token_lo: expected 0 \(the plan"),
    (lambda m: m.update(shards={}), r"shards: expected a JSON list, found a JSON object"),
    (lambda m: m.update(shard_tokens=0), r"shard_tokens: shard_tokens=0"),
    (lambda m: m.update(n_tokens=6), r"n_items 2 and n_tokens 6, but the store has 2 items and 5 tokens"),
    (lambda m: m.pop("store_fingerprint"), r"store_fingerprint: expected a string, found nothing"),
])
def test_damaged_manifest_is_a_named_error(tmp_path, edit, message):
    store = make_store(tmp_path, [np.array([1, 2, 3]), np.array([2, 3])])
    folder = build_index(store)
    _manifest_edit(folder, edit)
    with pytest.raises(FormatError, match=message):
        NgramIndex(store)


def test_unreadable_manifest_is_a_named_error(tmp_path):
    store = make_store(tmp_path, [np.array([1, 2, 3])])
    folder = build_index(store)
    path = folder / "manifest.json"
    for data, message in [(b'{"format_version": 2, "shards": [', "not valid JSON"), (b"\xff\xfe{}", "not UTF-8"),
                          (b"[" * 100_000 + b"]" * 100_000, "nested too deeply|format_version"),
                          (b'{"format_version": NaN}', "not valid JSON")]:
        path.write_bytes(data)
        with pytest.raises(FormatError, match=message):
            NgramIndex(store)
    path.unlink()
    path.symlink_to(path)  # a symlink loop
    with pytest.raises(FormatError, match="cannot be read"):
        NgramIndex(store)


def test_all_ngram_commands_name_a_damaged_manifest(tmp_path, capsys):
    from cli.main import main as cli_main
    from pile_index.order import OrderConfig, open_order

    store = make_store(tmp_path, [np.array([3, 4, 3, 4, 5, 6, 7, 8]), np.array([4, 3, 9, 9])])
    build_index(store)
    cfg = OrderConfig(seed=1, seq_length=3, num_samples=3, batch_size=1)
    open_order(store, cfg, build=True)
    _manifest_edit(tmp_path / "s0.ngram", lambda m: m["shards"][0].pop("n_tokens"))
    order = ["--seed", "1", "--seq-length", "3", "--num-samples", "3", "--batch-size", "1"]
    p = store.prefix
    for argv in (["ngram", "count", p, "--tokens", "3,4"], ["ngram", "locate", p, "--tokens", "3,4"],
                 ["ngram", "steps", p, "--tokens", "3,4", *order],
                 ["sql", p, "SELECT count(*) FROM ngram_occurrences", "--ngram-tokens", "3,4", *order]):
        assert cli_main(argv) == 2, argv
        err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("INFO ")]
        assert len(err) == 1 and "manifest.json: shards[0].n_tokens: expected an integer" in err[0], (argv, err)


def test_build_records_full_digests_and_resume_keeps_them(tmp_path):
    import hashlib

    docs = [np.arange(5), np.arange(5), np.arange(3)]
    store = make_store(tmp_path, docs)
    folder = build_index(store, shard_tokens=5)
    manifest = json.loads((folder / "manifest.json").read_text())
    tokens = np.fromfile(tmp_path / "s0.bin", dtype=np.uint16)
    for i, entry in enumerate(manifest["shards"]):
        sa = folder / f"shard-{i:05}.sa"
        assert entry["sa_sha256"] == hashlib.sha256(sa.read_bytes()).hexdigest()
        lo = entry["token_lo"]
        assert entry["tokens_sha256"] == hashlib.sha256(tokens[lo : lo + entry["n_tokens"]].tobytes()).hexdigest()
        assert json.loads((folder / f"shard-{i:05}.json").read_text())["sa_sha256"] == entry["sa_sha256"]
    stamp = (folder / "shard-00000.sa").stat().st_mtime_ns
    (folder / "manifest.json").unlink()  # interrupted: shard 0 is kept (its digests come from its marker) ...
    (folder / "shard-00001.json").unlink()  # ... and shard 1 is built again
    build_index(store, shard_tokens=5)
    assert (folder / "shard-00000.sa").stat().st_mtime_ns == stamp
    assert json.loads((folder / "manifest.json").read_text()) == manifest
