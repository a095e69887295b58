"""score_rows and the resumable Parquet job, through the library and through ``pile-index score``."""

from __future__ import annotations

import json
import logging

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

pytest.importorskip("transformers", reason="transformers builds the test checkpoints")
from test_scorer_model import make_hf_model, write_bin  # noqa: E402

from cli.main import main  # noqa: E402
from pile_index import write_indexed  # noqa: E402
from pile_index.errors import ConfigError, QueryError  # noqa: E402
from pile_index.scorer import (ScoreOptions, columns_to_table, load_model, resolve_checkpoint,  # noqa: E402
                               score_rows, score_to_parquet)

VOCAB = 101
L = 64  # seq_length: rows of 65 tokens, enough for the 32 + 32 memorization window


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Local checkpoints laid out as revision sub-folders: step1, step2 (different), step3 (= step1's weights)."""
    root = tmp_path_factory.mktemp("ckpts")
    write_bin(make_hf_model(32, 2, vocab=VOCAB, seed=1), root / "step1")
    write_bin(make_hf_model(32, 2, vocab=VOCAB, seed=2), root / "step2")
    write_bin(make_hf_model(32, 2, vocab=VOCAB, seed=1), root / "step3", shards=2)
    return root


def table_rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, (n, L + 1)).astype(np.uint16)


def test_score_rows_columns_and_batch_invariance(ckpts):
    model, _ = load_model(resolve_checkpoint(str(ckpts), "step1"))
    rows = table_rows(5)
    a = score_rows(model, rows, ScoreOptions(per_token=True, batch_size=5))
    b = score_rows(model, rows, ScoreOptions(per_token=True, batch_size=2, logits_chunk_elems=VOCAB * 3))
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-5, rtol=0)
    assert a["token_nll"].shape == (5, L) and a["token_rank"].dtype == np.int32
    np.testing.assert_allclose(a["loss"], a["token_nll"].mean(1), atol=1e-6)
    np.testing.assert_allclose(a["accuracy"], (a["token_rank"] == 0).mean(1))
    lite = score_rows(model, rows, ScoreOptions(memorization_score=False))
    assert lite["memorization_score"] is None and "token_nll" not in lite
    np.testing.assert_array_equal(lite["accuracy"], a["accuracy"])
    with pytest.raises(ConfigError, match=r"token ids in \[101, 101\].*outside the model's vocabulary \[0, 101\)"):
        score_rows(model, np.full((1, L + 1), VOCAB))
    table = columns_to_table(a, model="m", revision=None, weights_sha256="x", steps=np.zeros(5, int),
                             slots=np.arange(5), sample_index=np.arange(5), per_token=True)
    assert table.column("token_rank").to_pylist()[2] == a["token_rank"][2].tolist()


def job(tmp_path, ckpts, out_name="scores.parquet", revisions=("step1", "step2", "step3"), read_rows=None,
        **kw):
    rows = table_rows(10)
    steps, slots = np.repeat(np.arange(3, 8), 2), np.tile(np.arange(2), 5)
    sample_index = steps * 2 + slots

    def default_read(ks):
        return rows[np.asarray(ks) - 6]

    out = score_to_parquet(tmp_path / out_name, model=str(ckpts), revisions=list(revisions), steps=steps,
                           slots=slots, sample_index=sample_index, read_rows=read_rows or default_read,
                           chunk_rows=4, progress=False, **kw)
    return out, rows, sample_index


def test_job_output_matches_score_rows(tmp_path, ckpts, caplog):
    with caplog.at_level(logging.WARNING):
        out, rows, ks = job(tmp_path, ckpts, options=ScoreOptions(per_token=True))
    t = pq.read_table(out)
    assert t.column_names == ["model", "revision", "weights_sha256", "step", "slot", "sample_index", "loss",
                              "entropy", "accuracy", "memorized", "memorization_score", "token_nll",
                              "token_rank", "token_entropy"]
    assert t.num_rows == 30
    assert t.column("revision").to_pylist() == ["step1"] * 10 + ["step2"] * 10 + ["step3"] * 10
    assert t.column("sample_index").to_pylist() == ks.tolist() * 3
    assert t.column("step").to_pylist()[:4] == [3, 3, 4, 4] and t.column("slot").to_pylist()[:4] == [0, 1, 0, 1]
    for i, rev in enumerate(["step1", "step2", "step3"]):
        ck = resolve_checkpoint(str(ckpts), rev)
        model, _ = load_model(ck)
        ref = score_rows(model, rows, ScoreOptions())
        part = t.slice(10 * i, 10)
        assert part.column("weights_sha256").to_pylist() == [ck.weights_sha256] * 10
        np.testing.assert_allclose(part.column("loss").to_numpy(), ref["loss"], atol=1e-6, rtol=0)
        np.testing.assert_array_equal(part.column("memorized").to_numpy(), ref["memorized"])
        np.testing.assert_array_equal(part.column("memorization_score").to_numpy(), ref["memorization_score"])
    # step3 holds step1's tensors in other files: flagged, recorded, and scored identically
    assert "step3 carries the same weights as" in caplog.text
    meta = json.loads(t.schema.metadata[b"pile_index.score"])
    assert meta["checkpoints"][2]["duplicate_of"].endswith("@step1")
    assert meta["checkpoints"][0]["weight_files"] == {"pytorch_model.bin": meta["checkpoints"][0]["weights_sha256"]}
    np.testing.assert_array_equal(t.slice(0, 10).column("loss").to_numpy(), t.slice(20, 10).column("loss").to_numpy())


