"""The FastAPI application: assembles routers, error handling and the lifespan that opens the stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from . import errors
from .routers import corpus, documents, ngrams, samples, sql
from .settings import Settings
from .state import open_state


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
    app.include_router(corpus.router)
    app.include_router(documents.router)
    app.include_router(samples.router)
    app.include_router(ngrams.router)
    app.include_router(sql.router)
    return app
