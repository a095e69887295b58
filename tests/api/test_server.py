"""Slow clients against a real uvicorn on loopback: bounded connections and a deadline for request heads.

Every socket is opened before the server starts (they wait in the listen backlog), so what the server sees
does not depend on timing; every wait is bounded by a socket timeout.
"""

from __future__ import annotations

import json
import socket
import threading

import numpy as np
import pytest

from api.main import create_app
from api.server import bind_socket, build_server, guarded_protocol
from api.settings import Settings
from pile_index import write_indexed

BASES = ["h11"]
try:
    import httptools  # noqa: F401

    BASES.append("httptools")
except ImportError:
    pass

WAIT_S = 20  # the most any socket waits for the server; the head deadline below is 1 s


def _base(name: str):
    if name == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    return HttpToolsProtocol


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (a socket timeout fails the test). A reset counts as
    the close: a server that closes a socket holding unread bytes (a partial head) sends RST after its data."""
    sock.settimeout(WAIT_S)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _error(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.fixture()
def served(tmp_path):
    """A started server factory: ``served(settings_kwargs, base) -> (port, server)``; stopped at the end."""
    write_indexed(tmp_path / "s", [np.arange(10)], np.uint16)
    running = []

    def start(base: str, sockets_before_start, **limits):
        settings = Settings(prefixes=[str(tmp_path / "s")], **limits)
        listener = bind_socket("127.0.0.1", 0)
        port = listener.getsockname()[1]
        clients = sockets_before_start(port)
        server = build_server(create_app(settings), settings, log_level="warning", base=_base(base))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        running.append((server, thread, listener))
        return server, clients

    yield start
    for server, thread, listener in running:
        server.should_exit = True
        thread.join(timeout=WAIT_S)
        listener.close()
        assert not thread.is_alive()


@pytest.mark.parametrize("base", BASES)
def test_slow_partial_headers_cannot_keep_a_real_request_out(served, base):
    max_connections, n_slow = 4, 8

    def connect(port):
        slow = []
        for _ in range(n_slow):  # a head that never ends (no blank line)
            s = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
            s.sendall(b"GET /v1/corpus HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1")
            slow.append(s)
        real = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
        real.sendall(b"GET /v1/corpus HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        return slow, real

    server, (slow, real) = served(base, connect, max_connections=max_connections, header_timeout_s=1.0)
    answer = _read_all(real)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["items"] == 1
    assert len(server.server_state.connections) <= max_connections
    # Every slow socket is closed by the server with a 408 in the one error shape: the oldest ones to make room
    # for newer connections (9 arrived, 4 fit: 5 evicted), the rest when their head deadline passed.
    settings_named = []
    for s in slow:
        status, body = _error(_read_all(s))
        assert status == 408 and set(body["error"]) == {"type", "message", "setting"}
        settings_named.append(body["error"]["setting"])
        s.close()
    assert settings_named == ["max_connections"] * 5 + ["header_timeout_s"] * 3
    real.close()


@pytest.mark.parametrize("base", BASES)
def test_silent_sockets_get_a_408_and_idle_keep_alive_ones_a_plain_close(served, base):
    def connect(port):
        silent = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)  # never sends a byte
        keep = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
        keep.sendall(b"GET /v1/corpus HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # keep-alive, then idle
        return silent, keep

    _, (silent, keep) = served(base, connect, header_timeout_s=1.0)
    status, body = _error(_read_all(silent))  # connected, never sent a byte
    assert status == 408 and body["error"]["setting"] == "header_timeout_s"
    answer = _read_all(keep)  # one 200, then closed at the head deadline of the next (never sent) request
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1") == 1
    silent.close()
    keep.close()


@pytest.mark.parametrize("base", BASES)
def test_an_upgrade_request_is_plain_http(served, base):
    def connect(port):
        s = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
        s.sendall(b"GET /v1/corpus HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        return s

    _, s = served(base, connect, header_timeout_s=1.0)
    assert _read_all(s).startswith(b"HTTP/1.1 200 ")  # no WebSocket protocol outside the connection bounds
    s.close()


def test_settings_route_lists_the_connection_limits(tmp_path):
    from fastapi.testclient import TestClient

    write_indexed(tmp_path / "s", [np.arange(10)], np.uint16)
    with TestClient(create_app(Settings(prefixes=[str(tmp_path / "s")], max_connections=7))) as c:
        names = {s["name"]: s for s in c.get("/v1/settings").json()}
    assert names["max_connections"]["value"] == 7 and names["max_connections"]["help"]
    assert names["header_timeout_s"]["value"] == 10.0 and names["header_timeout_s"]["help"]


def test_guarded_protocol_keeps_the_base_behaviour():
    from uvicorn.protocols.http.h11_impl import H11Protocol

    cls = guarded_protocol(Settings(), H11Protocol)
    assert issubclass(cls, H11Protocol) and cls.__name__ == "GuardedH11Protocol"