def test_job_resumes_and_reproduces_bytes(tmp_path, ckpts):
    clean, _, _ = job(tmp_path, ckpts, "clean.parquet")
    calls = []

    def crashing_read(ks):
        calls.append(len(ks))
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return table_rows(10)[np.asarray(ks) - 6]

    with pytest.raises(RuntimeError, match="simulated crash"):
        job(tmp_path, ckpts, "resumed.parquet", read_rows=crashing_read, max_cached_row_bytes=0)
    parts = tmp_path / "resumed.parquet.parts"
    manifest = json.loads((parts / "manifest.json").read_text())
    assert sorted(manifest["parts"]) == ["r000-c000000.parquet", "r000-c000001.parquet"]
    assert not (tmp_path / "resumed.parquet").exists()
    calls.clear()

    def counting_read(ks):
        calls.append(len(ks))
        return table_rows(10)[np.asarray(ks) - 6]

    out, _, _ = job(tmp_path, ckpts, "resumed.parquet", read_rows=counting_read)
    assert calls[0] == 2  # the remaining chunk of step1 (rows 8..9); then all rows once, kept for step2/3
    assert sum(calls) == 2 + 10
    assert out.read_bytes() == clean.read_bytes()
    before = out.read_bytes()
    calls.clear()
    job(tmp_path, ckpts, "resumed.parquet", read_rows=counting_read)  # all parts done: nothing recomputed
    assert calls == [] and out.read_bytes() == before


