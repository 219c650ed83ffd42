"""The FastAPI application: `create_app()` wires routes, errors, limits and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


class BodyLimit:
    """Refuse bodies over `limit` bytes with 413, whether or not Content-Length says so:
    a body without one (chunked) is read up to the limit before the app sees it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.limit:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size, more = 0, True
        while more:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
        replay = iter(messages)

        async def replayed() -> Message:
            return next(replay, None) or await receive()

        await self.app(scope, replayed, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problems.problem(
            413,
            "Request body too large",
            f"bodies are limited to {self.limit} bytes",
            code="too_large",
        )
        await response(scope, receive, send)


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="reelflow",
        version="1",
        description="Durable short-video pipeline: start, follow, resume and retry runs.",
        lifespan=_lifespan,
    )
    problems.install(app)

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.include_router(runs.router)
    app.include_router(workflows.router)
    app.include_router(health.router)
    return app
