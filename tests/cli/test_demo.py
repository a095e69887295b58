"""The README's main job, end to end on a small embedded corpus: every capability runs and the HTTP API answers."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from cli.main import main


@pytest.mark.slow
def test_demo_runs_every_capability(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--docs", "300", "--steps", "8"]) == 0
    printed = capsys.readouterr().out
    for needle in ("$ pile-index ingest", "$ pile-index order build", "$ pile-index sample", "$ pile-index doc-steps",
                   "$ pile-index ngram steps", "$ pile-index ngram count", "--file",
                   "$ pile-index ngram trace", '"maximal_spans"', "$ pile-index sql", "$ pile-index replay", "$ pile-index score",
                   "$ pile-index dataset build", "GET /v1/corpus -> 200", "GET /v1/samples/0/3 -> 200",
                   "GET /v1/documents/999999999 -> 404", "demo finished"):
        assert needle in printed, needle
    for f in ("corpus.bin", "corpus.idx", "corpus.documents.parquet", "scores.parquet", "dataset/dataset.parquet",
              "dataset/plots/loss_by_checkpoint.png", "checkpoints/step8/model.safetensors"):
        assert (out / f).is_file(), f
    ds = pq.read_table(out / "dataset" / "dataset.parquet")
    assert set(ds["revision"].to_pylist()) == {"step0", "step1", "step2", "step4", "step8"}
    groups = pq.read_table(out / "dataset" / "rows.parquet")["group"].to_pylist()
    assert groups.count("control") == 32 and groups.count("treated") > 0
