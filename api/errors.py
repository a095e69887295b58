"""One JSON error shape for every error, pinned by a test.

``{"error": {"type": "not_found", "message": "...", "setting": null}}`` with the status from ``STATUS``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from pile_index.errors import (
    ConfigError,
    FormatError,
    LimitError,
    NotFoundError,
    PileIndexError,
    QueryError,
)

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    type: str
    message: str
    setting: str | None = None


class ErrorBody(BaseModel):
    """The one error shape of the API."""

    error: ErrorDetail


# Declared on every route so the OpenAPI schema documents the errors a client can get.
ERROR_RESPONSES: dict[int | str, dict] = {
    400: {"model": ErrorBody, "description": "bad query or option (type bad_query / bad_config)"},
    404: {"model": ErrorBody, "description": "no such document, sample, dataset or route (type not_found)"},
    413: {"model": ErrorBody, "description": "a named limit was hit; `setting` names it (type limit_exceeded)"},
    422: {"model": ErrorBody, "description": "the request does not match the route's parameters (type invalid_request)"},
    500: {"model": ErrorBody, "description": "the store on disk is not what it claims (type bad_store), or a "
                                             "fault of the service (type internal_error)"},
    504: {"model": ErrorBody, "description": "the request ran past request_timeout_s (type timeout)"},
}

STATUS: dict[type[PileIndexError], tuple[int, str]] = {
    NotFoundError: (404, "not_found"),
    QueryError: (400, "bad_query"),
    LimitError: (413, "limit_exceeded"),
    ConfigError: (400, "bad_config"),
    FormatError: (500, "bad_store"),
}


def error_content(kind: str, message: str, setting: str | None = None) -> dict:
    """The one error shape. A lone surrogate in the message (echoed from a client's input) is written as
    ``\\udXXX`` so the body always encodes as UTF-8."""
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return {"error": {"type": kind, "message": message, "setting": setting}}


def error_response(status: int, kind: str, message: str, setting: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_content(kind, message, setting), headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(PileIndexError)
    async def _pile_index_error(request: Request, exc: PileIndexError) -> JSONResponse:
        for cls in type(exc).__mro__:
            if cls in STATUS:
                status, kind = STATUS[cls]  # type: ignore[index]
                break
        else:
            status, kind = 500, "error"
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return error_response(status, kind, str(exc), getattr(exc, "setting", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()))
            parts.append(f"{loc}: {err.get('msg')}")
        return error_response(422, "invalid_request", "; ".join(parts))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Last resort (Starlette's ServerErrorMiddleware calls it): a fault of ours, still the one shape; the
        # traceback goes to the server log, never to the client.
        log.error("%s %s: unexpected %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
        return error_response(500, "internal_error", f"internal error ({type(exc).__name__}); the server log has "
                              f"the details")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "http_error"
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # RFC 9110: `Allow` lists every method of the resource; Starlette names only the first route's.
            methods = set()
            for route in app.routes:
                match, _ = route.matches({"type": "http", "path": request.url.path, "method": ""})
                if match != Match.NONE and getattr(route, "methods", None):
                    methods |= set(route.methods)
            headers["Allow"] = ", ".join(sorted(methods))
        return error_response(exc.status_code, kind, str(exc.detail), headers=headers or None)
