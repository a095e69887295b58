"""Every command of the README's "From Pythia's files to answers", run in order on miniatures of the three
repositories in an offline hub cache (same file names and shard pattern, tiny sizes). The Pythia preset cannot
fit a miniature, so the substitutions the README states are applied, and nothing else."""

from __future__ import annotations

import io
import json
import random
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("huggingface_hub")

from cli.main import main  # noqa: E402
from tests.conftest import REAL_TOKENIZER  # noqa: E402
from tests.hub_miniatures import IDXMAPS, IDXMAPS_BASE, PRESHUFFLED, TEXT, put_repo, sharded  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"
SMALL = "--seed 1234 --seq-length 8 --num-samples 96 --batch-size 4"
SUBSTITUTIONS = [  # the README's own list, in its words: preset -> small order, step 1000 -> step 5
    ("--preset pythia", SMALL),
    ("--step 1000 ", "--step 5 "),
    ("--steps 1000:1001", "--steps 5:6"),
    ("--start 1024000 --stop 1025024", "--start 20 --stop 24"),
]
WORDS = ("the model reads a row of tokens and every document keeps its place in the order while the shuffle "
         "moves rows between steps so that exact answers need the index maps").split()


def walkthrough_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## From Pythia's files to answers", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.startswith("pile-index ")]


def texts() -> list[str]:
    rng = random.Random(7)
    out = []
    for i in range(60):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 80)))
        out.append(f"Hello, I am document {i}: {words}." if i % 9 == 0 else f"Document {i}: {words}.")
    return out


def tokenizer(dest: Path) -> None:
    """The real GPT-NeoX-20B tokenizer when present, else a small BPE trained on the texts, as 20B_tokenizer.json."""
    if REAL_TOKENIZER.is_file():
        shutil.copyfile(REAL_TOKENIZER, dest)
        return
    from tokenizers import pre_tokenizers, trainers

    from ingest.demo_corpus import SPECIAL_TOKENS, new_demo_tokenizer
    tok = new_demo_tokenizer()
    tok.train_from_iterator(texts(), trainer=trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(dest))


@pytest.fixture()
def miniatures(tmp_path, monkeypatch) -> Path:
    """A working folder holding 20B_tokenizer.json, and an offline hub cache with the three repositories."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ingest.pipeline import IngestConfig, ingest
    from pile_index.format import TokenStore, write_indexed
    from pile_index.order import open_order, order_config

    work, build, cache = tmp_path / "work", tmp_path / "build", tmp_path / "hub"
    work.mkdir(), build.mkdir()
    tokenizer(work / "20B_tokenizer.json")
    docs = texts()
    (build / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in docs))
    ingest(IngestConfig([str(build / "in.jsonl")], str(build / "full"), str(work / "20B_tokenizer.json"),
                        append_eod=True, progress=False))
    raw = build / IDXMAPS_BASE  # the bare .bin/.idx, as Pythia publishes it (no documents table)
    for ext in (".bin", ".idx"):
        shutil.copyfile(build / f"full{ext}", f"{raw}{ext}")
    put_repo(cache, IDXMAPS, {**sharded(raw, 83, hashes=True), "README.md": b"# miniature idxmaps\n"})

    order = open_order(TokenStore([str(raw)]), order_config(None, seed=1234, seq_length=8, num_samples=96,
                                                            batch_size=4), build=True)
    rows = build / "rows" / "document"
    rows.parent.mkdir()
    write_indexed(rows, [np.asarray(order.row(k), dtype=np.uint16) for k in range(96)], np.uint16)
    put_repo(cache, PRESHUFFLED, sharded(rows, 21, hashes=False))

    shuffled = docs[:]
    random.Random(3).shuffle(shuffled)
    parts = {}
    for i, half in enumerate((shuffled[:30], shuffled[30:])):
        buf = io.BytesIO()
        pq.write_table(pa.table({"text": pa.array(half, pa.string())}), buf, row_group_size=8)
        parts[f"data/train-{i:05}-of-00002.parquet"] = buf.getvalue()
    put_repo(cache, TEXT, parts)

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(work)
    return work


def test_readme_walkthrough_runs_on_miniatures(miniatures, capsys):
    commands = walkthrough_commands()
    assert len(commands) >= 12 and commands[0] == "pile-index fetch --list"
    answers = {}
    for line in commands:
        for old, new in SUBSTITUTIONS:
            line = line.replace(old, new)
        argv = shlex.split(line, comments=True)[1:]
        rc = main(["-q", *argv])  # -q: no progress bars
        out, err = capsys.readouterr()
        assert rc == 0, f"{line}\n{err}"
        answers[" ".join(argv[:2])] = json.loads(out) if "--json" in argv else out

    pre = json.loads(Path("pythia/preshuffled/fetch.json").read_text())
    assert pre["repo_id"] == PRESHUFFLED and set(pre["stores"]) == {"document"}
    raw = json.loads(Path("pythia/raw/fetch.json").read_text())
    assert raw["verified"]["match"] == 84 and raw["stores"][IDXMAPS_BASE]["state"] == "done"
    pre_row, raw_row = answers["sample pythia/preshuffled/document"], answers[f"sample pythia/raw/{IDXMAPS_BASE}"]
    assert pre_row["tokens"] == raw_row["tokens"] and len(raw_row["tokens"]) == 9  # both paths: the row at (5, 3)
    assert pre_row["spans"] is None and raw_row["spans"]
    table = answers["sql pythia/raw/pile_0.87_deduped_text_document"]
    assert [c["name"] for c in table["columns"]] == ["doc_id", "source_file", "source_line", "rows", "tokens_in_rows"]
    assert table["rows"] and all(r[1].endswith(".parquet") for r in table["rows"])
    assert answers["doc-steps pythia/raw/pile_0.87_deduped_text_document"]["doc_id"] == 7
    assert answers["ngram steps"]["count"] >= 1
    assert np.load("step1000.npy").shape == (4, 9)
