"""`pile-index ingest`: GPT-NeoX preprocess_data semantics, the documents table, problem lines, atomicity."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import struct
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, pre_tokenizers, trainers

import ingest.pipeline as pipeline
from cli.main import main
from ingest.demo_corpus import SPECIAL_TOKENS, new_demo_tokenizer
from ingest.pipeline import IngestConfig, ingest, token_hash, token_hashes
from ingest.readers import LineReader, StrictError
from pile_index.errors import FormatError
from pile_index.format import IndexedDataset
from pile_index.sql import DOCUMENT_SCHEMA

TEXTS = [
    "Hello, I am a document.",
    "",
    "Ünïcödé: naïve café — 日本語 😀",
    "def f(x):\n    return x + 1\n",
    "e\u0301 decomposed accent",
    "   leading spaces and <|endoftext|> inside",
    "",
    "last one",
]


@pytest.fixture(scope="session")
def small_tok_path(tmp_path_factory) -> Path:
    """A GPT-NeoX-style byte-level BPE trained in code on a few sentences (deterministic, < 1 s)."""
    tok = new_demo_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([t for t in TEXTS if t] * 20 + ["the quick brown fox jumps over the lazy dog"] * 20,
                            trainer=trainer)
    path = tmp_path_factory.mktemp("tok") / "tok.json"
    tok.save(str(path))
    return path


def write_jsonl(path: Path, records: list, raw_lines: dict[int, bytes] | None = None) -> Path:
    """Write records as JSON lines (0-based ``raw_lines`` replace a record with raw bytes); .zst/.gz by name."""
    lines = []
    for i, r in enumerate(records):
        if raw_lines and i in raw_lines:
            lines.append(raw_lines[i])
        else:
            lines.append(json.dumps(r, ensure_ascii=False).encode("utf-8"))
    data = b"\n".join(lines) + b"\n"
    if path.name.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    elif path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def pile_records(texts: list[str], set_name: str = "Pile-CC") -> list[dict]:
    return [{"text": t, "meta": {"pile_set_name": set_name, "i": i}} for i, t in enumerate(texts)]


def run(inputs, out, tok, **kw):
    return ingest(IngestConfig([str(p) for p in inputs], str(out), str(tok), progress=False, **kw))


def reference_ingest(inputs: list[Path], tok: Tokenizer, append_eod: bool) -> list[np.ndarray]:
    """GPT-NeoX preprocess_data, one document at a time: json line -> skip empty -> encode(text).ids."""
    docs = []
    for p in inputs:
        raw = p.read_bytes()
        if p.name.endswith(".zst"):
            raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
        elif p.name.endswith(".gz"):
            raw = gzip.decompress(raw)
        for line in raw.decode("utf-8").splitlines():
            text = json.loads(line)["text"]
            if not text:
                continue
            ids = tok.encode(text).ids
            if append_eod:
                ids.append(0)
            docs.append(np.array(ids, dtype=np.uint16))
    return docs


def reference_idx_bytes(docs: list[np.ndarray]) -> bytes:
    """The .idx GPT-NeoX's builder writes for one item per document, uint16 (docs/FORMATS.md, ".idx")."""
    sizes = np.array([d.size for d in docs], dtype=np.int32)
    pointers = np.concatenate([[0], np.cumsum(sizes[:-1].astype(np.int64) * 2)]).astype(np.int64)
    doc_idx = np.arange(len(docs) + 1, dtype=np.int64)
    head = b"MMIDIDX\x00\x00" + struct.pack("<Q", 1) + struct.pack("<B", 8)
    head += struct.pack("<Q", len(docs)) + struct.pack("<Q", len(docs) + 1)
    return head + sizes.tobytes() + pointers.tobytes() + doc_idx.tobytes()


def test_round_trip_in_order_empties_skipped(tmp_path, small_tok_path):
    a = write_jsonl(tmp_path / "00.jsonl.zst", pile_records(TEXTS[:4]))
    b = write_jsonl(tmp_path / "01.jsonl.gz", pile_records(TEXTS[4:], "Github"))
    res = run([a, b], tmp_path / "out", small_tok_path)
    tok = Tokenizer.from_file(str(small_tok_path))
    ds = IndexedDataset(tmp_path / "out")
    expected = [t for t in TEXTS if t]
    assert res.items == len(ds) == 6
    assert ds.dtype == np.uint16
    assert [tok.decode(ds.get(i).tolist(), skip_special_tokens=False) for i in range(len(ds))] == [
        unicodedata.normalize("NFC", t) for t in expected
    ]
    assert res.report["empty_skipped"] == 2
    assert [f["empty"] for f in res.report["inputs"]] == [1, 1]
    assert list(ds.doc_idx) == list(range(7))
    assert res.tokens == int(np.asarray(ds.sizes).sum())


