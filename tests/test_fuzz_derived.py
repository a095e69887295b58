"""Fuzzing derived files changed in place (same size, mtime put back): n-gram shards, the token-statistics
cache and the documents table.

Each mutation ends in a named PileIndexError, in answers equal to the undamaged files', or (where no cheap
check on open can see it) in answers a full check names: ``pile-index verify`` reports every one of them.
Never a crash, a traceback of another type, or a false occurrence. The counts below are printed for the
README's guarantees (``pytest -s``)."""

from __future__ import annotations

import os
from dataclasses import asdict

import numpy as np
import pytest

from pile_index import PileIndexError, TokenStore, write_indexed
from pile_index.errors import FormatError
from pile_index.format import corpus_info, stats_path, token_stats
from pile_index.ngram import NgramIndex, build_index
from pile_index.sql import documents_for
from pile_index.verify import verify_corpus
from test_verify import _rewrite_in_place, write_documents
from tests.stores import random_store

SA_MUTATIONS = 2000  # full runs (PILE_INDEX_FUZZ_FULL=1); a quarter by default: see the fuzz_count fixture
STATS_MUTATIONS = 1200
DOCS_MUTATIONS = 600


def _brute(docs, pat):
    m = len(pat)
    return sorted((d, o) for d, doc in enumerate(docs) for o in range(len(doc) - m + 1)
                  if doc[o : o + m].tolist() == pat)


def _mutate_sa(rng, words: np.ndarray, n: int) -> np.ndarray:
    w = words.copy()
    how = int(rng.integers(0, 5))
    if how == 0:  # a flipped byte anywhere: suffix array or bitmap
        b = w.view(np.uint8)
        j = int(rng.integers(0, b.size))
        b[j] ^= np.uint8(rng.integers(1, 256))
    elif how == 1:  # a random 32-bit value into the suffix array
        w[int(rng.integers(0, n))] = np.uint32(rng.integers(0, 2**32))
    elif how == 2:  # two suffix pointers swapped: still a permutation
        a, b = (int(x) for x in rng.choice(n, 2, replace=False))
        w[a], w[b] = w[b], w[a]
    elif how == 3:  # one pointer replaced by another valid position
        w[int(rng.integers(0, n))] = np.uint32(rng.integers(0, n))
    else:  # one bit of the item-boundary bitmap
        q = int(rng.integers(0, n + 1))
        w[n + (q >> 5)] ^= np.uint32(1 << (q & 31))
    return w


@pytest.mark.slow
def test_mutated_ngram_shards(tmp_path, fuzz_count):
    rng = np.random.default_rng(5)
    docs = [rng.integers(0, 4, size=int(rng.integers(0, 30))) for _ in range(40)]
    write_indexed(tmp_path / "s", [d.astype(np.uint16) for d in docs], np.uint16)
    store = TokenStore(str(tmp_path / "s"))
    folder = build_index(store, shard_tokens=250)
    idx = NgramIndex(store)
    shards = [(s.path, s.n, np.frombuffer(s.path.read_bytes(), dtype="<u4").copy()) for s in idx.shards]
    flat = [d for d in docs if d.size]
    pats = [[int(x) for x in rng.integers(0, 4, size=int(rng.integers(1, 4)))] for _ in range(10)]
    for _ in range(15):
        d = flat[int(rng.integers(len(flat)))]
        o = int(rng.integers(d.size))
        pats.append(d[o : o + int(rng.integers(1, 6))].tolist())
    truth = {tuple(p): _brute(docs, p) for p in pats}
    outcomes = {"named_error": 0, "correct": 0, "count_off_no_error": 0, "noop": 0}
    n_runs = fuzz_count(SA_MUTATIONS)
    for _ in range(n_runs):
        path, n, pristine = shards[int(rng.integers(len(shards)))]
        damaged = _mutate_sa(rng, pristine, n)
        if np.array_equal(damaged, pristine):
            outcomes["noop"] += 1
            continue
        _rewrite_in_place(path, damaged.tobytes())
        named, wrong = False, False
        try:
            index = NgramIndex(store, folder)
            for p in pats:
                want = truth[tuple(p)]
                try:
                    c = index.count(p)
                    wrong |= c != len(want)
                except FormatError:
                    named = True
                try:
                    d_, o_ = index.locate(p)
                    got = list(zip(d_.tolist(), o_.tolist()))
                    assert set(got) <= set(want), (p, got, want)  # never a false occurrence
                    wrong |= sorted(got) != want
                except FormatError:
                    named = True
        except FormatError:
            named = True
        outcomes["named_error" if named else "count_off_no_error" if wrong else "correct"] += 1
        rep = verify_corpus(store)
        assert [c.file for c in rep.problems][:1] == [str(path)], rep.problems  # verify names the file, always
        _rewrite_in_place(path, pristine.tobytes())
    print(f"\nn-gram shards, {n_runs} in-place mutations: {outcomes}; verify named the file in every one")
    assert outcomes["named_error"] > n_runs // 2, outcomes


