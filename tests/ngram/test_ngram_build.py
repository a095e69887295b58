"""Format 3: builds bounded by memory (parts sorted in RAM, merged on disk), against one in-RAM sort, format 2,
and brute force; resumption; the sample; verify."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pile_index.errors import ConfigError, FormatError
from pile_index.format import TokenStore, write_indexed
from pile_index.ngram import NgramIndex, build_index
from pile_index.ngram import build as build_mod
from pile_index.ngram.build import _ShardBuild
from pile_index.ngram.layout import plan_shards

from test_ngram import brute, make_store, subpatterns  # noqa: E402


def _docs(seed=7, n=120):
    """Repetitive documents: a small alphabet, duplicated documents and copied passages (ties across parts)."""
    rng = np.random.default_rng(seed)
    docs = [rng.integers(0, 5, size=int(rng.integers(0, 50))) for _ in range(n)]
    for _ in range(15):
        docs.insert(int(rng.integers(len(docs))), docs[int(rng.integers(len(docs)))].copy())
    for _ in range(10):
        a = docs[int(rng.integers(len(docs)))]
        docs.append(np.concatenate([rng.integers(0, 5, size=3), a[: int(rng.integers(len(a) + 1))]]))
    return docs


def _decode(path, n):
    b = np.frombuffer(path.read_bytes()[: 5 * n], dtype=np.uint8).reshape(n, 5).astype(np.int64)
    return (b << (8 * np.arange(5))).sum(axis=1)


def _store(tmp_path, docs, **kw):
    return make_store(tmp_path, [np.asarray(d) for d in docs], **kw)


def test_many_parts_and_passes_give_the_bytes_of_one_in_ram_sort(tmp_path):
    docs = _docs()
    store = _store(tmp_path, docs)
    spec = plan_shards(store, 1 << 40, 1 << 40)[0]
    b = _ShardBuild(store, tmp_path, 0, spec, {}, 2048, 4, 3, 0)
    assert len(b.parts) > 20 and b.fan_in == 2 and len(b.levels) - 1 >= 4  # many parts, several merge passes
    one = build_index(store, tmp_path / "one", memory=1 << 30, sample_every=4, sample_tokens=3)
    many = build_index(store, tmp_path / "many", memory=2048, sample_every=4, sample_tokens=3)
    for name in ("shard-00000.sa", "shard-00000.sample"):
        assert (one / name).read_bytes() == (many / name).read_bytes(), name
    assert not (many / "build").exists()  # the runs are gone once merged
    m = json.loads((many / "manifest.json").read_text())
    assert m["format_version"] == 3 and m["pointer_bytes"] == 5 and m["memory"] == 2048


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_parts_sorted_and_merged_on_threads_give_the_same_bytes(tmp_path, dtype):
    docs = _docs(seed=13)
    store = _store(tmp_path, docs, dtype=dtype)
    one = build_index(store, tmp_path / "one", memory=1 << 30, sample_every=4, sample_tokens=3)
    spec = plan_shards(store, 1 << 40, 1 << 40)[0]
    for threads in (1, 2, 3):
        b = _ShardBuild(store, tmp_path, 0, spec, {}, 8192, 4, 3, 0, threads)
        assert b.threads == threads and len(b.parts) > 2 * threads and len(b.levels) >= 2  # merged, in threads
        many = build_index(store, tmp_path / f"t{threads}", memory=8192, sample_every=4, sample_tokens=3,
                           threads=threads)
        for name in ("shard-00000.sa", "shard-00000.sample"):
            assert (one / name).read_bytes() == (many / name).read_bytes(), (threads, name)
    with pytest.raises(ConfigError, match="threads=0: expected 1..1,024"):
        build_index(store, tmp_path / "bad", memory=8192, threads=0)


def test_the_order_is_item_suffixes_then_store_position(tmp_path):
    docs = _docs(seed=3)
    store = _store(tmp_path, docs)
    folder = build_index(store, memory=3000)
    off = np.concatenate([[0], np.cumsum([len(d) for d in docs])])
    flat = np.concatenate([np.asarray(d) for d in docs]).tolist()
    item = np.searchsorted(off, np.arange(len(flat)), side="right") - 1
    want = sorted(range(len(flat)), key=lambda p: (flat[p : off[item[p] + 1]], p))
    assert _decode(folder / "shard-00000.sa", len(flat)).tolist() == want


@pytest.mark.parametrize("memory, every, width", [(2048, 1, 1), (4096, 3, 2), (1 << 20, 256, 8)])
def test_counts_and_positions_equal_format_2_and_brute_force(tmp_path, memory, every, width):
    docs = _docs(seed=memory)
    store = _store(tmp_path, docs)
    new = NgramIndex(store, build_index(store, tmp_path / "new", memory=memory, sample_every=every,
                                        sample_tokens=width))
    old = NgramIndex(store, build_index(store, tmp_path / "old", shard_tokens=200))
    assert new.format_version == 3 and len(new.shards) == 1 and old.format_version == 2 and len(old.shards) > 5
    rng = np.random.default_rng(memory)
    for pat in subpatterns(docs, rng, n=150, max_len=12) + [list(map(int, docs[0])) or [1]]:
        want = brute([np.asarray(d) for d in docs], pat)
        assert new.count(pat) == old.count(pat) == len(want), pat
        d, o = new.locate(pat)
        assert sorted(zip(d.tolist(), o.tolist())) == want, pat
        assert sorted(new.positions(pat).tolist()) == sorted(old.positions(pat).tolist())


def test_several_parts_of_a_store_are_shards_searched_in_parallel(tmp_path):
    docs = _docs(seed=11)
    store = _store(tmp_path, docs, parts=3)
    idx = NgramIndex(store, build_index(store, memory=2048))
    assert len(idx.shards) == 3
    rng = np.random.default_rng(1)
    for pat in subpatterns(docs, rng, n=60, max_len=6):
        want = brute([np.asarray(d) for d in docs], pat)
        assert idx.count(pat) == len(want), pat
        d, o = idx.locate(pat)
        assert sorted(zip(d.tolist(), o.tolist())) == want


def test_int32_ids_are_ranked_in_parts(tmp_path):
    rng = np.random.default_rng(5)
    docs = [rng.choice([0, 70_000, 2**31 - 1, 5], size=int(rng.integers(1, 15))) for _ in range(40)]
    store = _store(tmp_path, docs, dtype=np.int32)
    one = build_index(store, tmp_path / "one", memory=1 << 30)
    many = build_index(store, tmp_path / "many", memory=1500)
    assert (one / "shard-00000.sa").read_bytes() == (many / "shard-00000.sa").read_bytes()
    idx = NgramIndex(store, many)
    for pat in subpatterns(docs, rng, n=30, max_len=4) + [[2**31 - 1, 2**31 - 1], [70_000]]:
        assert idx.count(pat) == len(brute(docs, pat)), pat


def test_an_interrupted_build_resumes_at_the_runs_it_had_not_finished(tmp_path, monkeypatch):
    docs = _docs(seed=5)
    store = _store(tmp_path, docs)
    reference = build_index(store, tmp_path / "ref", memory=2048)
    real_merge, real_part = build_mod.merge_runs, build_mod.part_suffix_array
    merges = []

    def failing_merge(*a, **k):
        merges.append(1)
        if len(merges) == 6:  # some runs of the second pass are done, the rest not
            raise KeyboardInterrupt
        return real_merge(*a, **k)

    sorted_parts = []
    monkeypatch.setattr(build_mod, "merge_runs", failing_merge)
    monkeypatch.setattr(build_mod, "part_suffix_array", lambda *a: sorted_parts.append(a[2:]) or real_part(*a))
    with pytest.raises(KeyboardInterrupt):
        build_index(store, memory=2048)
    folder = tmp_path / "s0.ngram"
    assert not (folder / "manifest.json").exists() and any((folder / "build").glob("*.run.json"))
    before = len(sorted_parts)
    monkeypatch.setattr(build_mod, "merge_runs", real_merge)
    build_index(store, memory=2048)
    n_parts = len(_ShardBuild(store, folder, 0, plan_shards(store, 1 << 40, 1 << 40)[0], {}, 2048, 1, 1, 0).parts)
    assert 0 < before < n_parts and len(sorted_parts) == len(set(sorted_parts)) == n_parts  # none sorted twice
    assert (folder / "shard-00000.sa").read_bytes() == (reference / "shard-00000.sa").read_bytes()
    assert NgramIndex(store).count([1, 2]) == len(brute(docs, [1, 2]))
    sorted_parts.clear()
    build_index(store, memory=2048)  # finished: nothing sorted again
    assert sorted_parts == []


def test_bad_settings_and_old_formats_are_refused(tmp_path):
    store = _store(tmp_path, [np.array([1, 2, 3])])
    with pytest.raises(ConfigError, match="memory=10: expected at least"):
        build_index(store, memory=10)
    with pytest.raises(ConfigError, match="not both"):
        build_index(store, memory=1 << 20, shard_tokens=5)
    with pytest.raises(ConfigError, match="sample_every=0"):
        build_index(store, sample_every=0)
    folder = build_index(store)
    m = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**m, "format_version": 1}))
    with pytest.raises(FormatError, match=r"format_version 1, expected one of 2, 3; rebuild with `pile-index ngram build`"):
        NgramIndex(store)
    (folder / "manifest.json").write_text(json.dumps(m))
    (folder / "shard-00000.sample").write_bytes(b"")
    with pytest.raises(FormatError, match=r"shard-00000\.sample: expected \d+ bytes"):
        NgramIndex(store)


def test_cli_memory_flag_and_verify_of_format_3(tmp_path, capsys):
    from cli.main import main as cli_main

    docs = _docs(seed=2)
    store = _store(tmp_path, docs)
    assert cli_main(["ngram", "build", store.prefix, "--memory", "2K", "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["memory"] == 2048 and built["format_version"] == 3 and built["peak_rss_bytes"] > 0
    with pytest.raises(SystemExit) as e:  # argparse: usage and one error line
        cli_main(["ngram", "build", store.prefix, "--memory", "lots"])
    assert e.value.code == 2 and "--memory: 'lots': expected bytes like" in capsys.readouterr().err
    assert cli_main(["verify", store.prefix, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    checked = {(c["file"].rsplit("/", 1)[-1], c["check"]) for c in doc["checks"]}
    assert {("shard-00000.sa", "sha256"), ("shard-00000.sa", "structure"), ("shard-00000.sample", "sha256")} <= checked
    sa = tmp_path / "s0.ngram" / "shard-00000.sa"
    raw = bytearray(sa.read_bytes())
    raw[0:5] = b"\xff\xff\xff\xff\x00"  # row 0 points past the shard
    sa.write_bytes(bytes(raw))
    assert cli_main(["verify", store.prefix, "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "suffix-array row 0: token position 4,294,967,295 is not below" in out


@pytest.mark.slow
def test_ray_parts_give_the_same_files(tmp_path):
    pytest.importorskip("ray")
    docs = _docs(seed=9)
    store = _store(tmp_path, docs)
    local = build_index(store, tmp_path / "local", memory=2048)
    on_ray = build_index(store, tmp_path / "ray", memory=2048, ray_address="local", ray_num_cpus=2)
    for name in ("shard-00000.sa", "shard-00000.sample"):
        assert (local / name).read_bytes() == (on_ray / name).read_bytes()


@pytest.mark.parametrize("memory, multiple", [(2048, 1), (2048, 2), (2048, 3), (9000, 4), (1 << 30, 2)])
def test_parts_are_balanced_and_a_multiple_of_the_threads(tmp_path, memory, multiple):
    """The parts cover the items in order, each fits the budget (or is one item), their count is a multiple of
    the threads sorting them (or 1), and none is larger than the plain greedy cut's largest."""
    store = _store(tmp_path, _docs(seed=3, n=300))
    spec = plan_shards(store, 1 << 40, 1 << 40)[0]
    off = store.token_offsets()

    def cost(lo, hi):
        return build_mod.PART_BYTES_PER_TOKEN * int(off[hi] - off[lo]) + build_mod.PART_BYTES_PER_ITEM * (hi - lo)

    parts = build_mod.plan_parts(store, spec, memory, multiple)
    assert parts[0][0] == spec.item_lo and parts[-1][1] == spec.item_hi
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:])) and all(lo < hi for lo, hi in parts)
    assert all(cost(lo, hi) <= memory or hi == lo + 1 for lo, hi in parts)
    assert len(parts) == 1 or len(parts) % multiple == 0
    greedy = build_mod.plan_parts(store, spec, memory, 1)
    assert max(cost(*p) for p in parts) <= max(cost(*p) for p in greedy)
    assert len(parts) == (1 if len(greedy) == 1 else -(-len(greedy) // multiple) * multiple)  # no extra parts