def test_append_eod(tmp_path, small_tok_path):
    a = write_jsonl(tmp_path / "a.jsonl", pile_records(TEXTS))
    run([a], tmp_path / "out", small_tok_path, append_eod=True)
    tok = Tokenizer.from_file(str(small_tok_path))
    ds = IndexedDataset(tmp_path / "out")
    for i, t in enumerate(t for t in TEXTS if t):
        item = ds.get(i).tolist()
        assert item[-1] == 0
        assert item[:-1] == tok.encode(t).ids


def test_documents_table(tmp_path, small_tok_path):
    recs = pile_records(TEXTS)
    recs[3] = {"text": TEXTS[3]}  # no meta
    recs[4] = {"text": TEXTS[4], "meta": {"source": "x"}}  # meta without pile_set_name
    a = write_jsonl(tmp_path / "a.jsonl", recs)
    run([a], tmp_path / "out", small_tok_path, append_eod=True)
    ds = IndexedDataset(tmp_path / "out")
    table = pq.read_table(tmp_path / "out.documents.parquet")
    assert table.schema.equals(DOCUMENT_SCHEMA)
    rows = table.to_pylist()
    kept = [i for i, t in enumerate(TEXTS) if t]
    assert [r["doc_id"] for r in rows] == list(range(6))
    assert [r["source_line"] for r in rows] == [i + 1 for i in kept] == [1, 3, 4, 5, 6, 8]
    assert {r["source_file"] for r in rows} == {str(a)}
    assert [r["pile_set_name"] for r in rows] == ["Pile-CC", "Pile-CC", None, None, "Pile-CC", "Pile-CC"]
    assert rows[0]["meta"] == '{"pile_set_name":"Pile-CC","i":0}'
    assert rows[2]["meta"] is None and rows[3]["meta"] == '{"source":"x"}'
    assert [r["n_bytes"] for r in rows] == [len(TEXTS[i].encode("utf-8")) for i in kept]
    assert [r["n_tokens"] for r in rows] == [int(s) for s in ds.sizes]
    for i, r in enumerate(rows):
        item = np.asarray(ds.get(i))
        independent = int.from_bytes(hashlib.blake2b(item.astype("<u2").tobytes(), digest_size=8).digest(), "little")
        assert r["token_hash"] == independent == token_hash(item)
    assert token_hashes(np.asarray(ds.tokens), np.asarray(ds.sizes)).tolist() == [r["token_hash"] for r in rows]
    assert token_hash(np.asarray(ds.get(0)).astype(np.int64), dtype=np.uint16) == rows[0]["token_hash"]
    assert Path(f"{tmp_path / 'out'}.tokenizer.json").read_bytes() == small_tok_path.read_bytes()


