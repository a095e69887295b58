"""The HTTP server: uvicorn with bounded connections and a deadline for each request head.

uvicorn bounds neither how many connections it holds nor how long a client may take to send a request's
headers (its keep-alive timer is cancelled by any byte), so clients that open sockets and drip partial
headers held every file descriptor and real requests failed (measured: 20,000 such sockets, ~37 s of
failures). Here the protocol (uvicorn's own, subclassed) adds two named settings:

- ``header_timeout_s``: a connection waiting for a request head (a new one, or a keep-alive one after a
  response) must complete it within this time, or it is closed: with a 408 in the one JSON error shape, or
  silently when it is an idle keep-alive connection (no byte since its last response, so a 408 could be
  mistaken for the answer to a request the client is about to send). Bytes arriving slowly do not extend
  the deadline.
- ``max_connections``: when a new connection would exceed it, the connection that has waited longest for
  its head is closed (408) to make room; only when every other connection is busy inside a request is the
  new one refused (503). A slow client can therefore never keep a prompt one out.

At start the process's open-file soft limit is raised to its hard limit, and ``max_connections`` must fit
in it. The body and the application's time are bounded elsewhere (``request_timeout_s``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import socket
from collections import OrderedDict
from typing import Any

from pile_index.errors import ConfigError

from .errors import error_content
from .settings import Settings

log = logging.getLogger(__name__)

FD_RESERVE = 128  # descriptors kept for the store, index maps, Parquet/DuckDB files and the listening socket

_REASONS = {408: "Request Timeout", 503: "Service Unavailable"}


def _raw_error(status: int, kind: str, message: str, setting: str) -> bytes:
    body = json.dumps(error_content(kind, message, setting)).encode()
    head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


def guarded_protocol(settings: Settings, base: type[asyncio.Protocol] | None = None) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (``base``, default the one uvicorn would pick) with the head deadline
    and the connection bound of ``settings``; pass it as ``uvicorn.Config(http=...)``."""
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        base = AutoHTTPProtocol
    max_connections, header_timeout_s = settings.max_connections, settings.header_timeout_s
    # Connections waiting for a request head, oldest first: the eviction order.
    waiting: OrderedDict[Any, None] = OrderedDict()

    class GuardedProtocol(base):  # type: ignore[valid-type, misc]
        _head_timer: asyncio.TimerHandle | None = None
        _idle_keep_alive = False  # armed after a response, and no byte received since

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()
            if len(self.connections) > max_connections:
                oldest = next(iter(waiting))
                if oldest is self:  # every other connection is inside a request: refuse this one
                    self._refuse(503, "overloaded", f"the server holds max_connections={max_connections:,} "
                                 f"connections, all busy; retry shortly", "max_connections")
                else:
                    oldest._refuse(408, "timeout", f"closed to make room: the server holds max_connections="
                                   f"{max_connections:,} connections and this one had not sent a complete "
                                   f"request head", "max_connections")

        def data_received(self, data: bytes) -> None:
            self._idle_keep_alive = False
            cycle = self.cycle
            super().data_received(data)
            if self.cycle is not cycle:  # a request head is complete: the application's time limits take over
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # idle keep-alive: the next head has the same deadline
                self._idle_keep_alive = True

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_timeout)
            waiting[self] = None

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            waiting.pop(self, None)

        def _head_timeout(self) -> None:
            self._head_timer = None
            self._refuse(408, "timeout", f"no complete request head within header_timeout_s={header_timeout_s:g} s",
                         "header_timeout_s")

        def _refuse(self, status: int, kind: str, message: str, setting: str) -> None:
            """Close the connection, answering in the one error shape unless it is an idle keep-alive one."""
            self._disarm()
            self.connections.discard(self)  # no longer counts against max_connections while it closes
            if self.transport.is_closing():
                return
            if not self._idle_keep_alive:
                self.transport.write(_raw_error(status, kind, message, setting))
            self.transport.close()

    GuardedProtocol.__name__ = GuardedProtocol.__qualname__ = f"Guarded{base.__name__}"
    return GuardedProtocol


def raise_fd_limit(max_connections: int) -> int:
    """Raise the open-file soft limit to the hard limit; ConfigError if ``max_connections`` cannot fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (hard, 65_536):  # macOS reports an unlimited hard limit that setrlimit refuses
        if target == resource.RLIM_INFINITY or target <= soft:
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as e:
            log.debug("open-file limit %d not accepted: %s", target, e)
            continue
        soft = target
        break
    if max_connections + FD_RESERVE > soft:
        raise ConfigError(f"max_connections={max_connections:,} needs {max_connections + FD_RESERVE:,} open files "
                          f"and this process may open {soft:,} (ulimit -n): lower max_connections or raise the limit")
    return soft


def bind_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port``; ConfigError naming the address if it cannot be had."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise ConfigError(f"host {host!r}: cannot be resolved ({e}); pass an address such as 127.0.0.1") from e
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another port, or stop "
                          f"the process that holds it") from e
    return sock


def build_server(app: Any, settings: Settings, log_level: str = "info", base: type[asyncio.Protocol] | None = None):
    """A ``uvicorn.Server`` for ``app`` with the guarded protocol; run it with ``.run(sockets=[sock])``.
    uvicorn's loggers keep the process's handlers (``log_config=None``): one channel, one format. The API has
    no WebSocket route, so upgrades are not offered (``ws="none"``): one protocol to bound, not two."""
    import uvicorn

    config = uvicorn.Config(app, http=guarded_protocol(settings, base), ws="none", log_level=log_level,
                            log_config=None, lifespan="on")
    return uvicorn.Server(config)
