"""The FastAPI application: assembles routers, error handling, the request time limit and the lifespan that
opens the stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from . import errors
from .routers import corpus, datasets, documents, ngrams, samples, sql
from .settings import Settings
from .state import open_state

ROUTERS = (corpus, documents, samples, ngrams, sql, datasets)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pi = open_state(settings)
        yield

    app = FastAPI(
        title="pile-index",
        version="0.1.0",
        description="Exact provenance of Pythia's training data: tokens, documents, steps, n-grams, scores.",
        lifespan=lifespan,
    )
    errors.install(app)

    @app.middleware("http")
    async def request_time_limit(request: Request, call_next):
        # Heavy work runs in worker threads; past the limit the client gets a 504 naming the setting
        # (the thread finishes its step in the background; DuckDB queries have their own interrupt).
        try:
            return await asyncio.wait_for(call_next(request), timeout=settings.request_timeout_s)
        except TimeoutError:
            return errors.error_response(
                504, "timeout", f"the request ran longer than request_timeout_s={settings.request_timeout_s:g} s",
                "request_timeout_s",
            )

    for module in ROUTERS:
        app.include_router(module.router, responses=errors.ERROR_RESPONSES)
    return app
