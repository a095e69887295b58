"""``pile-index order|sample|batch|doc-steps`` and the ``/v1`` order routes on a tiny store."""

from __future__ import annotations

import io
import json
from dataclasses import asdict

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from cli.main import main
from pile_index.format import IndexedDataset, write_indexed
from pile_index.order import OrderConfig, open_order
from tests.stores import sized_store

SIZES = [40, 0, 1, 300, 7, 129, 64, 2, 90, 500, 33, 12]
OPTS = ["--seed", "5", "--seq-length", "32", "--num-samples", "100", "--batch-size", "4"]
CFG = OrderConfig(seed=5, seq_length=32, num_samples=100, batch_size=4)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    raw = str(folder / "raw")
    sized_store(raw, SIZES)
    return folder, raw


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_end_to_end(stores, capsys):
    folder, raw = stores
    rc, out, err = run(capsys, "sample", raw, *OPTS, "--step", 1, "--slot", 2, "--json")
    assert rc == 2 and "order build" in err and "missing" in err
    rc, out, _ = run(capsys, "order", "build", raw, *OPTS, "--json")
    assert rc == 0
    built = json.loads(out)
    assert built["samples_usable"] == built["samples_total"] - 1 and built["train_steps"] == 25
    assert set(built["files"]) == {"doc_idx", "sample_idx", "shuffle_idx", "doc_idx_inverse", "shuffle_idx_inverse"}
    order = open_order(raw, CFG)

    rc, out, _ = run(capsys, "sample", raw, *OPTS, "--step", 1, "--slot", 2, "--json")
    rec = json.loads(out)
    assert rc == 0 and rec["sample_index"] == 6 and (rec["step"], rec["slot"]) == (1, 2)
    assert rec["tokens"] == order.row(6).tolist() and len(rec["tokens"]) == 33
    assert rec["spans"] == order.spans(6) and "text" not in rec

    out_file = folder / "b.npy"
    rc, out, _ = run(capsys, "batch", raw, *OPTS, "--step", 2, "--to", 4, "--out", out_file, "--json")
    assert rc == 0 and json.loads(out)["rows"] == 12
    np.testing.assert_array_equal(np.load(out_file), order.rows(np.arange(8, 20)))

    rc, out, _ = run(capsys, "doc-steps", raw, *OPTS, 3, "--json")
    assert rc == 0 and json.loads(out) == asdict(order.doc_steps(3))

    rc, out, _ = run(capsys, "order", "stats", raw, *OPTS, "--json")
    assert rc == 0 and json.loads(out) == json.loads(json.dumps(asdict(order.stats())))

    # a preshuffled copy verifies; a corrupted one reports the first mismatch and exits 1
    pre = str(folder / "pre")
    rows = order.rows(np.arange(order.num_samples))
    write_indexed(pre, list(rows), np.uint16)
    rc, out, _ = run(capsys, "order", "verify", raw, "--against", pre, *OPTS, "--json")
    assert rc == 0 and json.loads(out)["equal"] and json.loads(out)["checked"] == 100
    rows[50, 3] += 1
    write_indexed(pre, list(rows), np.uint16)
    rc, out, _ = run(capsys, "order", "verify", raw, "--against", pre, *OPTS, "--json")
    res = json.loads(out)
    assert rc == 1 and res["first_mismatch"]["sample_index"] == 50 and res["first_mismatch"]["position"] == 3

    rc, out, _ = run(capsys, "sample", pre, "--preshuffled", "--seq-length", 32, "--batch-size", 4,
                     "--step", 1, "--slot", 2, "--json")
    assert rc == 0 and json.loads(out)["spans"] is None and json.loads(out)["tokens"] == order.row(6).tolist()

    rc, _, err = run(capsys, "doc-steps", raw, *OPTS, 99)
    assert rc == 2 and "doc_id 99 is out of range" in err
    rc, _, err = run(capsys, "sample", raw, "--seed", 5, "--step", 0, "--slot", 0)
    assert rc == 2 and "--seq-length, --num-samples" in err
    rc, _, err = run(capsys, "doc-steps", pre, "--preshuffled", "--seq-length", 32, 3)
    assert rc == 2 and "drop --preshuffled" in err