def test_real_tokenizer_ids(tmp_path, real_tokenizer_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": "Hello, I am"}, {"text": ""}, {"text": "x <|endoftext|> y"}])
    run([a], tmp_path / "out", real_tokenizer_path, append_eod=True)
    ds = IndexedDataset(tmp_path / "out")
    assert ds.get(0).tolist() == [12092, 13, 309, 717, 0]
    assert len(ds) == 2 and ds.get(1).tolist()[-1] == 0 and 0 in ds.get(1).tolist()[:-1]


def test_batched_fast_encoding_equals_encode(real_tokenizer_path):
    tok = Tokenizer.from_file(str(real_tokenizer_path))
    texts = TEXTS + ["  many   spaces\t\ttabs\n\n\nnewlines", "x" * 5000, "ﬁ ligature Å Å"]
    assert [e.ids for e in tok.encode_batch_fast(texts)] == [tok.encode(t).ids for t in texts]


NOT_NFC = ["e\u0301 decomposed", "\u212b angstrom sign", "\uf900 CJK compatibility", "\u1100\u1161 jamo",
           "A\u030a  and  \u00c5", "q\u0307\u0323 reordered marks", "  e\u0301  <|endoftext|>\u0301  "]


@pytest.mark.parametrize("batch_docs", [1, 3, 4096])
def test_nfc_texts_skip_the_normalizer_with_the_same_ids(tmp_path, real_tokenizer_path, batch_docs):
    # NFC texts go to a twin without the NFC normalizer; batches all-NFC, none and mixed give encode()'s ids.
    tok = Tokenizer.from_file(str(real_tokenizer_path))
    assert pipeline._without_nfc(tok) is not None
    texts = [t for t in TEXTS if t] + NOT_NFC + ["plain ascii", "caf\u00e9 na\u00efve", "\u0301 leading mark"]
    texts += NOT_NFC[::-1]
    assert any(unicodedata.is_normalized("NFC", t) for t in texts) and not all(
        unicodedata.is_normalized("NFC", t) for t in texts)
    encode = pipeline._encode_batch(tok)
    assert [e.ids for e in encode(texts)] == [tok.encode(t).ids for t in texts]
    a = write_jsonl(tmp_path / "a.jsonl", pile_records(texts))
    cfg = IngestConfig([str(a)], str(tmp_path / "out"), str(real_tokenizer_path), batch_docs=batch_docs,
                       progress=False)
    ingest(cfg)
    ds = IndexedDataset(tmp_path / "out")
    assert [ds.get(i).tolist() for i in range(len(ds))] == [tok.encode(t).ids for t in texts]


def test_no_normalizer_twin_unless_the_normalizer_is_nfc_alone(small_tok_path):
    from tokenizers import normalizers

    tok = Tokenizer.from_file(str(small_tok_path))
    assert pipeline._without_nfc(tok) is not None  # the demo tokenizer normalizes with NFC
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    assert pipeline._without_nfc(tok) is None
    tok.normalizer = None
    assert pipeline._without_nfc(tok) is None


@pytest.mark.parametrize("batch_docs", [1, 2, 4096])
def test_equals_one_document_at_a_time_reference(tmp_path, small_tok_path, batch_docs):
    texts = TEXTS * 7 + ["word " * k for k in range(50)]
    a = write_jsonl(tmp_path / "a.jsonl.zst", pile_records(texts[:30]))
    b = write_jsonl(tmp_path / "b.jsonl", pile_records(texts[30:]))
    cfg = IngestConfig([str(a), str(b)], str(tmp_path / "out"), str(small_tok_path), append_eod=True,
                       progress=False, batch_docs=batch_docs)
    ingest(cfg)
    docs = reference_ingest([a, b], Tokenizer.from_file(str(small_tok_path)), append_eod=True)
    assert (tmp_path / "out.bin").read_bytes() == b"".join(d.tobytes() for d in docs)
    assert (tmp_path / "out.idx").read_bytes() == reference_idx_bytes(docs)


def test_problem_lines_counted_with_file_and_line(tmp_path, small_tok_path):
    recs = pile_records(["good %d" % i for i in range(12)])
    raw = {
        1: b"{not json",
        2: b'{"txt": "missing key"}',
        3: b'{"text": 42}',
        4: b'{"text": "bad \xff utf8"}',
        5: b"",
        6: b"[1, 2]",
        7: b'{"text": "lone \\ud800 surrogate"}',
        8: b'"a bare string is a document (lm_dataformat legacy form)"',
        9: b'{"text": ["two", "paragraphs"]}',
    }
    a = write_jsonl(tmp_path / "a.jsonl", recs, raw)
    res = run([a], tmp_path / "out", small_tok_path)
    probs = res.report["problems"]
    assert probs["counts"] == {
        "blank_line": 1, "invalid_unicode": 1, "invalid_utf8": 1, "malformed_json": 1, "missing_text_key": 1,
        "not_an_object": 1, "text_not_string": 1,
    }
    where = {(p["file"], p["line"], p["reason"]) for p in probs["lines"]}
    assert where == {
        (str(a), 2, "malformed_json"), (str(a), 3, "missing_text_key"), (str(a), 4, "text_not_string"),
        (str(a), 5, "invalid_utf8"), (str(a), 6, "blank_line"), (str(a), 7, "not_an_object"),
        (str(a), 8, "invalid_unicode"),
    }
    tok = Tokenizer.from_file(str(small_tok_path))
    ds = IndexedDataset(tmp_path / "out")
    texts = [tok.decode(ds.get(i).tolist()) for i in range(len(ds))]
    assert texts == ["good 0", "a bare string is a document (lm_dataformat legacy form)", "two\n\nparagraphs",
                     "good 10", "good 11"]
    on_disk = json.loads((tmp_path / "out.ingest_report.json").read_text())
    assert on_disk["problems"] == probs and on_disk["documents"] == 5


@pytest.mark.parametrize("kind", ["zst", "gz"])
def test_truncated_stream_keeps_complete_lines(tmp_path, small_tok_path, kind):
    rng = random.Random(0)  # incompressible enough that zstd emits many blocks before the cut
    words = ["alpha", "beta", "gamma", "delta", "fox", "dog", "the", "quick"]
    texts = [f"document {i} " + " ".join(rng.choice(words) + str(rng.randrange(999)) for _ in range(60))
             for i in range(1000)]
    full = write_jsonl(tmp_path / f"full.jsonl.{kind}", pile_records(texts))
    data = full.read_bytes()
    cut = tmp_path / f"cut.jsonl.{kind}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    good = write_jsonl(tmp_path / "after.jsonl", pile_records(["after the damage"]))
    res = run([cut, good], tmp_path / "out", small_tok_path)
    probs = res.report["problems"]
    assert probs["counts"] == {"truncated_stream": 1}
    (p,) = probs["lines"]
    n_complete = res.report["inputs"][0]["documents"]
    assert 0 < n_complete < 1000
    assert (p["file"], p["line"]) == (str(cut), n_complete + 1)
    tok = Tokenizer.from_file(str(small_tok_path))
    ds = IndexedDataset(tmp_path / "out")
    assert len(ds) == n_complete + 1
    assert [tok.decode(ds.get(i).tolist()) for i in range(n_complete)] == texts[:n_complete]
    assert tok.decode(ds.get(n_complete).tolist()) == "after the damage"


def test_strict_stops_and_writes_nothing(tmp_path, small_tok_path):
    a = write_jsonl(tmp_path / "a.jsonl", pile_records(["ok", "ok2", "ok3"]), {2: b"{oops"})
    with pytest.raises(StrictError, match=r"a\.jsonl:3: malformed_json"):
        run([a], tmp_path / "out", small_tok_path, strict=True)
    assert sorted(os.listdir(tmp_path)) == ["a.jsonl"]
    assert main(["ingest", str(a), "--tokenizer", str(small_tok_path), "--out", str(tmp_path / "o"), "--strict",
                 "--no-progress"]) == 2
    assert sorted(os.listdir(tmp_path)) == ["a.jsonl"]


def test_rerun_gives_identical_bytes(tmp_path, small_tok_path):
    a = write_jsonl(tmp_path / "a.jsonl.zst", pile_records(TEXTS * 30), {5: b"{bad"})
    names = [".bin", ".idx", ".documents.parquet", ".tokenizer.json", ".ingest_report.json"]
    run([a], tmp_path / "one", small_tok_path, append_eod=True)
    first = {n: Path(f"{tmp_path / 'one'}{n}").read_bytes() for n in names}
    run([a], tmp_path / "one", small_tok_path, append_eod=True)  # overwrite in place
    assert {n: Path(f"{tmp_path / 'one'}{n}").read_bytes() for n in names} == first
    cfg = IngestConfig([str(a)], str(tmp_path / "two"), str(small_tok_path), append_eod=True, progress=False,
                       batch_docs=7, batch_bytes=100)  # other batch boundaries, same bytes
    ingest(cfg)
    for n in [".bin", ".idx", ".documents.parquet", ".tokenizer.json"]:
        assert Path(f"{tmp_path / 'two'}{n}").read_bytes() == first[n], n


def test_interrupted_run_leaves_no_store(tmp_path, small_tok_path, monkeypatch):
    a = write_jsonl(tmp_path / "a.jsonl", pile_records([f"text {i}" for i in range(50)]))
    calls = {"n": 0}
    real = pipeline.token_hashes

    def failing(tokens, sizes):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash mid-stream")
        return real(tokens, sizes)

    monkeypatch.setattr(pipeline, "token_hashes", failing)
    cfg = IngestConfig([str(a)], str(tmp_path / "out"), str(small_tok_path), progress=False, batch_docs=5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ingest(cfg)
    assert sorted(os.listdir(tmp_path)) == ["a.jsonl"]  # no store, no temp files
    with pytest.raises(FormatError):
        IndexedDataset(tmp_path / "out")


def test_failure_after_the_documents_table_leaves_no_temp_bin(tmp_path, small_tok_path, monkeypatch):
    """The tokenizer copy fails after the documents table is in place: the store's temp .bin is removed too
    (the writer's exit sees the error), and no .bin/.idx pair appears."""
    a = write_jsonl(tmp_path / "a.jsonl", pile_records([f"text {i}" for i in range(20)]))

    def failing(path, data):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(pipeline, "write_bytes", failing)
    with pytest.raises(OSError, match="disk full"):
        run([a], tmp_path / "out", small_tok_path)
    left = sorted(os.listdir(tmp_path))
    assert not [n for n in left if ".tmp-" in n], left
    assert "out.bin" not in left and "out.idx" not in left, left


def test_interrupted_rerun_keeps_the_previous_store(tmp_path, small_tok_path, monkeypatch):
    a = write_jsonl(tmp_path / "a.jsonl", pile_records([f"text {i}" for i in range(50)]))
    run([a], tmp_path / "out", small_tok_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def failing(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_tokenize_stage", failing)
    with pytest.raises(KeyboardInterrupt):
        run([a], tmp_path / "out", small_tok_path, append_eod=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert len(IndexedDataset(tmp_path / "out")) == 50


def test_cli_ingest_json(tmp_path, small_tok_path, capsys):
    a = write_jsonl(tmp_path / "a.jsonl", pile_records(TEXTS), {0: b"{bad"})
    rc = main(["ingest", str(a), "--tokenizer", str(small_tok_path), "--out", str(tmp_path / "o"), "--append-eod",
               "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["documents"] == 5 and out["empty_skipped"] == 2 and out["problems"] == {"malformed_json": 1}
    assert out["dtype"] == "uint16" and out["report"] == f"{tmp_path / 'o'}.ingest_report.json"


def test_cli_text_key_and_missing_input(tmp_path, small_tok_path, capsys):
    a = write_jsonl(tmp_path / "a.jsonl", [{"content": "alpha"}, {"content": "beta"}])
    assert main(["ingest", str(a), "--tokenizer", str(small_tok_path), "--out", str(tmp_path / "o"),
                 "--text-key", "content", "--no-progress"]) == 0
    assert len(IndexedDataset(tmp_path / "o")) == 2
    assert main(["ingest", str(tmp_path / "nope.jsonl"), "--tokenizer", str(small_tok_path), "--out",
                 str(tmp_path / "p")]) == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err


def test_large_vocab_writes_int32(tmp_path):
    # A vocabulary of 65,500+ entries: GPT-NeoX's best_fitting_dtype gives int32 (MMIDIDX has no uint32 code).
    from tokenizers import models

    vocab = {f"w{i}": i for i in range(70000)}
    vocab["[UNK]"] = 70000
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    path = tmp_path / "wl.json"
    tok.save(str(path))
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": "w1 w69999 w65535"}])
    run([a], tmp_path / "o", path)
    ds = IndexedDataset(tmp_path / "o")
    assert ds.dtype == np.int32 and ds.get(0).tolist() == [1, 69999, 65535]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(max_size=40), min_size=1, max_size=12))
def test_round_trip_property(tmp_path_factory, small_tok_path, texts):
    d = tmp_path_factory.mktemp("prop")
    a = write_jsonl(d / "a.jsonl.zst", [{"text": t} for t in texts])
    res = run([a], d / "o", small_tok_path, allow_empty=True)
    tok = Tokenizer.from_file(str(small_tok_path))
    ds = IndexedDataset(d / "o")
    kept = [t for t in texts if t]
    assert res.items == len(kept) and res.report["empty_skipped"] == len(texts) - len(kept)
    assert [tok.decode(ds.get(i).tolist(), skip_special_tokens=False) for i in range(len(ds))] == [
        unicodedata.normalize("NFC", t) for t in kept
    ]


@pytest.mark.parametrize("kind", ["zst", "gz"])
def test_multi_frame_streams_read_whole(tmp_path, small_tok_path, kind):
    # Concatenated zstd frames / gzip members are one stream (lm_dataformat's Archive writes a frame per commit).
    parts = [b'{"text": "first frame"}\n', b'{"text": "second frame"}\n{"text": "third"}\n']
    comp = (lambda b: zstandard.ZstdCompressor().compress(b)) if kind == "zst" else (lambda b: gzip.compress(b, mtime=0))
    a = tmp_path / f"a.jsonl.{kind}"
    a.write_bytes(b"".join(comp(p) for p in parts))
    res = run([a], tmp_path / "o", small_tok_path)
    tok = Tokenizer.from_file(str(small_tok_path))
    ds = IndexedDataset(tmp_path / "o")
    assert [tok.decode(ds.get(i).tolist()) for i in range(len(ds))] == ["first frame", "second frame", "third"]
    assert res.report["problems"]["total"] == 0
    assert [r["source_line"] for r in pq.read_table(tmp_path / "o.documents.parquet").to_pylist()] == [1, 2, 3]


def test_corrupt_zstd_tail_counted(tmp_path, small_tok_path):
    a = tmp_path / "a.jsonl.zst"
    a.write_bytes(zstandard.ZstdCompressor().compress(b'{"text": "one"}\n{"text": "two"}\n') + b"this is not zstd at all")
    res = run([a], tmp_path / "o", small_tok_path)
    assert res.items == 2
    (p,) = res.report["problems"]["lines"]
    assert (p["file"], p["line"], p["reason"]) == (str(a), 3, "corrupt_stream")
    with pytest.raises(StrictError, match=r"a\.jsonl\.zst:3: corrupt_stream"):
        run([a], tmp_path / "s", small_tok_path, strict=True)


def test_tokenizer_copy_is_the_file_given(tmp_path, small_tok_path):
    # A tokenizer.json as people keep them (indented, key order of their own): the copy beside the store
    # and the report's sha256 are that file, not tokenizers' re-serialisation of it.
    ob = json.loads(small_tok_path.read_text())
    given = tmp_path / "tokenizer.json"
    given.write_bytes((json.dumps(ob, indent=3, sort_keys=True, ensure_ascii=False) + "\n").encode())
    assert given.read_bytes() != Tokenizer.from_file(str(given)).to_str().encode()
    a = write_jsonl(tmp_path / "a.jsonl", pile_records(["one", "two"]))
    res = run([a], tmp_path / "out", given)
    assert Path(f"{tmp_path / 'out'}.tokenizer.json").read_bytes() == given.read_bytes()
    assert res.report["tokenizer_sha256"] == hashlib.sha256(given.read_bytes()).hexdigest()
    assert res.report["tokenizer"] == str(given)
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def _text_mode_lines(data: bytes) -> list[str]:
    """How GPT-NeoX's jsonlines sees a file: text mode, utf-8-sig, universal newlines, one leading
    \\ufeff or \\x1e dropped per line (Python's own reader is the reference here)."""
    out = []
    for line in io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline=None):
        line = line[:-1] if line.endswith("\n") else line
        out.append(line[1:] if line.startswith(("\ufeff", "\x1e")) else line)
    return out


@pytest.mark.parametrize("kind", ["", ".zst", ".gz"])
def test_bom_and_cr_line_endings_read_as_text_mode(tmp_path, small_tok_path, kind):
    recs = [json.dumps({"text": f"doc {i}", "meta": {"pile_set_name": "S"}}).encode() for i in range(7)]
    # a BOM opening the file, CR-only, CRLF and LF endings, a BOM and an RFC 7464 separator opening lines
    data = (b"\xef\xbb\xbf" + recs[0] + b"\r" + recs[1] + b"\r\n" + recs[2] + b"\n\xef\xbb\xbf" + recs[3] + b"\r"
            + b"\x1e" + recs[4] + b"\r\r\n" + recs[5] + b"\n" + recs[6] + b"\r")
    raw = {"": data, ".zst": zstandard.ZstdCompressor().compress(data), ".gz": gzip.compress(data, mtime=0)}[kind]
    a = tmp_path / f"a.jsonl{kind}"
    a.write_bytes(raw)
    res = run([a], tmp_path / "out", small_tok_path)
    want = [(n, json.loads(t)["text"]) for n, t in enumerate(_text_mode_lines(data), start=1) if t.strip()]
    assert [t for _, t in want] == [f"doc {i}" for i in range(7)]
    tok = Tokenizer.from_file(str(small_tok_path))
    ds = IndexedDataset(tmp_path / "out")
    assert [tok.decode(ds.get(i).tolist()) for i in range(len(ds))] == [t for _, t in want]
    rows = pq.read_table(tmp_path / "out.documents.parquet").to_pylist()
    assert [r["source_line"] for r in rows] == [n for n, _ in want] == [1, 2, 3, 4, 5, 7, 8]
    assert res.report["problems"]["counts"] == {"blank_line": 1}  # the empty line between \r and \r\n


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="a{}\r\n\ufeff\x1eé", max_size=40), chunk=st.integers(1, 9))
def test_line_splitting_equals_python_text_mode(text, chunk, tmp_path_factory):
    """Any mix of \\r, \\r\\n, \\n and BOMs, cut into chunks anywhere: the lines of Python's text mode."""
    data = text.encode("utf-8")
    d = tmp_path_factory.mktemp("lines")
    p = d / "a.jsonl"
    p.write_bytes(data)
    got = [line for _, block in LineReader(p, chunk_bytes=chunk).blocks() for line in block]
    skippable = ("\ufeff".encode(), b"\x1e")
    got = [g[3:] if g.startswith(skippable[0]) else g[1:] if g.startswith(skippable[1]) else g for g in got]
    assert [g.decode("utf-8") for g in got] == _text_mode_lines(data)


def test_folder_input_sorted_and_listed(tmp_path, small_tok_path, capsys):
    d = tmp_path / "raw"
    d.mkdir()
    write_jsonl(d / "01.jsonl.zst", pile_records(["from one"]))
    write_jsonl(d / "00.jsonl", pile_records(["from zero"]))
    write_jsonl(d / "02.jsonl.gz", pile_records(["from two"]))
    (d / "README.txt").write_text("not data")
    (d / "sub").mkdir()
    extra = write_jsonl(tmp_path / "after.jsonl", pile_records(["after the folder"]))
    res = run([d, extra], tmp_path / "out", small_tok_path)
    tok = Tokenizer.from_file(str(small_tok_path))
    ds = IndexedDataset(tmp_path / "out")
    assert [tok.decode(ds.get(i).tolist()) for i in range(len(ds))] == ["from zero", "from one", "from two",
                                                                     "after the folder"]
    files = [str(d / "00.jsonl"), str(d / "01.jsonl.zst"), str(d / "02.jsonl.gz"), str(extra)]
    assert [f["file"] for f in res.report["inputs"]] == files
    assert res.report["folders"] == [{"folder": str(d), "files": ["00.jsonl", "01.jsonl.zst", "02.jsonl.gz"],
                                      "not_read": ["README.txt", "sub"]}]
    assert pq.read_table(tmp_path / "out.documents.parquet").column("source_file").to_pylist() == files
    assert main(["ingest", str(d), "--tokenizer", str(small_tok_path), "--out", str(tmp_path / "cli"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files_read"] == files[:3]

    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "x.csv").write_bytes(b"a,b")
    assert main(["ingest", str(bare), "--tokenizer", str(small_tok_path), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "bare: a folder with no .jsonl, .jsonl.zst, .jsonl.gz, .parquet files (it holds x.csv)" in err
    assert not list(tmp_path.glob("b.*"))


def test_zero_documents_refused_with_the_keys_found(tmp_path, small_tok_path, capsys):
    run([write_jsonl(tmp_path / "good.jsonl", pile_records(["a good store"]))], tmp_path / "out", small_tok_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    # the text is under "txt"; "id" holds strings too, shorter ones: the hint names the key that holds the text
    wrong = write_jsonl(tmp_path / "wrong.jsonl", [{"id": f"doc-{i}", "txt": f"the text of document {i}"}
                                                   for i in range(5)])
    before[wrong.name] = wrong.read_bytes()
    args = ["ingest", str(wrong), "--tokenizer", str(small_tok_path), "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "0 documents from 1 input file (5 lines: 5 missing_text_key)" in err
    assert "have no 'text' key but ['id', 'txt']: did you mean --text-key txt?" in err and "--allow-empty" in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # the good store is untouched

    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert main(["ingest", str(empty), "--tokenizer", str(small_tok_path), "--out", str(tmp_path / "e")]) == 2
    assert "0 documents from 1 input file (the input holds no lines)" in capsys.readouterr().err
    assert not list(tmp_path.glob("e.*"))
    assert main(["ingest", str(empty), "--tokenizer", str(small_tok_path), "--out", str(tmp_path / "e"),
                 "--allow-empty", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == 0 and len(IndexedDataset(tmp_path / "e")) == 0
