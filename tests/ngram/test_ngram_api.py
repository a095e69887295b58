"""/v1/ngrams/{count,locate,steps} and /v1/sql over raw and preshuffled stores."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from pile_index.format import TokenStore, write_indexed
from pile_index.ngram import NgramIndex, build_index, ngram_steps
from pile_index.order import open_order, order_config

DOCS = [[5, 6, 7, 5, 6], [5, 6], [7, 7, 5, 6, 5, 6, 7], [], [6, 5, 6, 5]]


@pytest.fixture()
def raw(tmp_path):
    prefix = tmp_path / "raw"
    write_indexed(prefix, [np.asarray(d, np.uint16) for d in DOCS], np.uint16)
    store = TokenStore(prefix)
    build_index(store)
    cfg = order_config(seed=3, seq_length=3, num_samples=8, batch_size=2)
    open_order(store, cfg, build=True)
    settings = Settings(prefixes=[str(prefix)], seed=3, seq_length=3, num_samples=8, batch_size=2,
                        max_locate_page=3, max_tokens_per_query=4, max_occurrences=6, sql_max_rows=5)
    with TestClient(create_app(settings)) as c:
        yield c, store, open_order(store, cfg)


def test_count_and_locate(raw):
    c, store, _ = raw
    r = c.get("/v1/ngrams/count", params={"tokens": "5,6"})
    assert r.status_code == 200 and r.json() == {"tokens": [5, 6], "count": 6}
    assert c.post("/v1/ngrams/count", json={"tokens": [6, 5, 6]}).json()["count"] == 2
    seen = []
    offset = 0
    while offset is not None:
        body = c.get("/v1/ngrams/locate", params={"tokens": "5,6", "offset": offset, "limit": 3}).json()
        assert body["count"] == 6
        seen += [(o["doc_id"], o["offset"]) for o in body["occurrences"]]
        offset = body["next_offset"]
    want = [(d, o) for d, doc in enumerate(DOCS) for o in range(len(doc) - 1) if doc[o : o + 2] == [5, 6]]
    assert sorted(seen) == want and len(seen) == 6


def test_steps_route_equals_library(raw):
    c, store, order = raw
    r = c.get("/v1/ngrams/steps", params={"tokens": "5,6", "bucket_steps": 1})
    assert r.status_code == 200
    assert r.json() == asdict(ngram_steps(NgramIndex(store), order, [5, 6], bucket_steps=1))


@pytest.mark.parametrize("url,params,status,setting", [
    ("/v1/ngrams/locate", {"tokens": "5", "limit": 4}, 413, "max_locate_page"),
    ("/v1/ngrams/count", {"tokens": "5,5,5,5,5"}, 413, "max_tokens_per_query"),
    ("/v1/ngrams/steps", {"tokens": "5"}, 413, "max_occurrences"),
    ("/v1/ngrams/count", {"tokens": "5,x"}, 400, None),
    ("/v1/ngrams/count", {}, 400, None),
    ("/v1/ngrams/count", {"text": "hello"}, 400, None),  # no tokenizer
    ("/v1/sql", {"sql": "SELECT 1", "max_rows": 6}, 413, "sql_max_rows"),
    ("/v1/sql", {"sql": "DROP VIEW x"}, 400, None),
])
def test_errors_name_their_setting(raw, url, params, status, setting):
    c, _, _ = raw
    r = c.get(url, params=params)
    assert r.status_code == status, r.json()
    assert r.json()["error"]["setting"] == setting


def test_sql_route(raw):
    c, _, _ = raw
    r = c.get("/v1/sql", params={"sql": "SELECT range AS i FROM range(10)"})
    body = r.json()
    assert body["truncated"] is True and body["rows"] == [[0], [1], [2], [3], [4]]
    r = c.post("/v1/sql", json={"sql": "SELECT 40 + 2 AS x", "max_rows": 1})
    assert r.json()["rows"] == [[42]] and r.json()["truncated"] is False


def test_preshuffled_service(tmp_path):
    rows = [[1, 2, 3, 1], [2, 3, 1, 2], [3, 3, 3, 3], [1, 2, 1, 2]]
    prefix = tmp_path / "pre"
    write_indexed(prefix, [np.asarray(r, np.uint16) for r in rows], np.uint16)
    build_index(TokenStore(prefix))
    settings = Settings(prefixes=[str(prefix)], preshuffled=True, seq_length=3, batch_size=2)
    with TestClient(create_app(settings)) as c:
        body = c.get("/v1/ngrams/steps", params={"tokens": "1,2", "bucket_steps": 1}).json()
        assert body["count"] == body["count_in_rows"] == 4
        assert body["histogram"] == [2, 2] and (body["first_step"], body["last_step"]) == (0, 1)
        assert body["count_split_by_row_boundary"] == 0


def test_sql_route_views(raw):
    c, store, order = raw
    steps = asdict(ngram_steps(NgramIndex(store), order, [5, 6], bucket_steps=1))
    r = c.get("/v1/sql", params={"sql": "SELECT step_start, occurrences FROM ngram_timeseries ORDER BY 1",
                                 "ngram_tokens": "5,6", "bucket_steps": 1})
    assert r.status_code == 200, r.json()
    hist = {row[0]: row[1] for row in r.json()["rows"]}
    assert [hist.get(i, 0) for i in range(len(steps["histogram"]))] == steps["histogram"]
    r = c.post("/v1/sql", json={"sql": "SELECT count(*) FROM row_pieces", "steps": "0:2"})
    assert r.status_code == 200, r.json()
    assert r.json()["rows"] == [[sum(len(order.spans(k)) for k in range(4))]]
    r = c.post("/v1/sql", json={"sql": "DELETE FROM x", "steps": "0:2"})
    assert r.status_code == 400


def test_batch_count_route_keeps_order_and_equals_single_counts(tmp_path):
    prefix = tmp_path / "b"
    write_indexed(prefix, [np.asarray(d, np.uint16) for d in DOCS], np.uint16)
    build_index(TokenStore(prefix))
    queries = [[5, 6], [7], [5, 6], [9, 9], [6, 5, 6, 5], [7, 7, 5]]
    with TestClient(create_app(Settings(prefixes=[str(prefix)], max_queries_per_request=6))) as c:
        r = c.post("/v1/ngrams/count", json={"queries": queries})
        assert r.status_code == 200
        single = [c.post("/v1/ngrams/count", json={"tokens": q}).json() for q in queries]
        assert r.json() == {"counts": single}
        assert [x["count"] for x in single] == [6, 4, 6, 0, 1, 1]
        r = c.post("/v1/ngrams/count", json={"queries": queries + [[5]]})
        assert r.status_code == 413 and r.json()["error"]["setting"] == "max_queries_per_request"
        r = c.post("/v1/ngrams/count", json={"queries": [[5], []]})
        assert r.status_code == 400 and "queries[1]" in r.json()["error"]["message"]
        r = c.post("/v1/ngrams/count", json={"queries": [[5]], "tokens": [5]})
        assert r.status_code == 400 and "not both" in r.json()["error"]["message"]
        assert c.post("/v1/ngrams/count", json={"queries": [[5, "6"]]}).status_code == 422
        assert c.post("/v1/ngrams/count", json={"queries": []}).json() == {"counts": []}


def test_trace_route_equals_library_and_steps(raw):
    c, store, order = raw
    c.app.state.pi.settings.max_tokens_per_query = 8
    idx = NgramIndex(store)
    passage = [5, 6, 7, 7, 5]
    r = c.post("/v1/ngrams/trace", json={"tokens": passage, "min_tokens": 1, "occurrences": 2})
    assert r.status_code == 200
    body = r.json()
    lib = asdict(idx.trace(passage, order=order, min_tokens=1, occurrences=2, max_occurrences=6))
    assert body == lib
    assert [(s["start"], s["end"]) for s in body["spans"]] == [(0, 3), (2, 5)]
    for s in body["spans"]:
        st = asdict(ngram_steps(idx, order, s["tokens"]))
        assert s["steps_computed"] and (s["first_step"], s["last_step"], s["count_in_rows"]) == (
            st["first_step"], st["last_step"], st["count_in_rows"])
    got = c.get("/v1/ngrams/trace", params={"tokens": "5,6,7,7,5", "min_tokens": 1, "occurrences": 2}).json()
    assert got == body
    r = c.post("/v1/ngrams/trace", json={"tokens": passage, "occurrences": 4})
    assert r.status_code == 413 and r.json()["error"]["setting"] == "max_locate_page"
