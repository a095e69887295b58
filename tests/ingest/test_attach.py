"""``attach`` on a store whose input lines were shuffled and partly removed: matches, duplicates, report."""

from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import pyarrow.parquet as pq
import pytest
import zstandard
from tokenizers import Tokenizer, models, pre_tokenizers

from cli.main import main as cli_main
from ingest.attach import AttachConfig, AttachRefusedError, attach
from ingest.pipeline import IngestConfig, ingest
from pile_index.format import TokenStore

WORDS = ["<|endoftext|>", "<|padding|>"] + [f"w{i}" for i in range(30)] + ["[UNK]"]


@pytest.fixture()
def tok_path(tmp_path):
    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    p = tmp_path / "tok.json"
    tok.save(str(p))
    return p


def write_jsonl_zst(path, records):
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(zstandard.ZstdCompressor().compress(data))


def corpus(rng):
    recs = []
    for i in range(60):
        if i % 7 == 3:
            text = "w1 w2 w3"  # identical documents: several items
        elif i % 11 == 5:
            text = ""  # empty: skipped by ingest and by attach
        else:
            text = " ".join(f"w{rng.randrange(30)}" for _ in range(rng.randrange(1, 8)))
        recs.append({"text": text, "meta": {"pile_set_name": f"set{i % 4}", "i": i}})
    return recs


def expected_mapping(store_texts, lines):
    """The rule: k-th identical line (input order) -> k-th identical item (store order)."""
    by_text: dict[str, list[int]] = {}
    for d, t in enumerate(store_texts):
        by_text.setdefault(t, []).append(d)
    used: dict[str, int] = {}
    out = {}
    for ln, rec in enumerate(lines, start=1):
        t = rec["text"]
        if not t:
            continue
        k = used.get(t, 0)
        used[t] = k + 1
        if k < len(by_text.get(t, [])):
            out[by_text[t][k]] = ln
    return out


@pytest.mark.parametrize("append_eod", [False, True])
def test_attach_shuffled_and_partial(tmp_path, tok_path, append_eod):
    rng = random.Random(7)
    recs = corpus(rng)
    src = tmp_path / "orig.jsonl.zst"
    write_jsonl_zst(src, recs)
    prefix = tmp_path / "store"
    ingest(IngestConfig(inputs=[str(src)], out=str(prefix), tokenizer=str(tok_path), append_eod=append_eod, progress=False))
    store = TokenStore(prefix)
    store_texts = [r["text"] for r in recs if r["text"]]
    assert len(store) == len(store_texts)
    store.documents_path().unlink()

    kept = [r for i, r in enumerate(recs) if i % 5 != 0]  # drop a fifth of the lines
    rng.shuffle(kept)
    kept.append({"text": "w29 w29 w29 w29 w29 w29 w29 w29 w29", "meta": {"pile_set_name": "stranger"}})  # in no item
    half = len(kept) // 2
    a, b = tmp_path / "a.jsonl.zst", tmp_path / "b.jsonl"
    write_jsonl_zst(a, kept[:half])
    b.write_text("".join(json.dumps(r) + "\n" for r in kept[half:]) + "{not json\n")

    report = attach(AttachConfig(prefixes=[str(prefix)], inputs=[str(a), str(b)], tokenizer=str(tok_path),
                                 append_eod=append_eod, progress=False))
    want = expected_mapping(store_texts, kept)
    lines_nonempty = sum(1 for r in kept if r["text"])
    assert report["matched"] == len(want)
    assert report["unmatched_items"] == len(store) - len(want)
    assert report["unmatched_lines"] == lines_nonempty - len(want)
    assert report["problems"]["counts"] == {"malformed_json": 1}
    assert report["hash_collisions_rejected"] == 0
    dup_items = sum(1 for t in store_texts if t == "w1 w2 w3")
    assert report["duplicates"]["item_groups"] >= 1 and report["duplicates"]["items_in_groups"] >= dup_items

    tbl = pq.read_table(store.documents_path()).to_pylist()
    assert [r["doc_id"] for r in tbl] == list(range(len(store)))
    for r in tbl:
        d = r["doc_id"]
        assert r["n_tokens"] == int(store.sizes[d])
        if d in want:
            ln = want[d]
            src_file, src_line = (str(a), ln) if ln <= half else (str(b), ln - half)
            assert (r["source_file"], r["source_line"]) == (src_file, src_line)
            assert r["pile_set_name"] == kept[ln - 1]["meta"]["pile_set_name"]
            assert json.loads(r["meta"]) == kept[ln - 1]["meta"]
        else:
            assert r["source_file"] is None and r["pile_set_name"] is None


