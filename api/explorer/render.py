"""HTML rendering for the explorer: the Jinja2 environment (autoescaped templates shipped in the package),
number formats, the colour of each source, and the error page every explorer route answers with.

Explorer routes use :class:`ExplorerRoute`: a ``PileIndexError`` (or a bad path/query parameter) raised while
building a page becomes a readable HTML page with the same status and message the ``/v1`` routes give as JSON
(the one error shape, shown on the page too), never a stack trace.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from pile_index.errors import PileIndexError

from .. import errors

log = logging.getLogger(__name__)

# Okabe-Ito (colour-blind safe), then Tableau 10's remaining hues; (strong, light) per source.
PALETTE: list[tuple[str, str]] = [
    ("#0072b2", "#d6e9f7"), ("#e69f00", "#fcebc6"), ("#009e73", "#cdefe3"), ("#cc79a7", "#f5dcea"),
    ("#d55e00", "#f9dbc7"), ("#56b4e9", "#dcf0fb"), ("#8c6d31", "#ece3cf"), ("#7b4fa0", "#e6dbf0"),
    ("#b8a300", "#f4efc4"), ("#3d8b3d", "#d8ecd8"),
]
UNKNOWN_COLOR = ("#8a8a8a", "#e6e6e6")


def fmt_num(v: Any) -> str:
    """Integers with thousands separators; floats to 4 significant decimals; None as an en dash."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        return f"{v:,.4f}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)


def fmt_pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def raw(v: Any) -> str:
    """The exact value for a ``data-value`` attribute: JSON, so tests compare it with the API's answer."""
    return json.dumps(v, ensure_ascii=False)


class Palette:
    """Source name -> colour, fixed by the corpus' source order (largest first) so every page agrees."""

    def __init__(self, names: list[str]):
        self.index = {n: i for i, n in enumerate(names)}

    def pair(self, name: str | None) -> tuple[str, str]:
        i = self.index.get(name) if name is not None else None
        if i is None:
            return UNKNOWN_COLOR
        return PALETTE[i % len(PALETTE)]

    def strong(self, name: str | None) -> str:
        return self.pair(name)[0]

    def light(self, name: str | None) -> str:
        return self.pair(name)[1]


ENV = Environment(
    loader=PackageLoader("api.explorer", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
def oneline(text: str) -> str:
    """Context on one line: each line break shown as a visible ↵."""
    return text.replace("\r\n", "\n").replace("\n", "↵ ")


ENV.filters.update(num=fmt_num, pct=fmt_pct, raw=raw, oneline=oneline)


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("nav", "")
    return HTMLResponse(ENV.get_template(template).render(**context), status_code=status)


def status_of(exc: PileIndexError) -> tuple[int, str]:
    """The status and error type the ``/v1`` routes give ``exc`` (api/errors.py STATUS, by class)."""
    for cls in type(exc).__mro__:
        if cls in errors.STATUS:
            return errors.STATUS[cls]  # type: ignore[index]
    return 500, "error"


FIXES = {
    "not_found": "Check the number against the ranges on the overview page, or search from there.",
    "bad_query": "Correct the value named in the message and try again.",
    "bad_config": "The service was started without what this page needs: restart `pile-index serve` with the "
                  "option the message names.",
    "limit_exceeded": "Ask for less (page, narrow the range), or restart the service with the setting raised "
                      "(`/v1/settings` lists them).",
    "invalid_request": "A path or query parameter is not a valid value; the message names it.",
    "bad_store": "A file on disk is not what it claims; the message names it and how to rebuild it.",
    "internal_error": "A fault of the service, not of your request; the server log has the details.",
}


def error_page(status: int, kind: str, message: str, setting: str | None = None) -> HTMLResponse:
    body = {"error": {"type": kind, "message": message, "setting": setting}}  # the /v1 routes' one shape
    return page("error.html", status=status, title=f"{status} {kind}", code=status, kind=kind, message=message,
                setting=setting, fix=FIXES.get(kind, ""), shape=json.dumps(body, indent=2, ensure_ascii=False))


def exception_page(request: Request, exc: Exception) -> HTMLResponse:
    if isinstance(exc, PileIndexError):
        status, kind = status_of(exc)
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return error_page(status, kind, str(exc), getattr(exc, "setting", None))
    if isinstance(exc, RequestValidationError):
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return error_page(422, "invalid_request", "; ".join(parts))
    log.error("%s %s: unexpected %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
    return error_page(500, "internal_error", f"internal error ({type(exc).__name__}); the server log has the details")


class ExplorerRoute(APIRoute):
    """A page route: errors raised while building the page answer as an HTML error page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except (PileIndexError, RequestValidationError) as e:
                return exception_page(request, e)
            except StarletteHTTPException:
                raise  # the app's handler answers (HTML for a browser, see install)
            except Exception as e:  # a fault of ours: logged with its traceback, a readable 500 page to the user
                return exception_page(request, e)

        return route


def wants_html(request: Request) -> bool:
    """A browser asking for a page (not an API client, not a /v1 route)."""
    path = request.url.path
    return not (path.startswith("/v1/") or path == "/v1" or path == "/openapi.json") and \
        "text/html" in request.headers.get("accept", "")
