"""Content digests, ``pile-index verify`` end to end, and the checks on opening derived files (issue 16, items
5, 7 and 10): the token-statistics cache, the documents table and JSON sidecars."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli.main import main as cli_main
from pile_index.digests import digest_path, record_digest, recorded_digest
from pile_index.errors import FormatError
from pile_index.format import TokenStore, corpus_info, stats_path, token_stats, write_indexed
from pile_index.ngram import NgramIndex, build_index
from pile_index.order import OrderConfig, index_map_paths, inverse_paths, open_order
from pile_index.sidecar import load_sidecar, optional
from pile_index.sql import DOCUMENT_SCHEMA, DocumentTable, documents_for, token_hashes
from pile_index.verify import verify_corpus

ORDER = ["--seed", "3", "--seq-length", "8", "--num-samples", "100", "--batch-size", "4"]


def _rewrite_in_place(path, data: bytes) -> None:
    """Overwrite ``path`` with ``data`` (same size) and put its mtime back, as a silent corruption would."""
    st = path.stat()
    assert len(data) == st.st_size
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def write_documents(store: TokenStore, path=None, **overrides) -> None:
    """A documents table as ingest writes it (one row per item), with its FILE.sha256 record."""
    n = len(store)
    sizes = np.asarray(store.sizes, dtype=np.int64)
    hashes = np.concatenate([token_hashes(p.tokens, p.sizes) for p in store.parts])
    cols = {"doc_id": np.arange(n, dtype=np.int64), "source_file": ["in.jsonl"] * n,
            "source_line": np.arange(1, n + 1, dtype=np.int64), "pile_set_name": [f"S{i % 3}" for i in range(n)],
            "meta": ['{"k": 1}'] * n, "n_tokens": sizes, "n_bytes": sizes * 3,
            "token_hash": pa.array(hashes, pa.uint64())}
    cols.update(overrides)
    table = pa.table(cols)
    if not overrides:
        table = table.cast(DOCUMENT_SCHEMA)
    out = path or store.documents_path()
    pq.write_table(table, out)
    record_digest(out)


@pytest.fixture
def corpus(tmp_path):
    """A store with every derived file: documents table, n-gram index (5 shards), index maps, inverse files,
    token statistics."""
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 5, size=int(rng.integers(0, 60))).astype(np.uint16) for _ in range(40)]
    write_indexed(tmp_path / "s", docs, np.uint16)
    store = TokenStore(str(tmp_path / "s"))
    write_documents(store)
    build_index(store, shard_tokens=300)
    cfg = OrderConfig(seed=3, seq_length=8, num_samples=100, batch_size=4)
    open_order(store, cfg, build=True)
    token_stats(store)
    return store, cfg, docs


def _statuses(rep):
    return {(os.path.basename(c.file), c.check): c.status for c in rep.checks}


def test_verify_a_sound_corpus(corpus, capsys):
    store, cfg, _ = corpus
    rep = verify_corpus(store, cfg)
    assert rep.ok, rep.problems
    st = _statuses(rep)
    assert {s for s in st.values()} == {"ok"}
    maps = {**index_map_paths(store.prefix, cfg), **inverse_paths(store.prefix, cfg)}
    for p in maps.values():  # every index map and inverse file has its digest, and it is sha256sum's format
        assert digest_path(p).read_text() == f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n"
        assert st[(p.name, "sha256")] == st[(p.name, "recompute")] == "ok"
    assert sum(1 for c in rep.checks if c.check == "tokens_sha256") == 5
    assert st[("s.documents.parquet", "contents")] == "ok"
    assert cli_main(["verify", store.prefix, *ORDER, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith(f"{store.prefix}: verified")
    assert cli_main(["verify", store.prefix, "--json"]) == 0  # without order options: maps not checked
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] and not any(c["check"] == "recompute" for c in doc["checks"])


def test_verify_names_the_issues_damaged_suffix_array(corpus, capsys):
    store, cfg, _ = corpus
    sa = NgramIndex(store).shards[2].path
    words = np.frombuffer(sa.read_bytes(), dtype="<u4").copy()
    n = NgramIndex(store).shards[2].n
    words[:n:7] = 0xFFFFFFFF
    _rewrite_in_place(sa, words.tobytes())
    assert cli_main(["verify", store.prefix, "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert f"mismatch: {sa}: sha256: sha256 " in out
    assert f"mismatch: {sa}: structure: suffix-array row 0: token position 4,294,967,295 is not below" in out
    assert "1 mismatch" not in out and "2 mismatch(es)" in out


def test_verify_catches_one_token_changed_in_the_bin(corpus):
    store, cfg, docs = corpus
    bin_path = store.parts[0].bin_path
    data = bytearray(bin_path.read_bytes())
    data[2 * 400] ^= 1  # one token, same size, mtime put back
    _rewrite_in_place(bin_path, bytes(data))
    rep = verify_corpus(TokenStore(store.prefix), cfg)
    bad = {(os.path.basename(c.file), c.check) for c in rep.problems}
    assert ("s.bin", "tokens_sha256") in bad  # the n-gram shard that indexed it
    assert ("s.documents.parquet", "contents") in bad  # the token_hash of its document
    assert _statuses(rep)[("s.stats.json", "contents")] == "stale"  # a cache: recomputed, never used stale
    assert not rep.ok


def test_verify_catches_damaged_order_files(corpus):
    store, cfg, _ = corpus
    inv = inverse_paths(store.prefix, cfg)["doc_idx_inverse"]
    a = np.load(inv)
    a[10], a[11] = a[11], a[10]  # a permutation still, in range: only a full check sees it
    with open(inv, "r+b") as f:
        f.seek(inv.stat().st_size - a.nbytes)
        f.write(a.tobytes())
    rep = verify_corpus(store, cfg)
    st = _statuses(rep)
    assert st[(inv.name, "sha256")] == st[(inv.name, "recompute")] == "mismatch"
    assert [c.file for c in rep.problems] == [str(inv), str(inv)]
    msg = [c.detail for c in rep.problems if c.check == "recompute"][0]
    assert msg.startswith("entry 10: ") and "delete it and run `pile-index order build" in msg


def test_files_without_digests_are_unrecorded_and_still_checked(corpus):
    store, cfg, _ = corpus
    maps = index_map_paths(store.prefix, cfg)
    for p in maps.values():
        digest_path(p).unlink()
    rep = verify_corpus(store, cfg)
    st = _statuses(rep)
    assert rep.ok and st[(maps["doc_idx"].name, "sha256")] == "unrecorded"
    assert st[(maps["doc_idx"].name, "recompute")] == "ok"
    sample = np.load(maps["sample_idx"])
    sample[5, 1] += 1
    np.save(maps["sample_idx"], sample)
    rep = verify_corpus(store, cfg)
    assert [(os.path.basename(c.file), c.check) for c in rep.problems] == [(maps["sample_idx"].name, "recompute")]
    digest_path(maps["doc_idx"]).write_text("not a digest\n")
    assert "expected one line" in verify_corpus(store, cfg).problems[0].detail


def test_serve_verify_refuses_to_start_on_a_mismatch(corpus, monkeypatch, capsys):
    import api.server

    class Bound(Exception):
        pass

    def bind(*args, **kwargs):
        raise Bound  # serve got past its checks: stop before a port is bound

    monkeypatch.setattr(api.server, "bind_socket", bind)
    store, cfg, _ = corpus
    with pytest.raises(Bound):
        cli_main(["serve", store.prefix, "--verify", *ORDER, "--port", "0"])
    inv = inverse_paths(store.prefix, cfg)["shuffle_idx_inverse"]
    data = bytearray(inv.read_bytes())
    data[-1] ^= 0x01
    _rewrite_in_place(inv, bytes(data))
    assert cli_main(["serve", store.prefix, "--verify", *ORDER, "--port", "0"]) == 2  # never reaches bind
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]  # (the rest is the progress bar)
    assert len(err) == 1 and err[0].startswith(f"pile-index serve: error: {inv}: sha256: ")
    assert "`pile-index verify` lists them all" in err[0]


# -- PREFIX.stats.json is checked against what it describes (item 7) ------------------------------------------


def test_an_edited_stats_cache_is_not_reported(corpus):
    store, _, docs = corpus
    truth = {"min_token": 0, "max_token": 4, "eod_count": int(sum((d == 0).sum() for d in docs))}
    path = stats_path(store)
    text = path.read_text()
    field = f'"eod_count": {truth["eod_count"]}'
    assert field in text
    forged = text.replace(field, field[:-1] + str((int(field[-1]) + 1) % 10))  # one digit: same size
    _rewrite_in_place(path, forged.encode())
    assert corpus_info(store, scan=False).eod_count is None  # never the edited number ...
    assert cli_main(["info", store.prefix, "--json"]) == 0  # ... and a scan recomputes it
    assert token_stats(store) == truth


def test_stats_cache_follows_the_bin_changed_in_place(tmp_path):
    write_indexed(tmp_path / "s", [np.array([0, 5, 0]), np.array([7])], np.uint16)
    store = TokenStore(str(tmp_path / "s"))
    assert token_stats(store) == {"min_token": 0, "max_token": 7, "eod_count": 2}
    _rewrite_in_place(tmp_path / "s.bin", np.array([3, 5, 0, 7], np.uint16).tobytes())  # same sizes, same mtime
    assert token_stats(TokenStore(str(tmp_path / "s"))) == {"min_token": 0, "max_token": 7, "eod_count": 1}
    stats_path(store).write_text('{"fingerprint": 1}')
    assert token_stats(store)["eod_count"] == 1  # a damaged cache is recomputed, not a TypeError


# -- the documents table (item 7) ---------------------------------------------------------------------------


def test_documents_table_is_checked_on_open(tmp_path):
    write_indexed(tmp_path / "s", [np.array([1, 2]), np.array([3])], np.uint16)
    store = TokenStore(str(tmp_path / "s"))
    path = store.documents_path()
    write_documents(store)
    assert documents_for(store).rows([1])[1]["pile_set_name"] == "S1"
    write_documents(store, doc_id=["0", "1"])  # doc_id as VARCHAR: today a BinderException in /v1/samples
    with pytest.raises(FormatError, match="column types: doc_id is VARCHAR.*expected doc_id BIGINT"):
        documents_for(store)
    write_indexed(tmp_path / "t", [np.array([1]), np.array([2]), np.array([3])], np.uint16)
    write_documents(TokenStore(str(tmp_path / "t")), path=path)  # another store's table: 3 rows for 2 items
    with pytest.raises(FormatError, match="3 rows, but the store has 2 items"):
        documents_for(store)
    write_documents(store)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(FormatError, match="not a readable Parquet file"):
        documents_for(store)
    path.unlink()
    path.symlink_to(path)  # a symlink loop: today "no table" (answers without metadata) and no error
    with pytest.raises(FormatError, match="cannot be read"):
        documents_for(store)
    path.unlink()
    path.symlink_to(tmp_path / "gone.parquet")
    with pytest.raises(FormatError, match="cannot be read"):
        documents_for(store)
    path.unlink()
    path.mkdir()
    with pytest.raises(FormatError, match="found a folder"):
        DocumentTable(path)
    path.rmdir()
    assert documents_for(store) is None


def test_token_hashes_are_ingests():
    from ingest.pipeline import token_hash

    rng = np.random.default_rng(1)
    docs = [rng.integers(0, 60000, size=int(rng.integers(0, 9))).astype(np.uint16) for _ in range(20)]
    flat = np.concatenate(docs)
    assert token_hashes(flat, [d.size for d in docs]).tolist() == [token_hash(d) for d in docs]


# -- JSON sidecars (item 10) -------------------------------------------------------------------------------


SPEC = {"n": int, "x": float, "name": str, "items": [{"a": int, "b": optional((int, None))}], "opt": optional(bool)}


@pytest.mark.parametrize("doc, message", [
    ({"x": 1, "name": "a", "items": []}, r"n: expected an integer, found nothing \(the key is missing\)"),
    ({"n": True, "x": 1, "name": "a", "items": []}, "n: expected an integer, found true"),
    ({"n": 1.0, "x": 1, "name": "a", "items": []}, "n: expected an integer, found 1.0"),
    ({"n": 1, "x": "1", "name": "a", "items": []}, r'x: expected a number, found "1"'),
    ({"n": 1, "x": 1, "name": 5, "items": []}, "name: expected a string, found 5"),
    ({"n": 1, "x": 1, "name": "a", "items": {}}, "items: expected a JSON list, found a JSON object"),
    ({"n": 1, "x": 1, "name": "a", "items": [{"a": 1}, {"a": "2"}]}, r'items\[1\]\.a: expected an integer, found "2"'),
    ({"n": 1, "x": 1, "name": "a", "items": [{"a": 1, "b": "x"}]}, r"items\[0\]\.b: expected an integer or null"),
    ({"n": 1, "x": 1, "name": "a", "items": [], "opt": 0}, "opt: expected true or false, found 0"),
    ([1], "the document: expected a JSON object, found a JSON list"),
])
def test_sidecar_fields_are_checked(tmp_path, doc, message):
    p = tmp_path / "side.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(FormatError, match=f"side.json: {message}.*; FIX IT"):
        load_sidecar(p, SPEC, "FIX IT")


def test_sidecar_reads_are_checked(tmp_path):
    p = tmp_path / "side.json"
    good = {"n": 1, "x": 2.5, "name": "a", "items": [{"a": 1, "b": None}], "extra": "kept"}
    p.write_text(json.dumps(good))
    assert load_sidecar(p, SPEC, "fix") == good
    for data, message in [(b'{"n": NaN}', "not valid JSON"), (b'{"n": 1', "not valid JSON"),
                          (b"\xff", "not UTF-8"), (b"[" * 50_000 + b"]" * 50_000, "nested too deeply")]:
        p.write_bytes(data)
        with pytest.raises(FormatError, match=message):
            load_sidecar(p, SPEC, "fix")
    p.unlink()
    p.symlink_to(p)
    with pytest.raises(FormatError, match="cannot be read"):
        load_sidecar(p, SPEC, "fix")


def test_digest_record_round_trip(tmp_path):
    f = tmp_path / "a.npy"
    f.write_bytes(b"abc")
    assert recorded_digest(f) is None
    record_digest(f)
    assert recorded_digest(f) == hashlib.sha256(b"abc").hexdigest()
    from pile_index.atomic import write_bytes

    write_bytes(f, b"abd")  # replaced through the atomic layer: the record of the old bytes goes with them
    assert recorded_digest(f) is None and not digest_path(f).exists()
    record_digest(f)
    digest_path(f).write_text(f"{'0' * 64}  other.npy\n")
    with pytest.raises(FormatError, match="a.npy.sha256: expected one line"):
        recorded_digest(f)


def test_every_sidecar_reader_names_a_damaged_file(corpus, tmp_path):
    from pile_index.order import checked_marker_path, load_index_mappings
    from pile_index.scorer.score import _Manifest

    store, cfg, _ = corpus
    marker = checked_marker_path(index_map_paths(store.prefix, cfg))
    marker.write_bytes(b"[" * 100_000 + b"]" * 100_000)  # today: RecursionError
    load_index_mappings(store, cfg)  # an unreadable marker only means: check the maps again
    assert marker.read_text().startswith("{")
    parts = tmp_path / "out.parts"
    parts.mkdir()
    (parts / "manifest.json").write_text('{"version": 1, "job": {"a": 1}}')  # today: a KeyError later
    with pytest.raises(FormatError, match=r"manifest.json: checkpoints: expected a JSON object, found nothing"):
        _Manifest(parts, {"a": 1})


def test_the_service_refuses_a_damaged_documents_table(tmp_path):
    from api.settings import Settings
    from api.state import open_state

    write_indexed(tmp_path / "s", [np.array([1, 2]), np.array([3])], np.uint16)
    store = TokenStore(str(tmp_path / "s"))
    store.documents_path().symlink_to(store.documents_path())  # today: served without metadata, no error
    with pytest.raises(FormatError, match="s.documents.parquet: cannot be read"):
        open_state(Settings(prefixes=[store.prefix]))
    store.documents_path().unlink()
    write_documents(store, doc_id=["0", "1"])  # today: opens, then a BinderException in /v1/samples
    with pytest.raises(FormatError, match="doc_id is VARCHAR"):
        open_state(Settings(prefixes=[store.prefix]))


def test_verify_a_store_of_several_parts(tmp_path):
    rng = np.random.default_rng(3)
    prefixes = []
    for k in range(3):
        docs = [rng.integers(0, 7, size=int(rng.integers(0, 50))).astype(np.uint16) for _ in range(12)]
        write_indexed(tmp_path / f"p{k}", docs, np.uint16)
        prefixes.append(str(tmp_path / f"p{k}"))
    store = TokenStore(prefixes)
    write_documents(store)
    build_index(store, shard_tokens=100)
    rep = verify_corpus(store)
    assert rep.ok, rep.problems
    bin2 = tmp_path / "p2.bin"
    data = bytearray(bin2.read_bytes())
    data[-2] ^= 1  # the last token of the last part
    _rewrite_in_place(bin2, bytes(data))
    rep = verify_corpus(TokenStore(prefixes))
    assert {(os.path.basename(c.file), c.check) for c in rep.problems} == {("p2.bin", "tokens_sha256"),
                                                                           ("p0.documents.parquet", "contents")}
    assert f"doc_id {len(store) - 1:,}:" in [c.detail for c in rep.problems if c.check == "contents"][0]
