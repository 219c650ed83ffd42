"""The FastAPI application: `create_app()` wires routes, errors, limits and lifespan."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from prometheus_fastapi_instrumentator import Instrumentator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import auth, openapi, problems, security, ui, uploads
from api.routes import (
    admin,
    artifacts,
    assets,
    health,
    history,
    pools,
    revisions,
    runs,
    steps,
    workers,
    workflows,
)
from db import repository as repo
from db.engine import dispose_engine, get_engine
from db.migrate import ensure_at_head
from reelflow import logs, tracing
from reelflow.logs import configure_logging
from reelflow.settings import get_settings
from steps.engine import slots
from workflows.definition.registry import all_workflows
from workflows.watch.stream import RunWatcher

access_log = structlog.get_logger("reelflow.api.access")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    configure_logging(get_settings())
    await ensure_at_head(get_engine())  # refuse to serve a database that is behind
    slots.check_pools(list(all_workflows_steps()))  # every step's pool is declared
    async with get_engine().begin() as conn:
        await repo.sync_slots(conn, sizes=get_settings().pool_sizes())
    app.state.watcher = RunWatcher()  # one per process, for every event stream
    yield
    await app.state.watcher.close()
    await dispose_engine()
    tracing.flush()


def all_workflows_steps() -> list[Any]:
    """The specs of every step of every workflow this deployment runs."""
    return [w.spec(name) for w in all_workflows().values() for name in w.step_names]


class BodyLimit:
    """Refuse bodies over `limit` bytes with 413, whether or not Content-Length says so:
    a body without one (chunked) is read up to the limit before the app sees it. The
    `streamed` routes (POST path -> their own limit) read their bodies as they stream and
    enforce that limit themselves: only a Content-Length over it is refused here."""

    def __init__(self, app: ASGIApp, limit: int, streamed: dict[str, int] | None = None) -> None:
        self.app, self.limit, self.streamed = app, limit, streamed or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        own = self.streamed.get(scope["path"]) if scope["method"] == "POST" else None
        if length is not None or own is not None:
            limit = own or self.limit
            if length is not None and (not length.isdigit() or int(length) > limit):
                await self._refuse(scope, receive, send, limit)
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
                await self._refuse(scope, receive, send, self.limit)
                return
        replay = iter(messages)

        async def replayed() -> Message:
            return next(replay, None) or await receive()

        await self.app(scope, replayed, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problems.problem(
            413, "Request body too large", f"bodies are limited to {limit} bytes", code="too_large"
        )
        await response(scope, receive, send)


def _acceptable_request_id(value: str) -> bool:
    """A caller's own request id is kept when it is short and plain (else one is made)."""
    return bool(_REQUEST_ID.fullmatch(value))


def _request_id(logger: Any, method: str, event: logs.Event) -> logs.Event:
    rid = correlation_id.get()
    if rid:
        event.setdefault("request_id", rid)
    return event


class AccessLog:
    """One structured line per request (method, path, status, duration), with its request
    id, in place of uvicorn's plain-text access log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            access_log.info(
                "http_request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )


def _operation_id(route: APIRoute) -> str:
    """Operation ids a generated client can use: the handler's name (`create_run`)."""
    return route.name


def create_app() -> FastAPI:
    settings = get_settings()
    # /docs (Swagger UI 5, which reads OpenAPI 3.1) and /redoc, their assets served from
    # the fastapi-offline package under /docs-assets: no CDN, so they work offline.
    app = FastAPIOffline(
        title="reelflow",
        version="1",
        description="Durable short-video pipeline: start, follow, resume and retry runs.",
        lifespan=_lifespan,
        generate_unique_id_function=_operation_id,
        static_url="/docs-assets",
        # No validator badge: it would send this schema's address to validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.openapi = openapi.document(  # type: ignore[method-assign]
        app, access=auth.Access(settings), faults=settings.allow_fault_injection
    )
    problems.install(app)

    # HTTP request counts and latencies by route template (bounded labels), on /metrics.
    Instrumentator(excluded_handlers=["/metrics", "/livez"]).instrument(app)
    streamed = {"/assets": settings.asset_max_bytes + uploads.SLACK}  # enforced as it streams
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, streamed=streamed)
    app.add_middleware(auth.TokenGuard, settings=settings)  # reads too, unless PUBLIC_READS
    app.add_middleware(security.BrowserGuard, settings=settings)
    if settings.cors_origins.strip():  # closed unless configured
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[o.strip() for o in settings.cors_origins.split(",") if o.strip()],
            allow_methods=["GET", "POST"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "X-Requested-With",
                "X-Request-ID",
                "Last-Event-ID",
            ],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(security.SecurityHeaders)
    app.add_middleware(AccessLog)
    app.add_middleware(  # outermost: every line below it knows the request id
        CorrelationIdMiddleware, header_name="X-Request-ID", validator=_acceptable_request_id
    )
    if _request_id not in logs.ENRICHERS:
        logs.ENRICHERS.append(_request_id)
    routers = (runs, steps, history, revisions, artifacts, assets, workflows, workers, pools,
               health, admin)  # fmt: skip
    for module in routers:
        app.include_router(module.router)
    ui.install(app)
    if tracing.install("reelflow-api"):
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        # A server span per request (health probes and scrapes left out), the parent of
        # the dispatch span and, through the message headers, of every step's spans.
        FastAPIInstrumentor.instrument_app(app, excluded_urls="livez,readyz,health,metrics")
    return app
