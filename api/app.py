"""The FastAPI application: `create_app()` wires routes, errors, limits and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from api import problems
from api.routes import health, runs, workflows
from db.engine import dispose_engine, get_engine
from db.migrate import ensure_at_head
from reelflow.logs import configure_logging
from reelflow.settings import get_settings


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    configure_logging(get_settings())
    await ensure_at_head(get_engine())  # refuse to serve a database that is behind
    yield
    await dispose_engine()


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="reelflow",
        version="1",
        description="Durable short-video pipeline: start, follow, resume and retry runs.",
        lifespan=_lifespan,
    )
    problems.install(app)

    @app.middleware("http")
    async def limit_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
            return problems.problem(
                413,
                "Request body too large",
                f"bodies are limited to {settings.max_body_bytes} bytes",
                code="too_large",
            )
        return await call_next(request)

    app.include_router(runs.router)
    app.include_router(workflows.router)
    app.include_router(health.router)
    return app
