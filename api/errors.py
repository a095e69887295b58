"""One JSON error shape for every error, pinned by a test.

``{"error": {"type": "not_found", "message": "...", "setting": null}}`` with the status from ``STATUS``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pile_index.errors import (
    ConfigError,
    FormatError,
    LimitError,
    NotFoundError,
    PileIndexError,
    QueryError,
)

log = logging.getLogger(__name__)

STATUS: dict[type[PileIndexError], tuple[int, str]] = {
    NotFoundError: (404, "not_found"),
    QueryError: (400, "bad_query"),
    LimitError: (413, "limit_exceeded"),
    ConfigError: (400, "bad_config"),
    FormatError: (500, "bad_store"),
}


def error_response(status: int, kind: str, message: str, setting: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"type": kind, "message": message, "setting": setting}})


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

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "http_error"
        return error_response(exc.status_code, kind, str(exc.detail))
