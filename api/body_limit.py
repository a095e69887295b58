"""Pure ASGI middleware: a request body over ``max_body_bytes`` is refused with 413 before any route reads
or parses it (a declared ``Content-Length`` at once; a chunked body as soon as the bytes received pass it).
Requests without a body pass straight through."""

from __future__ import annotations

from . import errors


class BodySizeLimit:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _refusal(self, size: str):
        return errors.error_response(
            413, "limit_exceeded",
            f"the request body is {size} bytes; at most max_body_bytes={self.max_bytes:,} are read",
            "max_body_bytes")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = chunked = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = value
        if length is None and chunked is None:  # no body (HTTP/1.1 framing)
            await self.app(scope, receive, send)
            return
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refusal(f"{int(length):,}")(scope, receive, send)
            return
        # Read the body here, counting, then hand it to the app as one message.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it
                await self.app(scope, _replay([message], receive), send)
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._refusal(f"more than {self.max_bytes:,}")(scope, receive, send)
                return
            chunks.append(body)
            more = message.get("more_body", False)
        await self.app(scope, _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}],
                                      receive), send)


def _replay(messages: list[dict], receive):
    async def replay() -> dict:
        if messages:
            return messages.pop(0)
        return await receive()
    return replay
