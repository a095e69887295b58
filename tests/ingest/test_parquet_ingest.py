"""Parquet in: `ingest` and `attach` read `.parquet` files (and folders of them) exactly as the same texts in jsonl."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import pre_tokenizers, trainers

from cli.main import main
from ingest.attach import AttachConfig, attach
from ingest.demo_corpus import SPECIAL_TOKENS, new_demo_tokenizer
from ingest.pipeline import EmptyIngestError, IngestConfig, ingest
from ingest.readers import ParquetReader, ProblemLog, StrictError
from pile_index.errors import ConfigError

TEXTS = ["Hello, I am a document.", "", "Ünïcödé: naïve café — 日本語 😀", "def f(x):\n    return x + 1\n",
         "e\u0301 decomposed accent", "   <|endoftext|> inside", "", "last one", "Hello, I am a document."]
META = [{"pile_set_name": ["Pile-CC", "Github", "ArXiv"][i % 3], "i": i, "tags": ["a", "ü"]}
        for i in range(len(TEXTS))]


@pytest.fixture(scope="module")
def tok_path(tmp_path_factory) -> Path:
    tok = new_demo_tokenizer()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([t for t in TEXTS if t] * 10, trainer=trainer)
    path = tmp_path_factory.mktemp("tok") / "tok.json"
    tok.save(str(path))
    return path


def write_jsonl(path: Path, texts: list, metas: list | None) -> Path:
    recs = [{"text": t} if metas is None else {"text": t, "meta": m} for t, m in zip(texts, metas or texts)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")
    return path


def write_parquet(path: Path, texts: list, metas: list | None = None, meta_as: str = "struct",
                  row_group_size: int = 3, text_col: str = "text") -> Path:
    cols = {text_col: pa.array(texts, pa.string())}
    if metas is not None:
        cols["meta"] = pa.array(metas) if meta_as == "struct" else pa.array([json.dumps(m) for m in metas])
    pq.write_table(pa.table(cols), path, row_group_size=row_group_size)
    return path


def run(inputs, out, tok, **kw):
    return ingest(IngestConfig([str(p) for p in inputs], str(out), str(tok), progress=False, **kw))


def docs_table(prefix: Path) -> pa.Table:
    return pq.read_table(f"{prefix}.documents.parquet")


def same_but_source_file(a: pa.Table, b: pa.Table) -> None:
    assert a.drop_columns(["source_file"]).equals(b.drop_columns(["source_file"]))


@pytest.mark.parametrize("meta_as", ["struct", "json", "none"])
def test_parquet_ingest_is_byte_identical_to_jsonl(tmp_path, tok_path, meta_as):
    metas = None if meta_as == "none" else META
    j = write_jsonl(tmp_path / "in.jsonl", TEXTS, metas)
    p = write_parquet(tmp_path / "in.parquet", TEXTS, metas, meta_as)
    rj = run([j], tmp_path / "j", tok_path, append_eod=True)
    rp = run([p], tmp_path / "p", tok_path, append_eod=True)
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"p{ext}").read_bytes() == (tmp_path / f"j{ext}").read_bytes()
    tj, tp = docs_table(tmp_path / "j"), docs_table(tmp_path / "p")
    same_but_source_file(tj, tp)  # row k of the file is line k of the jsonl: source_line agrees too
    assert tp.column("source_file").to_pylist() == [str(p)] * 7
    assert tp.column("source_line").to_pylist() == [1, 3, 4, 5, 6, 8, 9]  # 1-based rows; rows 2 and 7 are empty
    if metas is not None:
        assert tp.column("pile_set_name").to_pylist()[:3] == ["Pile-CC", "ArXiv", "Pile-CC"]
        assert json.loads(tp.column("meta")[0].as_py()) == META[0]
    else:
        assert tp.column("meta").null_count == 7
    assert rp.report["empty_skipped"] == rj.report["empty_skipped"] == 2
    assert rp.report["inputs"][0]["lines"] == len(TEXTS)
    assert rp.items == rj.items == 7 and rp.tokens == rj.tokens


def test_a_folder_of_parquet_files_is_read_sorted(tmp_path, tok_path, capsys):
    d = tmp_path / "data"
    d.mkdir()
    write_parquet(d / "train-00001-of-00002.parquet", ["from one", "more from one"])
    write_parquet(d / "train-00000-of-00002.parquet", ["from zero"])
    (d / "README.md").write_text("not data")
    res = run([d], tmp_path / "out", tok_path)
    files = [str(d / "train-00000-of-00002.parquet"), str(d / "train-00001-of-00002.parquet")]
    assert [f["file"] for f in res.report["inputs"]] == files
    assert res.report["folders"] == [{"folder": str(d), "files": [Path(f).name for f in files],
                                      "not_read": ["README.md"]}]
    t = docs_table(tmp_path / "out")
    assert t.column("source_file").to_pylist() == [files[0], files[1], files[1]]
    assert t.column("source_line").to_pylist() == [1, 1, 2]
    j = write_jsonl(tmp_path / "same.jsonl", ["from zero", "from one", "more from one"], None)
    run([j], tmp_path / "j", tok_path)
    assert (tmp_path / "out.bin").read_bytes() == (tmp_path / "j.bin").read_bytes()
    assert (tmp_path / "out.idx").read_bytes() == (tmp_path / "j.idx").read_bytes()


def test_missing_text_column_is_one_error_naming_the_columns(tmp_path, tok_path, capsys):
    p = write_parquet(tmp_path / "in.parquet", ["a", "b"], META[:2], text_col="content")
    assert main(["ingest", str(p), "--tokenizer", str(tok_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"input {p}: no column 'text'; the columns are content (string), meta (struct<" in err
    assert "pass --text-key with the column that holds the text" in err
    assert "Traceback" not in err and not list(tmp_path.glob("o.*"))
    assert main(["ingest", str(p), "--tokenizer", str(tok_path), "--out", str(tmp_path / "o"),
                 "--text-key", "content", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == 2


def test_not_a_parquet_file_is_a_format_error(tmp_path, tok_path, capsys):
    p = tmp_path / "bad.parquet"
    p.write_bytes(b"PAR1 not really")
    assert main(["ingest", str(p), "--tokenizer", str(tok_path), "--out", str(tmp_path / "o")]) == 2
    assert f"input {p}: not a readable Parquet file" in capsys.readouterr().err
    assert not list(tmp_path.glob("o.*"))


def test_null_and_non_string_text_are_counted_with_file_row(tmp_path, tok_path):
    p = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": pa.array(["one", None, "three", None]), "n": pa.array([1, 2, 3, 4])}), p)
    res = run([p], tmp_path / "o", tok_path)
    assert res.items == 2
    probs = res.report["problems"]
    assert probs["counts"] == {"text_not_string": 2}
    assert [(x["file"], x["line"], x["detail"]) for x in probs["lines"]] == [
        (str(p), 2, "'text' is null, expected a string"), (str(p), 4, "'text' is null, expected a string")]
    assert docs_table(tmp_path / "o").column("source_line").to_pylist() == [1, 3]

    with pytest.raises(EmptyIngestError, match="0 documents") as e:  # every value of an int column is counted
        run([p], tmp_path / "n", tok_path, text_key="n")
    assert "4 text_not_string" in str(e.value)
    with pytest.raises(StrictError, match=rf"{p}:2: text_not_string: 'text' is null"):
        run([p], tmp_path / "s", tok_path, strict=True)


def _invalid_utf8_rows() -> pa.Table:
    offsets = pa.py_buffer(pa.array([0, 4, 6, 8], pa.int32()).buffers()[1])
    texts = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(b"fine\xff\xfeok")])  # row 2: not UTF-8
    return pa.table({"text": texts, "meta": ['{"pile_set_name": "Enron Emails"}', "{}", "{}"]})


def _bad_meta_json_rows() -> pa.Table:
    return pa.table({"text": ["a", "b", "c"], "meta": ['{"pile_set_name": "X"}', "{not json", None]})


@pytest.mark.parametrize("rows, reason, column, kept", [
    (_invalid_utf8_rows, "invalid_utf8", "pile_set_name", ["Enron Emails", None]),
    (_bad_meta_json_rows, "malformed_json", "meta", ['{"pile_set_name":"X"}', None]),
], ids=["invalid_utf8", "bad_meta_json"])
def test_a_bad_row_is_a_counted_problem_row(tmp_path, tok_path, rows, reason, column, kept):
    p = tmp_path / "in.parquet"
    pq.write_table(rows(), p)
    res = run([p], tmp_path / "o", tok_path)
    assert [(x["line"], x["reason"]) for x in res.report["problems"]["lines"]] == [(2, reason)]
    t = docs_table(tmp_path / "o")
    assert t.column("source_line").to_pylist() == [1, 3]
    assert t.column(column).to_pylist() == kept


def test_meta_of_a_type_that_is_not_json_is_refused_up_front(tmp_path, tok_path):
    p = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["a"], "meta": pa.array([b"\x00"], pa.binary())}), p)
    with pytest.raises(ConfigError, match="column 'meta' is a Parquet binary column; expected a JSON string or a"):
        run([p], tmp_path / "o", tok_path)
    assert not list(tmp_path.glob("o.*"))


def test_a_damaged_row_group_is_counted_and_the_rows_before_it_kept(tmp_path, tok_path):
    p = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": [f"document {i} " * 20 for i in range(40)]}), p, row_group_size=10)
    col = pq.ParquetFile(p).metadata.row_group(2).column(0)  # rows 21..30
    data = bytearray(p.read_bytes())
    start = col.data_page_offset
    data[start : start + col.total_compressed_size] = b"\x55" * col.total_compressed_size
    p.write_bytes(bytes(data))
    res = run([p], tmp_path / "o", tok_path)
    assert res.items == 20
    assert [(x["line"], x["reason"]) for x in res.report["problems"]["lines"]] == [(21, "corrupt_stream")]


def test_reader_yields_per_record_batch(tmp_path):
    """Constant memory: the reader hands out one bounded batch at a time, not the file."""
    texts = [f"doc {i}" for i in range(10)]
    p = write_parquet(tmp_path / "in.parquet", texts, row_group_size=5)
    r = ParquetReader(p, "text", batch_rows=2)
    it = r.documents(ProblemLog(), {"empty": 0})
    first = next(it)
    assert [d.text for d in first] == texts[:2] and r.lines == 2  # only the first batch has been decoded
    rest = list(it)
    assert all(len(b) <= 2 for b in rest) and len(rest) >= 4
    assert [d.line for b in [first, *rest] for d in b] == list(range(1, 11)) and r.lines == 10


def test_attach_from_parquet_gives_the_table_attach_from_jsonl_gives(tmp_path, tok_path):
    j = write_jsonl(tmp_path / "in.jsonl", TEXTS, META)
    p = write_parquet(tmp_path / "in.parquet", TEXTS, META, "struct")
    run([write_jsonl(tmp_path / "store.jsonl", TEXTS, None)], tmp_path / "a", tok_path, append_eod=True)
    for ext in (".bin", ".idx"):
        shutil.copy(tmp_path / f"a{ext}", tmp_path / f"b{ext}")
    ra = attach(AttachConfig([str(tmp_path / "a")], [str(j)], str(tok_path), append_eod=True, progress=False))
    rb = attach(AttachConfig([str(tmp_path / "b")], [str(p)], str(tok_path), append_eod=True, progress=False))
    assert ra["matched"] == rb["matched"] == 7
    ta, tb = docs_table(tmp_path / "a"), docs_table(tmp_path / "b")
    same_but_source_file(ta, tb)
    assert tb.column("source_file").to_pylist() == [str(p)] * 7
    assert tb.column("pile_set_name").to_pylist() == ta.column("pile_set_name").to_pylist()
    assert rb["inputs"] == [{**ra["inputs"][0], "file": str(p)}]

    q = write_parquet(tmp_path / "other.parquet", ["x"], text_col="content")  # checked before any work
    with pytest.raises(ConfigError, match="no column 'text'; the columns are content"):
        attach(AttachConfig([str(tmp_path / "b")], [str(p), str(q)], str(tok_path), progress=False))