def test_api_routes(stores, capsys):
    folder, raw = stores
    order = open_order(raw, CFG, build=True)
    settings = Settings(prefixes=[raw], seed=5, seq_length=32, num_samples=100, batch_size=4, max_rows_per_request=8)
    with TestClient(create_app(settings)) as client:
        r = client.get("/v1/samples/1/2")
        assert r.status_code == 200
        body = r.json()
        assert body["tokens"] == order.row(6).tolist() and body["sample_index"] == 6
        assert [{k: s[k] for k in ("doc_id", "doc_start", "doc_end", "sample_start")} for s in body["spans"]] == order.spans(6)

        r = client.get("/v1/batches/1", params={"to": 2})
        assert r.status_code == 200 and r.json()["tokens"] == order.rows(np.arange(4, 12)).tolist()
        r = client.get("/v1/batches/1", params={"format": "npy"})

        np.testing.assert_array_equal(np.load(io.BytesIO(r.content)), order.batch(1))
        r = client.get("/v1/batches/1", params={"to": 3})
        assert r.status_code == 413
        assert r.json()["error"]["setting"] == "max_rows_per_request" and "12 rows" in r.json()["error"]["message"]

        r = client.get("/v1/documents/5/steps")
        assert r.status_code == 200 and r.json() == asdict(order.doc_steps(5))
        r = client.get("/v1/documents/500/steps")
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
        r = client.get("/v1/samples/1/9")
        assert r.status_code == 400 and "slot 9 is out of range" in r.json()["error"]["message"]

    pre = str(folder / "pre2")
    write_indexed(pre, list(order.rows(np.arange(order.num_samples))), np.uint16)
    settings = Settings(prefixes=[pre], preshuffled=True, seq_length=32, batch_size=4)
    with TestClient(create_app(settings)) as client:
        body = client.get("/v1/samples/1/2").json()
        assert body["spans"] is None and body["tokens"] == order.row(6).tolist()
        r = client.get("/v1/documents/5/steps")
        assert r.status_code == 400 and "preshuffled" in r.json()["error"]["message"]
    assert len(IndexedDataset(pre)) == order.num_samples


def test_untrained_rows_say_so(stores, capsys):
    """train_steps 20 of the 27 steps the order has: rows of step 20 on exist but were never trained on."""
    folder, raw = stores
    open_order(raw, CFG, build=True)
    opts = [*OPTS, "--train-steps", 20]
    rc, out, _ = run(capsys, "sample", raw, *opts, "--step", 20, "--slot", 1, "--json")
    assert rc == 0 and json.loads(out)["trained"] is False and json.loads(out)["sample_index"] == 81
    rc, out, _ = run(capsys, "sample", raw, *opts, "--step", 19, "--slot", 3, "--json")
    assert rc == 0 and json.loads(out)["trained"] is True
    rc, out, _ = run(capsys, "batch", raw, *opts, "--step", 18, "--to", 22, "--out", folder / "t.npy", "--json")
    meta = json.loads(out)
    assert rc == 0 and meta["rows"] == 20 and meta["train_steps"] == 20
    assert meta["trained"] == [True, True, False, False, False] and meta["trained_rows"] == 8
    # doc-steps keeps listing trained rows only
    rc, out, _ = run(capsys, "doc-steps", raw, *opts, 9, "--json")
    assert rc == 0 and all(o["sample_index"] < 80 for o in json.loads(out)["occurrences"])

    settings = Settings(prefixes=[raw], seed=5, seq_length=32, num_samples=100, batch_size=4, train_steps=20)
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/samples/20/1").json()["trained"] is False
        assert client.get("/v1/samples/19/3").json()["trained"] is True
        body = client.get("/v1/batches/19", params={"to": 20}).json()
        assert body["trained"] == [True, False] and body["trained_rows"] == 4 and body["train_steps"] == 20
        r = client.get("/v1/batches/19", params={"to": 20, "format": "npy"})
        assert r.headers["x-trained-rows"] == "4" and r.headers["x-train-steps"] == "20"
        schema = client.get("/openapi.json").json()["components"]["schemas"]
        assert "trained" in schema["Sample"]["required"] and "trained" in schema["Batch"]["required"]


def test_order_build_refuses_too_many_epochs(stores, capsys):
    folder, raw = stores
    many = ["--seed", "5", "--seq-length", "32", "--num-samples", "10000", "--batch-size", "4"]
    before = sorted(p.name for p in folder.iterdir())
    rc, _, err = run(capsys, "order", "build", raw, *many)
    assert rc == 2 and "needs 272 epochs" in err and "max_epochs=100" in err and "Nothing was written" in err
    assert "Lower num_samples (at most 3,681 samples fit in 100 epochs)" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in folder.iterdir()) == before
    rc, out, _ = run(capsys, "order", "stats", raw, *OPTS)
    assert rc == 0 and out.splitlines()[0] == "epochs: 3"
    rc, out, _ = run(capsys, "order", "build", raw, *OPTS, "--json")
    assert rc == 0 and list(json.loads(out))[:2] == ["epochs", "bytes"]