def test_job_refuses_a_different_job_and_a_moved_revision(tmp_path, ckpts):
    job(tmp_path, ckpts, revisions=["step1"])
    with pytest.raises(ConfigError, match=r"different job \(differs in: options\)"):
        job(tmp_path, ckpts, revisions=["step1"], options=ScoreOptions(ban_eod=True))
    # the weights behind a revision change between runs (a hub branch moved): refused, not mixed
    (tmp_path / "scores.parquet.parts" / "r000-c000002.parquet").unlink()
    write_bin(make_hf_model(32, 2, vocab=VOCAB, seed=9), ckpts / "step1")
    try:
        with pytest.raises(ConfigError, match="the revision moved"):
            job(tmp_path, ckpts, revisions=["step1"])
    finally:
        write_bin(make_hf_model(32, 2, vocab=VOCAB, seed=1), ckpts / "step1")


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_score_preshuffled_and_raw(tmp_path, ckpts, capsys):
    # a preshuffled store: item k = sample k, 65 tokens each; 6 steps of 4 rows
    items = np.random.default_rng(3).integers(1, VOCAB, (24, L + 1)).astype(np.uint16)
    pre = tmp_path / "pre"
    write_indexed(pre, list(items), np.uint16)
    out = tmp_path / "pre.parquet"
    args = ["score", str(pre), "--preshuffled", "--seq-length", str(L), "--batch-size", "4", "--model", str(ckpts),
            "--revision", "step1", "--revision", "step2", "--steps", "2:4", "--slots", "1:3", "--per-token",
            "--out", str(out), "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    shas = [resolve_checkpoint(str(ckpts), r).weights_sha256 for r in ("step1", "step2")]
    assert summary == {"out": str(out), "rows": 4, "revisions": ["step1", "step2"], "steps": [2, 4], "slots": [1, 3],
                       "checkpoints": [{"revision": r, "commit_sha": None, "weights_sha256": h, "duplicate_of": None}
                                       for r, h in zip(("step1", "step2"), shas)]}
    t = pq.read_table(out)
    assert t.column("sample_index").to_pylist() == [9, 10, 13, 14] * 2
    model, _ = load_model(resolve_checkpoint(str(ckpts), "step2"))
    ref = score_rows(model, items[[9, 10, 13, 14]], ScoreOptions(per_token=True))
    np.testing.assert_allclose(t.slice(4).column("loss").to_numpy(), ref["loss"], atol=1e-6, rtol=0)
    assert t.slice(4).column("token_nll").to_pylist()[0] == pytest.approx(ref["token_nll"][0].tolist(), abs=1e-6)
    first = out.read_bytes()
    assert main(args) == 0  # a rerun resumes from the parts: same bytes
    assert out.read_bytes() == first

    # a raw store in GPT-NeoX training order (index maps built by `order build`)
    docs = [np.random.default_rng(i).integers(1, VOCAB, 20 + 7 * i).astype(np.uint16) for i in range(12)]
    raw = tmp_path / "raw"
    write_indexed(raw, docs, np.uint16)
    order = ["--seed", "7", "--seq-length", str(L), "--num-samples", "8", "--batch-size", "2"]
    assert main(["order", "build", str(raw), *order, "--json"]) == 0
    capsys.readouterr()
    out2 = tmp_path / "raw.parquet"
    assert main(["score", str(raw), *order, "--model", str(ckpts / "step1"), "--steps", "1:3",
                 "--ban-eod", "--out", str(out2), "--json"]) == 0
    t2 = pq.read_table(out2)
    assert t2.column("sample_index").to_pylist() == [2, 3, 4, 5]
    assert t2.column("revision").to_pylist() == [None] * 4
    from pile_index.order import open_order, order_config
    rows = open_order(str(raw), order_config(seed=7, seq_length=L, num_samples=8, batch_size=2)).rows(np.arange(2, 6))
    model1, _ = load_model(resolve_checkpoint(str(ckpts / "step1")))
    ref2 = score_rows(model1, rows, ScoreOptions(ban_eod=True))
    np.testing.assert_allclose(t2.column("loss").to_numpy(), ref2["loss"], atol=1e-6, rtol=0)
    np.testing.assert_array_equal(t2.column("memorization_score").to_numpy(), ref2["memorization_score"])


def test_cli_errors(tmp_path, ckpts, capsys):
    items = np.random.default_rng(3).integers(1, VOCAB, (8, L + 1)).astype(np.uint16)
    pre = tmp_path / "pre"
    write_indexed(pre, list(items), np.uint16)
    base = ["score", str(pre), "--preshuffled", "--seq-length", str(L), "--batch-size", "4", "--model", str(ckpts),
            "--revision", "step1"]
    assert main([*base, "--steps", "1:5", "--out", str(tmp_path / "a.parquet")]) == 2
    assert "past the 8 samples" in capsys.readouterr().err
    assert main([*base, "--steps", "0:1", "--slots", "2:9", "--out", str(tmp_path / "a.parquet")]) == 2
    assert "a step has slots 0..3" in capsys.readouterr().err
    assert main([*base, "--steps", "x", "--out", str(tmp_path / "a.parquet")]) == 2
    assert "expected A:B" in capsys.readouterr().err
    assert main([*base, "--steps", "0", "--out", str(tmp_path / "a.csv")]) == 2
    assert "expected a .parquet" in capsys.readouterr().err
    with pytest.raises(QueryError):
        from pile_index.order import open_order, order_config
        open_order(str(pre), order_config(seq_length=L, num_samples=8, batch_size=4, seed=0),
                   preshuffled=True).sample_index(2, 0)


def test_device_and_dtype_choice():
    from pile_index.scorer.model import pythia_shape
    from pile_index.scorer.score import auto_batch_size, pick_device, pick_dtype

    cpu = torch.device("cpu")
    assert pick_dtype(cpu) == torch.float32 and pick_dtype(cpu, "bf16") == torch.bfloat16
    with pytest.raises(ConfigError, match="`dtype` 'fp8'"):
        pick_dtype(cpu, "fp8")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA device"):
            pick_device("cuda")
        assert pick_device(None) == cpu
    # 70m at 2,048 tokens in fp32: ~126 MB of activations per row in 1 GiB less 192 MiB of logits buffers
    assert auto_batch_size(pythia_shape("70m"), 2048, cpu, torch.float32, 1 << 24) == 6
    with pytest.raises(ConfigError, match="batch_size=0"):
        ScoreOptions(batch_size=0).validate()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the bf16 GPU path is checked on GPU hosts")
def test_cuda_bf16_close_to_cpu_fp32(ckpts):
    ck = resolve_checkpoint(str(ckpts), "step1")
    cpu_model, _ = load_model(ck)
    gpu_model, _ = load_model(ck, "cuda", torch.bfloat16)
    rows = table_rows(6)
    a = score_rows(cpu_model, rows, ScoreOptions(per_token=True))
    b = score_rows(gpu_model, rows, ScoreOptions(per_token=True))
    np.testing.assert_allclose(b["loss"], a["loss"], atol=0.05, rtol=0)
    np.testing.assert_allclose(b["entropy"], a["entropy"], atol=0.05, rtol=0)
    assert np.isfinite(b["token_nll"]).all()


def test_half_precision_path_on_cpu(ckpts):
    """The bf16 branch (half-precision projection, fp32 statistics) runs anywhere; it stays near fp32."""
    ck = resolve_checkpoint(str(ckpts), "step2")
    ref_model, _ = load_model(ck)
    bf16_model, _ = load_model(ck, "cpu", torch.bfloat16)
    assert bf16_model.embed_out.weight.dtype == torch.bfloat16
    rows = table_rows(3)
    a = score_rows(ref_model, rows, ScoreOptions(per_token=True))
    b = score_rows(bf16_model, rows, ScoreOptions(per_token=True))
    assert b["token_nll"].dtype == np.float32 and np.isfinite(b["token_nll"]).all()
    np.testing.assert_allclose(b["loss"], a["loss"], atol=0.05, rtol=0)
    np.testing.assert_allclose(b["entropy"], a["entropy"], atol=0.05, rtol=0)
