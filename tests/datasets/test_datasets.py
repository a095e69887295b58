"""The datasets pipeline end to end: a tiny corpus, a checkpoint series made by replaying training on the
reconstructed order (Pythia's schedule step0, 1, 2, 4, 8, 16, 32), then the dataset of rows x checkpoints.
The treatment effect (loss drop at the first checkpoint after a row's step, against never-trained rows) is
measured, not assumed; Ray and single-process outputs are equal."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pyarrow as pa
import pytest

from pile_index import write_indexed
from pile_index.datasets import (DatasetConfig, ReplayConfig, SelectionConfig, Strategy, build_dataset,
                                 parse_revisions, replay_training)
from pile_index.errors import NotFoundError
from pile_index.order import OrderConfig, open_order
from pile_index.sql import DOCUMENT_SCHEMA, DocumentTable

VOCAB, L, B, STEPS = 200, 64, 4, 32


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ds")
    rng = np.random.default_rng(7)
    docs = [rng.integers(2, VOCAB, size=int(rng.integers(20, 200))).astype(np.uint16) for _ in range(120)]
    prefix = tmp / "corpus"
    write_indexed(prefix, docs, np.uint16)
    names = ["Github", "ArXiv", "Pile-CC"]
    pq.write_table(pa.table({
        "doc_id": np.arange(len(docs)), "source_file": ["x.jsonl"] * len(docs), "source_line": np.arange(len(docs)) + 1,
        "pile_set_name": [names[i % 3] for i in range(len(docs))], "meta": [None] * len(docs),
        "n_tokens": [len(d) for d in docs], "n_bytes": [len(d) for d in docs], "token_hash": np.zeros(len(docs), np.uint64),
    }, schema=DOCUMENT_SCHEMA), f"{prefix}.documents.parquet")
    total_rows = (sum(len(d) for d in docs) - 1) // L
    cfg = OrderConfig(seed=1234, seq_length=L, num_samples=total_rows, name="train_0", batch_size=B, train_steps=STEPS)
    order = open_order(str(prefix), cfg, build=True)
    assert order.num_samples > STEPS * B + 16  # never-trained rows exist for the control group
    ckpts = tmp / "ckpts"
    replay_training(order.batch, VOCAB, L, ReplayConfig(steps=STEPS, checkpoint_steps=[0, 1, 2, 4, 8, 16, 32], lr=1e-2), ckpts)
    return order, DocumentTable(f"{prefix}.documents.parquet"), ckpts, tmp


def _cfg(ckpts, strategy=Strategy.UNIFORM, **sel):
    sel.setdefault("rows", 24)
    sel.setdefault("control_rows", 12)
    return DatasetConfig(model=str(ckpts), revisions=parse_revisions("pythia:32"), chunk_rows=16, batch_rows=8,
                         selection=SelectionConfig(strategy=strategy, seed=3, **sel), allow_download=False)


def test_dataset_measures_a_treatment_effect(world):
    order, documents, ckpts, tmp = world
    res = build_dataset(order, documents, _cfg(ckpts), tmp / "out", progress=False)
    assert res["rows"] == 36 and res["treated"] == 24 and res["control"] == 12 and res["revisions"] == 7
    ds = pq.read_table(tmp / "out" / "dataset.parquet").to_pylist()
    assert len(ds) == 36 * 7 and "input_ids" not in ds[0]  # rows.parquet holds it once, not per checkpoint
    rows = pq.read_table(tmp / "out" / "rows.parquet").to_pylist()
    assert [r["train_index"] for r in rows] == list(range(36))
    for r in rows:
        assert r["index"] == r["sample_index"] == r["step"] * B + r["slot"]
        np.testing.assert_array_equal(r["tokens"], order.row(r["sample_index"])[:64])
        assert r["input_ids"] == order.row(r["sample_index"]).tolist()  # the whole row, for attribution tools
        if r["group"] == "treated":
            assert r["step"] < STEPS and r["treatment_step"] > r["step"] >= r["before_step"]
            assert sum(r["doc_tokens"]) == L + 1 and set(r["pile_set_names"]) <= {"Github", "ArXiv", "Pile-CC"}
        else:
            assert r["step"] >= STEPS and r["treatment_step"] == -1
    effect = res["treatment_effect"]
    # Training on a row lowers its loss more than the never-trained rows' over the same checkpoints.
    assert effect["mean_effect"] < -0.05, effect
    assert all(p.endswith(".png") for p in res["plots"])
    ck = pq.read_table(tmp / "out" / "checkpoints.parquet").to_pylist()
    assert [c["revision"] for c in ck] == [f"step{s}" for s in (0, 1, 2, 4, 8, 16, 32)]
    assert all(len(c["weights_sha256"]) == 64 and c["duplicate_of"] is None for c in ck)


def test_rerun_resumes_and_is_identical(world):
    order, documents, ckpts, tmp = world
    out = tmp / "resume"
    build_dataset(order, documents, _cfg(ckpts), out, progress=False)
    first = (out / "dataset.parquet").read_bytes()
    victim = sorted((out / "parts").glob("step4-*.parquet"))[0]
    victim.unlink()  # as if the job died before this part
    build_dataset(order, documents, _cfg(ckpts), out, progress=False)
    assert (out / "dataset.parquet").read_bytes() == first


def test_cohort_and_stratified_selection(world):
    order, documents, ckpts, tmp = world
    cfg = _cfg(ckpts, Strategy.COHORT, cohort_steps=8, batches_per_cohort=1, rows_per_batch=2)
    cfg.revisions = ["step0", "step32"]
    res = build_dataset(order, documents, cfg, tmp / "cohort", progress=False)
    rows = pq.read_table(tmp / "cohort" / "rows.parquet").to_pylist()
    treated = [r for r in rows if r["group"] == "treated"]
    assert res["treated"] == 8 and sorted({r["cohort"] for r in treated}) == [0, 1, 2, 3]
    cfg = _cfg(ckpts, Strategy.STRATIFIED, rows=2)
    cfg.revisions = ["step32"]
    build_dataset(order, documents, cfg, tmp / "strat", progress=False)
    assert pq.read_table(tmp / "strat" / "rows.parquet").num_rows == 2 * 3 + 12


@pytest.mark.slow
def test_ray_and_single_process_agree(world):
    pytest.importorskip("ray")
    order, documents, ckpts, tmp = world
    cfg = _cfg(ckpts, rows=16, control_rows=8)
    cfg.revisions = ["step0", "step4", "step32"]
    build_dataset(order, documents, cfg, tmp / "single", progress=False)
    build_dataset(order, documents, cfg, tmp / "ray", progress=False, ray_address="local", ray_num_cpus=2)
    a = pq.read_table(tmp / "single" / "dataset.parquet")
    b = pq.read_table(tmp / "ray" / "dataset.parquet")
    assert a.equals(b)


def test_cli_build_show_and_api(world, capsys):
    import json

    from fastapi.testclient import TestClient

    from api.main import create_app
    from api.settings import Settings
    from cli.main import main

    order, documents, ckpts, tmp = world
    prefix = order.store.prefix
    common = ["--seed", "1234", "--seq-length", str(L), "--num-samples", str(order.cfg.num_samples),
              "--batch-size", str(B), "--train-steps", str(STEPS)]
    out = tmp / "cli_ds"
    assert main(["dataset", "build", prefix, *common, "--model", str(ckpts), "--revisions", "step0,step8,step32",
                 "--rows", "6", "--control-rows", "3", "--offline", "--out", str(out), "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["rows"] == 9 and built["dataset_rows"] == 27
    k = pq.read_table(out / "rows.parquet")["sample_index"][0].as_py()
    assert main(["dataset", "show", str(out), "--sample", str(k), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["sample_index"] == k and [c["revision"] for c in shown["checkpoints"]] == ["step0", "step8", "step32"]
    assert main(["dataset", "show", str(out), "--revision", "step9", "--json"]) == 2
    assert "revision 'step9' is not in the dataset" in capsys.readouterr().err

    with TestClient(create_app(Settings(prefixes=[prefix], datasets=[str(out)]))) as c:
        assert c.get("/v1/datasets").json() == ["cli_ds"]
        r = c.get(f"/v1/datasets/cli_ds/samples/{k}").json()
        assert r["checkpoints"][0]["loss"] == shown["checkpoints"][0]["loss"]
        assert c.get("/v1/datasets/cli_ds/checkpoints/step8").json()["checkpoint"]["revision"] == "step8"
        assert {e["cohort"] for e in c.get("/v1/datasets/cli_ds/summary").json()["treatment_effects"]} >= {None}
        assert c.get("/v1/datasets/nope/summary").json()["error"]["type"] == "not_found"


def test_cli_replay(world, capsys):
    import json

    from cli.main import main

    order, _, _, tmp = world
    assert main(["replay", order.store.prefix, "--seed", "1234", "--seq-length", str(L), "--num-samples",
                 str(order.cfg.num_samples), "--batch-size", str(B), "--steps", "4", "--out", str(tmp / "rp"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["revisions"] == ["step0", "step1", "step2", "step4"] and res["last_loss"] < res["first_loss"]


def test_ngram_selection_picks_rows_holding_the_ngram(world, capsys):
    from cli.main import main
    from pile_index.ngram import build_index

    order, _, ckpts, tmp = world
    build_index(order.store, progress=False)
    k = 5  # a trained row; take 4 tokens from inside one of its documents
    span = max(order.spans(k), key=lambda s: s["doc_end"] - s["doc_start"])
    gram = order.row(k)[span["sample_start"] + 1 : span["sample_start"] + 5].tolist()
    out = tmp / "ngram_ds"
    assert main(["dataset", "build", order.store.prefix, "--seed", "1234", "--seq-length", str(L), "--num-samples",
                 str(order.cfg.num_samples), "--batch-size", str(B), "--train-steps", str(STEPS), "--model", str(ckpts),
                 "--revisions", "step32", "--select", "ngram", "--ngram-tokens", ",".join(map(str, gram)),
                 "--control-rows", "2", "--offline", "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    rows = pq.read_table(out / "rows.parquet").to_pylist()
    treated = [r["sample_index"] for r in rows if r["group"] == "treated"]
    assert k in treated
    for s in treated:  # every chosen row holds the n-gram (brute force over the row)
        row = order.row(s).tolist()
        assert any(row[i : i + 4] == gram for i in range(len(row) - 3))


def test_duplicates_column_equals_brute_force(world, capsys):
    from brute import brute_duplicates, row_pieces

    from cli.main import main
    from pile_index.ngram import build_index

    order, _, ckpts, tmp = world
    build_index(order.store, progress=False)
    out = tmp / "dup_ds"
    assert main(["dataset", "build", order.store.prefix, "--seed", "1234", "--seq-length", str(L), "--num-samples",
                 str(order.cfg.num_samples), "--batch-size", str(B), "--train-steps", str(STEPS), "--model", str(ckpts),
                 "--revisions", "step32", "--rows", "12", "--control-rows", "4", "--duplicates", "--offline",
                 "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    rows = pq.read_table(out / "rows.parquet").to_pylist()
    trained_pieces = [row_pieces(order, r) for r in range(STEPS * B)]
    assert [r["num_duplicates"] for r in rows] == [brute_duplicates(order, trained_pieces, r["sample_index"])
                                                   for r in rows]
    assert res["num_duplicates_null_rows"] == sum(r["num_duplicates"] is None for r in rows)
    assert all(r["num_duplicates"] >= 1 for r in rows if r["group"] == "treated" and r["num_duplicates"] is not None)
    assert "num_duplicates" in pq.read_schema(out / "dataset.parquet").names


# ------------------------------------------------------------------ revisions first; resume and restart


def _linked_ckpts(ckpts, folder, revisions, broken=()):
    """A model folder of symlinks to the world's step folders; ``broken`` ones get a truncated weight file."""
    folder.mkdir()
    for rev in revisions:
        if rev in broken:
            (folder / rev).mkdir()
            (folder / rev / "config.json").symlink_to(ckpts / rev / "config.json")
            data = (ckpts / rev / "model.safetensors").read_bytes()
            (folder / rev / "model.safetensors").write_bytes(data[: len(data) // 2])
        else:
            (folder / rev).symlink_to(ckpts / rev)
    return folder


def test_missing_revisions_are_named_before_any_scoring(world):
    """`--revisions pythia` with step8 absent: the error lists the missing and the present revisions, and
    nothing was scored or written first."""
    order, documents, ckpts, tmp = world
    gap = _linked_ckpts(ckpts, tmp / "gap", ["step0", "step1", "step2", "step4", "step16", "step32"])
    cfg = _cfg(gap)
    out = tmp / "gap_out"
    with pytest.raises(NotFoundError, match=r"1 of 7 revisions are missing \(no sub-folder with config\.json\): "
                                            r"step8; present: step0, step1, step2, step4, step16, step32\."):
        build_dataset(order, documents, cfg, out, progress=False)
    assert not (out / "parts").exists() and not (out / "rows.parquet").exists()


def test_failed_build_resumes_or_restarts_with_one_command(world, capsys, monkeypatch):
    import shlex

    from cli.main import main
    from pile_index.datasets import build as datasets

    order, _, ckpts, tmp = world
    revs = ["step0", "step1", "step2"]
    model = _linked_ckpts(ckpts, tmp / "broken", revs, broken=("step2",))
    out = tmp / "resumable"
    argv = ["dataset", "build", order.store.prefix, "--seed", "1234", "--seq-length", str(L), "--num-samples",
            str(order.cfg.num_samples), "--batch-size", str(B), "--train-steps", str(STEPS), "--model", str(model),
            "--revisions", ",".join(revs), "--rows", "6", "--control-rows", "3", "--offline", "--out", str(out),
            "--json"]
    scored = []
    real = datasets.score_part
    monkeypatch.setattr(datasets, "score_part", lambda m, rev, *a: scored.append(rev) or real(m, rev, *a))

    assert main(argv) == 2  # step2's weights are damaged: found when it is loaded, after step0 and step1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "model.safetensors: not a readable safetensors file" in err
    assert "the dataset build stopped with 2 of 3 parts finished" in err and "rerun to resume" in err
    resume = err.split("; resume with: ", 1)[1]
    assert shlex.split(resume) == ["pile-index", *argv]
    assert scored == ["step0", "step1", "step2"]

    (model / "step2" / "model.safetensors").unlink()  # fix the cause, run the command the error named
    (model / "step2" / "model.safetensors").symlink_to(ckpts / "step2" / "model.safetensors")
    scored.clear()
    assert main(shlex.split(resume)[1:]) == 0
    assert scored == ["step2"] and len(json.loads(capsys.readouterr().out)["plots"]) == 3

    scored.clear()  # fewer revisions: the same parts, nothing to score
    assert main([*argv[:argv.index("--revisions") + 1], "step0,step2", *argv[argv.index("--revisions") + 2:]]) == 0
    assert scored == [] and json.loads(capsys.readouterr().out)["dataset_rows"] == 9 * 2

    other = [*argv[:argv.index("--rows") + 1], "5", *argv[argv.index("--rows") + 2:]]
    assert main(other) == 2  # other rows: refused, naming what differs and the one command that restarts
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{out}: holds parts of a different dataset (differs in: rows_sha256, selection)" in err
    restart = err.split("; restart with: ", 1)[1]
    assert shlex.split(restart) == ["pile-index", *other, "--restart"]
    scored.clear()
    assert main(shlex.split(restart)[1:]) == 0
    assert sorted(set(scored)) == revs and json.loads(capsys.readouterr().out)["rows"] == 8


def test_too_few_checkpoints_say_so(world):
    order, documents, ckpts, tmp = world
    cfg = _cfg(ckpts, rows=4, control_rows=2)
    cfg.revisions = ["step32"]
    res = build_dataset(order, documents, cfg, tmp / "one_ckpt", progress=False)
    assert res["dataset_rows"] == 6 and res["treatment_effect"] is None
    assert res["treatment_effect_unavailable"].startswith("too few checkpoints for a treatment effect: 1 (step32)")
