"""/v1/sql under hostile input: bounded body and SQL text before any parsing, bounded answer bytes, every
failure the one JSON error shape, exact values, no server path in answers, and no work after a 504."""

from __future__ import annotations

import json
import socket
import threading

import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from pile_index.sql import engine as sql_mod
from pile_index.format import write_indexed


def _app(tmp_path, **limits):
    write_indexed(tmp_path / "s", [np.arange(10, dtype=np.uint16), np.arange(5, dtype=np.uint16)], np.uint16)
    return create_app(Settings(prefixes=[str(tmp_path / "s")], **limits))


def _error(r, status, setting=None):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "setting"}
    assert body["error"]["setting"] == setting
    return body["error"]["message"]


@pytest.fixture()
def client(tmp_path):
    with TestClient(_app(tmp_path, max_body_bytes=10_000, max_sql_chars=1_000, max_response_bytes=5_000)) as c:
        yield c


def test_body_is_bounded_before_parsing_on_every_post_route(client):
    big = json.dumps({"sql": "SELECT " + "(" * 6000 + "1" + ")" * 6000})
    msg = _error(client.post("/v1/sql", content=big, headers={"content-type": "application/json"}), 413,
                 "max_body_bytes")
    assert "12,0" in msg and "max_body_bytes=10,000" in msg
    _error(client.post("/v1/ngrams/count", content=json.dumps({"tokens": [1] * 5000}),
                       headers={"content-type": "application/json"}), 413, "max_body_bytes")

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(20):
            yield b" " * 1000
    _error(client.post("/v1/sql", content=chunks(), headers={"content-type": "application/json"}), 413,
           "max_body_bytes")
    # Under the bound, the body reaches the route as it was sent (streamed or not).
    r = client.post("/v1/sql", content=iter([b'{"sql": "SELECT', b' 41 + 1"}']),
                    headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["rows"] == [[42]]


def test_sql_text_is_bounded(client):
    _error(client.post("/v1/sql", json={"sql": "SELECT " + "(" * 2000 + "1" + ")" * 2000}), 413, "max_sql_chars")
    _error(client.get("/v1/sql", params={"sql": "SELECT 1 -- " + "x" * 1000}), 413, "max_sql_chars")


def test_input_faults_are_4xx_in_the_one_shape(client):
    r = client.post("/v1/sql", content='{"sql": "SELECT \'\\ud800\'"}', headers={"content-type": "application/json"})
    assert "lone surrogate" in _error(r, 422)  # the body schema (valid Unicode text) refuses it before the SQL engine
    _error(client.post("/v1/sql", json={"sql": "SELECT 1; SELECT 2"}), 400)
    _error(client.post("/v1/sql", json={"sql": "SELECT current_setting('allowed_paths')"}), 400)
    msg = _error(client.post("/v1/sql", json={"sql": "SELECT * FROM composition"}), 400)
    assert "steps=A:B" in msg and "pg_" not in msg


def test_values_out_of_python_range_are_exact(client):
    r = client.post("/v1/sql", json={"sql": "SELECT DATE 'infinity', TIMESTAMP '294247-01-10 04:00:54', "
                                            "DATE '-5000-01-01', 'NaN'::DOUBLE, 123::VARINT, TIME '24:00:00', "
                                            "TIMETZ '12:00:00+05'"})
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [["infinity", "294247-01-10 04:00:54", "5001-01-01 (BC)", "NaN", 123, "24:00:00",
                                 "12:00:00+05"]]
    assert "NaN," not in r.text  # strict JSON


def test_answer_bytes_are_bounded(client):
    _error(client.get("/v1/sql", params={"sql": "SELECT repeat('€', 10000) FROM range(4)"}), 413,
           "max_response_bytes")
    _error(client.get("/v1/sql", params={"sql": "SELECT range, 'some text' FROM range(1000)"}), 413,
           "max_response_bytes")


def test_no_server_path_in_answers(tmp_path):
    with TestClient(_app(tmp_path)) as c:
        text = c.get("/v1/sql", params={"sql": "SELECT * FROM duckdb_views()"}).text
        text += c.get("/v1/sql", params={"sql": "SHOW ALL TABLES"}).text
        text += c.get("/v1/sql", params={"sql": "SELECT current_setting('allowed_paths')"}).text
    assert str(tmp_path) not in text


def test_request_time_limit_stops_the_query(tmp_path, monkeypatch):
    """The 504 of request_timeout_s interrupts DuckDB: the worker ends long before sql_timeout_s."""
    finished = threading.Event()
    real = sql_mod.run_sql

    def watched(*a, **k):
        try:
            return real(*a, **k)
        finally:
            finished.set()
    monkeypatch.setattr("api.routers.sql.run_sql", watched)
    with TestClient(_app(tmp_path, request_timeout_s=0.5, sql_timeout_s=600)) as c:
        r = c.get("/v1/sql", params={"sql": "SELECT count(*) FROM range(1000000000000) a, range(1000) b"})
        _error(r, 504, "request_timeout_s")
        assert finished.wait(60), "the query kept running after the 504"


def test_real_server_refuses_a_huge_body_unparsed(tmp_path):
    """Against uvicorn on loopback: 2 MB of parentheses is refused from its Content-Length alone (the answer
    comes before a byte of the body is sent), and the next request is answered."""
    server = uvicorn.Server(uvicorn.Config(_app(tmp_path), host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                pytest.fail("uvicorn did not start")
            thread.join(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        body = json.dumps({"sql": "SELECT " + "(" * 1_000_000 + "1" + ")" * 1_000_000}).encode()
        status, answer = _http(port, b"POST /v1/sql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
        assert status == 413 and json.loads(answer)["error"]["setting"] == "max_body_bytes"
        status, answer = _http(port, b"GET /v1/sql?sql=SELECT%201 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status == 200 and json.loads(answer)["rows"] == [[1]]
    finally:
        server.should_exit = True
        thread.join(30)


def _http(port: int, head: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


def test_sql_runs_on_its_own_bounded_pool_and_one_reused_sandbox(tmp_path, monkeypatch):
    """sql_workers bounds the SQL worker threads (a limiter apart from the other routes' pool), and every query
    runs on the one sandbox the service made."""
    seen = []
    real_run, real_box = sql_mod.run_sql, sql_mod.SqlSandbox
    made = []

    def watched(*a, **k):
        seen.append((pi.sql_limiter.total_tokens, pi.sql_limiter.borrowed_tokens, k["sandboxes"] is pi.sql))
        return real_run(*a, **k)

    def counted(*a, **k):
        made.append(1)
        return real_box(*a, **k)
    monkeypatch.setattr("api.routers.sql.run_sql", watched)
    monkeypatch.setattr(sql_mod, "SqlSandbox", counted)
    app = _app(tmp_path, sql_workers=1)
    with TestClient(app) as c:
        pi = app.state.pi
        assert {s["name"]: s["value"] for s in c.get("/v1/settings").json()}["sql_workers"] == 1
        for i in range(3):
            assert c.get("/v1/sql", params={"sql": f"SELECT {i}"}).json()["rows"] == [[i]]
    assert seen == [(1, 1, True)] * 3 and made == [1]