def test_attach_cli(tmp_path, tok_path, capsys):
    recs = [{"text": "w1 w2", "meta": {"pile_set_name": "A"}}, {"text": "w3", "meta": {"pile_set_name": "B"}}]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))
    prefix = tmp_path / "s"
    ingest(IngestConfig(inputs=[str(src)], out=str(prefix), tokenizer=str(tok_path), progress=False))
    (tmp_path / "s.documents.parquet").unlink()
    rc = cli_main(["attach", str(prefix), "--from", str(src), "--tokenizer", str(tok_path), "--json", "--no-progress"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["matched"], out["unmatched_items"], out["unmatched_lines"]) == (2, 0, 0)
    names = pq.read_table(tmp_path / "s.documents.parquet").column("pile_set_name").to_pylist()
    assert names == ["A", "B"]


def test_hash_collision_is_rejected(tmp_path, tok_path, monkeypatch):
    """A forged hash match with different tokens is caught by the token-for-token check."""
    import ingest.attach as attach_mod

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"text": "w1 w2"}) + "\n")
    prefix = tmp_path / "s"
    ingest(IngestConfig(inputs=[str(src)], out=str(prefix), tokenizer=str(tok_path), progress=False))
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"text": "w1 w3"}) + "\n")
    monkeypatch.setattr(attach_mod, "token_hashes", lambda tokens, sizes: np.zeros(len(sizes), np.uint64))
    with pytest.raises(AttachRefusedError) as e:  # 0 of 1 matched: below min_match_fraction, nothing written
        attach(AttachConfig(prefixes=[str(prefix)], inputs=[str(other)], tokenizer=str(tok_path), progress=False))
    assert e.value.report["hash_collisions_rejected"] == 1
    assert e.value.report["matched"] == 0


def _store_and_lines(tmp_path, tok_path, append_eod, n=40):
    rng = random.Random(3)
    recs = [{"text": " ".join(f"w{rng.randrange(30)}" for _ in range(rng.randrange(1, 8))),
             "meta": {"pile_set_name": f"set{i % 3}"}} for i in range(n)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in recs))
    prefix = tmp_path / "s"
    ingest(IngestConfig(inputs=[str(src)], out=str(prefix), tokenizer=str(tok_path), append_eod=append_eod,
                        progress=False))
    return prefix, src, recs


@pytest.mark.parametrize("store_eod", [True, False])
def test_wrong_append_eod_is_refused_and_the_table_kept(tmp_path, tok_path, capsys, store_eod):
    prefix, src, _ = _store_and_lines(tmp_path, tok_path, append_eod=store_eod)
    table = tmp_path / "s.documents.parquet"
    good = table.read_bytes()
    args = ["attach", str(prefix), "--from", str(src), "--tokenizer", str(tok_path), "--no-progress"]
    if not store_eod:
        args.append("--append-eod")
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "0 of 40 items matched" in err and "below min_match_fraction 0.5" in err
    assert f"{table} is kept as it was" in err
    if store_eod:
        assert "40 of the store's 40 items end in token 0 (<|endoftext|>)" in err and "pass --append-eod" in err
    else:
        assert "only 0 of the store's 40 items end in it: drop --append-eod" in err
    assert table.read_bytes() == good and not (tmp_path / "s.attach_report.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left

    table.unlink()  # without a table: still refused, nothing written
    with pytest.raises(AttachRefusedError, match="no table was written"):
        attach(AttachConfig(prefixes=[str(prefix)], inputs=[str(src)], tokenizer=str(tok_path),
                            append_eod=not store_eod, progress=False))
    assert not table.exists()
    fixed = attach(AttachConfig(prefixes=[str(prefix)], inputs=[str(src)], tokenizer=str(tok_path),
                                append_eod=store_eod, progress=False))
    assert fixed["matched"] == 40 and fixed["match_fraction"] == 1.0 and table.read_bytes() != b""


def test_a_table_that_matched_more_is_never_replaced(tmp_path, tok_path):
    prefix, src, recs = _store_and_lines(tmp_path, tok_path, append_eod=False)
    table = tmp_path / "s.documents.parquet"
    good = table.read_bytes()  # ingest's table: every item has a source
    part = tmp_path / "part.jsonl"
    part.write_text("".join(json.dumps(r) + "\n" for r in recs[:30]))  # 30 of the 40 lines: 100% of the lines
    with pytest.raises(AttachRefusedError, match=r"this run matched (\d+) of 40 items but .* gives a source to 40"):
        attach(AttachConfig(prefixes=[str(prefix)], inputs=[str(part)], tokenizer=str(tok_path), progress=False))
    assert table.read_bytes() == good
    full = attach(AttachConfig(prefixes=[str(prefix)], inputs=[str(src)], tokenizer=str(tok_path), progress=False))
    assert full["matched"] == 40  # as many as the table had: replaced (a rerun)
    table.unlink()
    low = attach(AttachConfig(prefixes=[str(prefix)], inputs=[str(part)], tokenizer=str(tok_path), progress=False))
    assert low["matched"] < 40 and low["match_fraction"] >= 0.5  # no table there: the partial one is written
    assert pq.read_table(table).num_rows == 40


def test_attach_from_a_folder(tmp_path, tok_path):
    prefix, src, recs = _store_and_lines(tmp_path, tok_path, append_eod=False)
    table = tmp_path / "s.documents.parquet"
    table.unlink()
    d = tmp_path / "raw"
    d.mkdir()
    (d / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs[20:]))
    write_jsonl_zst(d / "a.jsonl.zst", recs[:20])
    report = attach(AttachConfig(prefixes=[str(prefix)], inputs=[str(d)], tokenizer=str(tok_path), progress=False))
    assert report["matched"] == 40
    assert [f["file"] for f in report["inputs"]] == [str(d / "a.jsonl.zst"), str(d / "b.jsonl")]
    assert report["folders"] == [{"folder": str(d), "files": ["a.jsonl.zst", "b.jsonl"], "not_read": []}]
    assert report["tokenizer_sha256"] == hashlib.sha256(tok_path.read_bytes()).hexdigest()
