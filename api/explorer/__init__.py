"""The training-data explorer: HTML pages over the same service as ``/v1``, rendered on the server.

``/`` overview, ``/steps/{step}``, ``/samples/{step}/{slot}``, ``/documents/{doc_id}``, ``/ngrams``,
``/datasets/{name}``, ``/sql`` and ``/docs`` (the API reference, from the OpenAPI schema). Everything a page
needs ships in this package (templates/, static/: one CSS file, one small script); no CDN, no build step.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .pages import not_found_page, router
from .render import error_page, wants_html

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Add the pages and their static files to ``app``; a browser asking for a page that does not exist gets
    an HTML error page, an API client keeps the JSON error shape."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    json_handler = app.exception_handlers.get(StarletteHTTPException)

    async def http_error(request: Request, exc: StarletteHTTPException):
        if wants_html(request) and exc.status_code in (404, 405):
            if exc.status_code == 404:
                return not_found_page(request.url.path)
            return error_page(405, "http_error", f"{request.method} is not allowed on {request.url.path}; "
                              f"pages answer GET")
        return await json_handler(request, exc)

    if json_handler is not None:
        app.add_exception_handler(StarletteHTTPException, http_error)


__all__ = ["install", "router"]
