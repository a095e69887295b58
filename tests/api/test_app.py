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