@pytest.mark.slow
def test_mutated_stats_cache(tmp_path, fuzz_count):
    rng = np.random.default_rng(6)
    store, docs = random_store(tmp_path / "s", rng, n_docs=20, vocab=9, max_len=30)
    truth = token_stats(store, use_cache=False)
    path = stats_path(store)
    pristine = path.read_bytes()
    outcomes = {"recomputed": 0, "intact": 0}
    n_runs = fuzz_count(STATS_MUTATIONS)
    for _ in range(n_runs):
        data = bytearray(pristine)
        if rng.random() < 0.5:  # a digit changed: still valid JSON, other numbers
            digits = [i for i, c in enumerate(data) if chr(c).isdigit()]
            j = digits[int(rng.integers(len(digits)))]
            data[j] = ord(str((int(chr(data[j])) + int(rng.integers(1, 10))) % 10))
        else:  # any byte
            j = int(rng.integers(0, len(data)))
            data[j] ^= int(rng.integers(1, 256))
        _rewrite_in_place(path, bytes(data))
        info = asdict(corpus_info(store, scan=False))
        got = {k: info[k] for k in truth}
        assert got in (truth, {k: None for k in truth}), got  # the true figures, or none: never edited ones
        outcomes["recomputed" if got != truth else "intact"] += 1
        assert token_stats(store) == truth
        _rewrite_in_place(path, pristine)
    print(f"\nstats cache, {n_runs} in-place mutations: {outcomes} (never an edited figure)")
    assert outcomes["recomputed"] == n_runs, outcomes


@pytest.mark.slow
def test_mutated_documents_table(tmp_path, fuzz_count):
    rng = np.random.default_rng(8)
    store, docs = random_store(tmp_path / "s", rng, n_docs=30, vocab=50, max_len=20)
    write_documents(store)
    path = store.documents_path()
    pristine = path.read_bytes()
    table = documents_for(store)
    want = table.rows(list(range(len(docs))))
    table.close()
    outcomes = {"named_error": 0, "same_rows": 0, "other_rows": 0}
    n_runs = fuzz_count(DOCS_MUTATIONS)
    for _ in range(n_runs):
        data = bytearray(pristine)
        for _ in range(int(rng.integers(1, 4))):
            j = int(rng.integers(0, len(data)))
            data[j] ^= int(rng.integers(1, 256))
        _rewrite_in_place(path, bytes(data))
        try:
            t = documents_for(store)
            got = t.rows(list(range(len(docs))))
            t.close()
            outcomes["same_rows" if got == want else "other_rows"] += 1
        except PileIndexError as e:
            assert isinstance(e, FormatError) and str(e).startswith(str(path)), e
            outcomes["named_error"] += 1
        rep = verify_corpus(store)
        assert not rep.ok and {c.file for c in rep.problems} == {str(path)}, rep.problems
        _rewrite_in_place(path, pristine)
    print(f"\ndocuments table, {n_runs} in-place mutations: {outcomes}; verify named the file in every one")
    assert outcomes["named_error"] > n_runs // 2, outcomes
    assert not any(".tmp-" in f for f in os.listdir(tmp_path))
