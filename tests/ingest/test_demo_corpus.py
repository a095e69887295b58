"""The embedded demo corpus (stdlib sources + docstrings) and its trained GPT-NeoX-style tokenizer."""

from __future__ import annotations

import json
import unicodedata

import pyarrow.parquet as pq
import pytest
import zstandard
from tokenizers import Tokenizer

from ingest.demo_corpus import build_demo_corpus, demo_documents, stdlib_sources, train_demo_tokenizer
from ingest.pipeline import IngestConfig, ingest
from pile_index.format import IndexedDataset


def read_records(paths):
    out = []
    for p in paths:
        data = zstandard.ZstdDecompressor().decompressobj().decompress(p.read_bytes())
        out.extend(json.loads(line) for line in data.decode("utf-8").splitlines())
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    paths = build_demo_corpus(d, max_docs=120, max_bytes=300_000)
    tok = train_demo_tokenizer(paths, d / "tok.json", vocab_size=600)
    return d, paths, tok


def test_corpus_is_pile_style_and_deterministic(demo, tmp_path):
    d, paths, _ = demo
    assert [p.name for p in paths] == ["00.jsonl.zst", "01.jsonl.zst"]
    again = build_demo_corpus(tmp_path, max_docs=120, max_bytes=300_000)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]
    recs = read_records(paths)
    assert len(recs) == 120
    assert {r["meta"]["pile_set_name"] for r in recs} == {"Github", "StdlibDocs"}
    assert all(set(r) == {"text", "meta"} and isinstance(r["text"], str) for r in recs)
    assert sum(1 for r in recs if r["text"] == "") == 3  # empty __init__.py files show the skip rule
    assert build_demo_corpus(tmp_path / "s1", max_docs=120, max_bytes=300_000, seed=1)[0].read_bytes() != paths[0].read_bytes()


def test_sources_are_real_stdlib_text():
    files = stdlib_sources()
    rel = {p.name for p in files}
    assert {"json", "ast"} <= {p.parent.name for p in files} | {p.stem for p in files}
    assert "site-packages" not in {part for p in files for part in p.parts}
    docs = demo_documents(max_docs=50, max_bytes=100_000)
    gh = [r for r in docs if r["meta"]["pile_set_name"] == "Github" and r["text"]]
    assert gh and all(r["meta"]["path"].startswith("Lib/") and r["meta"]["path"].endswith(".py") for r in gh)
    assert "__init__.py" in rel


def test_tokenizer_is_gpt_neox_style_and_deterministic(demo, tmp_path):
    d, paths, tok = demo
    assert tok.token_to_id("<|endoftext|>") == 0 and tok.token_to_id("<|padding|>") == 1
    assert tok.get_vocab_size() == 600
    cfg = json.loads(tok.to_str())
    assert cfg["normalizer"]["type"] == "NFC"
    assert cfg["pre_tokenizer"] == {**cfg["pre_tokenizer"], "type": "ByteLevel", "add_prefix_space": False}
    assert cfg["decoder"]["type"] == "ByteLevel"
    again = train_demo_tokenizer(paths, tmp_path / "t2.json", vocab_size=600)
    assert again.to_str() == tok.to_str()
    assert Tokenizer.from_file(str(d / "tok.json")).to_str() == tok.to_str()
    s = "déjà vu: def f(x):\n\treturn x  # 😀"
    assert tok.decode(tok.encode(s).ids) == unicodedata.normalize("NFC", s)


def test_demo_ingest_end_to_end(demo, tmp_path):
    d, paths, tok = demo
    res = ingest(IngestConfig([str(p) for p in paths], str(tmp_path / "demo"), str(d / "tok.json"),
                              append_eod=True, progress=False))
    recs = read_records(paths)
    kept = [r for r in recs if r["text"]]
    assert res.items == len(kept) == 117 and res.report["empty_skipped"] == 3
    assert res.report["problems"]["total"] == 0
    ds = IndexedDataset(tmp_path / "demo")
    rows = pq.read_table(f"{tmp_path / 'demo'}.documents.parquet").to_pylist()
    assert [r["pile_set_name"] for r in rows] == [r["meta"]["pile_set_name"] for r in kept]
    for i in (0, len(kept) // 2, len(kept) - 1):
        assert tok.decode(ds.get(i).tolist()[:-1]) == unicodedata.normalize("NFC", kept[i]["text"])
