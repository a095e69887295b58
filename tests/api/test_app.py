"""The API skeleton: lifespan opens the store, /v1/corpus, /v1/documents, one error shape, OpenAPI."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from pile_index import write_indexed


@pytest.fixture()
def client(tmp_path):
    write_indexed(tmp_path / "s", [np.array([5, 0, 7]), np.arange(300) % 50], np.uint16)
    app = create_app(Settings(prefixes=[str(tmp_path / "s")], max_document_tokens=100))
    with TestClient(app) as c:
        yield c


def test_corpus(client):
    r = client.get("/v1/corpus")
    assert r.status_code == 200
    body = r.json()
    assert body["items"] == 2 and body["tokens"] == 303 and body["dtype"] == "uint16"
    assert body["has_documents_table"] is False and body["eod_count"] is None  # not scanned yet


def test_document_and_paging(client):
    r = client.get("/v1/documents/0")
    assert r.status_code == 200
    assert r.json() == {"doc_id": 0, "n_tokens": 3, "offset": 0, "tokens": [5, 0, 7], "text": None, "metadata": None}
    r = client.get("/v1/documents/1", params={"offset": 250})
    assert r.json()["tokens"] == [t % 50 for t in range(250, 300)]
    r = client.get("/v1/documents/1")
    assert len(r.json()["tokens"]) == 100  # capped at max_document_tokens


@pytest.mark.parametrize(
    "url,status,kind,setting",
    [
        ("/v1/documents/2", 404, "not_found", None),
        ("/v1/documents/-1", 422, "invalid_request", None),
        ("/v1/documents/99999999999999999999999", 422, "invalid_request", None),
        ("/v1/documents/abc", 422, "invalid_request", None),
        ("/v1/documents/1?limit=101", 413, "limit_exceeded", "max_document_tokens"),
        ("/v1/nowhere", 404, "not_found", None),
    ],
)
def test_one_error_shape(client, url, status, kind, setting):
    r = client.get(url)
    assert r.status_code == status
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "setting"}
    assert body["error"]["type"] == kind and body["error"]["setting"] == setting
    assert body["error"]["message"]


def test_openapi_and_settings(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/corpus" in paths and "/v1/documents/{doc_id}" in paths
    names = {s["name"]: s for s in client.get("/v1/settings").json()}
    assert names["max_document_tokens"]["value"] == 100 and names["sql_max_rows"]["help"]


def test_request_time_limit_names_the_setting(tmp_path):
    write_indexed(tmp_path / "s", [np.arange(10)], np.uint16)
    app = create_app(Settings(prefixes=[str(tmp_path / "s")], request_timeout_s=1e-9))
    with TestClient(app) as c:
        r = c.get("/v1/documents/0")
    assert r.status_code == 504
    assert r.json()["error"] == {
        "type": "timeout", "message": "the request ran longer than request_timeout_s=1e-09 s", "setting": "request_timeout_s",
    }


@pytest.mark.parametrize(
    "body",
    [
        b'{"text": "\\ud800"}',  # a lone surrogate as a JSON escape
        b'{"text": "\xed\xa0\x80"}',  # the same as raw bytes (Python's JSON reader lets them through)
        b'{"text": "ok\\udc00"}',
    ],
)
@pytest.mark.parametrize("route", ["/v1/ngrams/count", "/v1/ngrams/locate", "/v1/ngrams/steps"])
def test_lone_surrogates_are_a_422_in_the_one_shape(client, route, body):
    r = client.post(route, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert err["type"] == "invalid_request" and "body.text" in err["message"] and "lone surrogate" in err["message"]


@pytest.mark.parametrize("url", ["/v1/ngrams/count?text=%ED%A0%80", "/v1/documents/%FF", "/v1/documents/0?x=%C3"])
def test_invalid_utf8_in_the_url_is_refused_not_replaced(client, url):
    r = client.get(url)  # decoded with errors="replace", %ED%A0%80 would be counted as three U+FFFD
    assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request"
    assert "not valid UTF-8" in r.json()["error"]["message"]


@pytest.mark.parametrize("tokens", ["[false]", '["0"]', "[0.0]", "[true, 1]", '[1, "2"]'])
def test_body_token_ids_are_strict_json_integers(client, tokens):
    r = client.post("/v1/ngrams/count", content=f'{{"tokens": {tokens}}}', headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text  # today: read as 0 (or 1, 2) and answered
    assert r.json()["error"]["type"] == "invalid_request" and "body.tokens" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "url,param",
    [
        ("/v1/documents/1_0", "path.doc_id"),
        ("/v1/documents/%2B1", "path.doc_id"),
        ("/v1/documents/%201", "path.doc_id"),
        ("/v1/documents/1%20", "path.doc_id"),
        ("/v1/documents/%D9%A1", "path.doc_id"),  # Arabic-Indic 1
        ("/v1/documents/%EF%BC%91", "path.doc_id"),  # full-width 1
        ("/v1/documents/1?offset=1_0", "query.offset"),
        ("/v1/documents/1?offset=%2B5", "query.offset"),
        ("/v1/documents/1?limit=%205", "query.limit"),
        ("/v1/documents/1?limit=", "query.limit"),
        ("/v1/ngrams/locate?tokens=1&offset=%2B1", "query.offset"),
        ("/v1/batches/0?to=1_0", "query.to"),
    ],
)
def test_url_integers_are_ascii_digits_only(client, url, param):
    r = client.get(url)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"].startswith(param + ": ") and "ASCII digits" in r.json()["error"]["message"]


@pytest.mark.parametrize("tokens", ["1_000", "%2B1", "1%202", "%D9%A1", "%EF%BC%91", "1,,2", "1,"])
def test_url_token_lists_are_ascii_digits_only(client, tokens):
    r = client.get(f"/v1/ngrams/count?tokens={tokens}")
    assert r.status_code == 400, r.text  # refused before the index is opened (this store has none: 404)
    assert r.json()["error"]["type"] == "bad_query" and "ASCII digits" in r.json()["error"]["message"]


def test_every_integer_parameter_is_strict():
    """Pins the rule for routes added later: every int path/query parameter carries params.ASCII_INT."""
    from fastapi.routing import APIRoute

    from api.main import ROUTERS
    from api.params import ASCII_INT

    checked = 0
    for module in ROUTERS:
        for route in module.router.routes:
            if not isinstance(route, APIRoute):
                continue
            for param in route.dependant.path_params + route.dependant.query_params:
                if "int" in str(param.field_info.annotation):
                    assert ASCII_INT in param.field_info.metadata, f"{route.path}: parameter {param.name}"
                    checked += 1
    assert checked >= 10


def test_an_unexpected_fault_is_a_500_in_the_one_shape(client, monkeypatch):
    from pile_index import Corpus

    def boom(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Corpus, "document", boom)  # the one core call of /v1/documents/{doc_id}
    with TestClient(client.app, raise_server_exceptions=False) as c:
        r = c.get("/v1/documents/0")
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    assert r.json() == {"error": {"type": "internal_error", "setting": None,
                                  "message": "internal error (RuntimeError); the server log has the details"}}
