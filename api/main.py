"""The FastAPI application: assembles routers, error handling, the request time limit and the lifespan that
opens the stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from . import errors, explorer
from .body_limit import BodySizeLimit
from .params import StrictURL
from .routers import corpus, datasets, documents, ngrams, order, samples, sql
from .settings import Settings
from .state import AppState, open_state

ROUTERS = (corpus, documents, samples, order, ngrams, sql, datasets)


class RequestTimeLimit:
    """Pure ASGI middleware: a request still running after ``seconds`` gets a 504 naming
    ``request_timeout_s`` (if its response has not started). Heavy work runs in worker threads, which finish
    their step in the background; DuckDB queries have their own interrupt. (Starlette's BaseHTTPMiddleware
    costs far more per request: measured 725 -> see benchmarks/api_load.py.)"""

    def __init__(self, app, seconds: float):
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            async with asyncio.timeout(self.seconds):
                await self.app(scope, receive, send_tracking)
        except TimeoutError:
            if started:
                raise
            response = errors.error_response(
                504, "timeout", f"the request ran longer than request_timeout_s={self.seconds:g} s", "request_timeout_s"
            )
            await response(scope, receive, send)


def create_app(settings: Settings, state: AppState | None = None) -> FastAPI:
    """The app over ``settings``; ``state`` is what :func:`open_state` opened (`pile-index serve` opens it
    before binding its port, so a bad input is one error line, not a traceback from the lifespan)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pi = state if state is not None else open_state(settings)
        app.state.pi.sql_limiter = anyio.CapacityLimiter(settings.sql_workers)  # SQL's own bounded pool
        try:
            yield
        finally:
            app.state.pi.close()  # the corpus's DuckDB connections

    app = FastAPI(
        title="pile-index",
        version="0.1.0",
        description="Exact provenance of Pythia's training data: tokens, documents, steps, n-grams, scores.",
        lifespan=lifespan,
        docs_url=None,  # /docs is the explorer's page from the OpenAPI schema: Swagger UI and ReDoc load from a CDN
        redoc_url=None,
    )
    errors.install(app)

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)  # inside the time limit
    app.add_middleware(RequestTimeLimit, seconds=settings.request_timeout_s)
    app.add_middleware(StrictURL)
    for module in ROUTERS:
        app.include_router(module.router, responses=errors.ERROR_RESPONSES)
    explorer.install(app)
    return app
