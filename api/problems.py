"""Every error as `application/problem+json` (RFC 9457) with a stable `code`."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.schemas import Problem
from db.errors import DatabaseUnavailable
from db.errors import is_unavailable as database_away
from reelflow import broker
from reelflow.errors import (
    ArtifactNotFound,
    AssetNotFound,
    AssetTooLarge,
    DispatchFailed,
    InvalidParams,
    Overloaded,
    ParamsTooLarge,
    ReelflowError,
    RunNotFound,
    RunStateConflict,
    SchemaBehind,
    StepNotFound,
    UnknownWorkflow,
    UnsupportedMediaType,
    field_errors,
    summarise,
)

log = structlog.get_logger("reelflow.api")
PROBLEM = "application/problem+json"


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error codes, all answered as problem+json."""
    return {
        code: {
            "model": Problem,
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for code in codes
    }


#: What a mutating operation may also answer: 401 (only when API_TOKEN is set: see
#: api.app), 403 and 415 (a cross-origin or form-shaped request: api.security), 429.
GUARDED = documented(401, 403, 415, 429)

STATUS: dict[type[ReelflowError], int] = {
    RunNotFound: 404,
    ArtifactNotFound: 404,
    AssetNotFound: 404,
    UnsupportedMediaType: 415,
    AssetTooLarge: 413,
    StepNotFound: 404,
    UnknownWorkflow: 422,
    InvalidParams: 422,
    RunStateConflict: 409,
    DispatchFailed: 503,
    Overloaded: 429,
    ParamsTooLarge: 413,
    SchemaBehind: 503,
    DatabaseUnavailable: 503,
    broker.BrokerUnavailable: 503,
}
#: Seconds a client is told to wait after a 503 for an outage.
RETRY_OUTAGE_S = 5


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    code: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": f"about:blank#{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _status_of(exc: ReelflowError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


async def _reelflow_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ReelflowError)
    status = _status_of(exc)
    extra: dict[str, Any] = {}
    if isinstance(exc, InvalidParams):
        extra["errors"] = exc.errors
    if isinstance(exc, UnknownWorkflow):
        extra["errors"] = [{"field": "workflow", "message": exc.message}]
    if isinstance(exc, RunStateConflict) and exc.status:
        extra["run_status"] = str(exc.status)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Overloaded) else None
    if status == 503:
        headers = {"Retry-After": str(RETRY_OUTAGE_S)}
    title = (type(exc).__doc__ or type(exc).__name__).strip().splitlines()[0]
    return problem(status, title, exc.message, code=exc.code, headers=headers, **extra)


def _named(field: str) -> str:
    """A field as a title names it: `query.limit`, `faults` (not a client's own keys)."""
    parts = field.split(".")
    return ".".join(parts[:2]) if parts[0] in ("query", "header", "path", "cookie") else parts[0]


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc.errors(), skip="body")
    detail = summarise(errors, whole="body")
    fields = sorted({_named(str(e["field"])) for e in errors if e.get("field")})
    title = f"Invalid {', '.join(fields[:3])}" if fields else "The request body is invalid"
    return problem(422, title, detail, code="validation_error", errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {
        400: "malformed_body",
        401: "unauthorized",
        404: "not_found",
        405: "method_not_allowed",
        413: "too_large",
    }
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:  # every method of the path, not only the first route's
        headers = {**(headers or {}), "Allow": ", ".join(_allowed(request))}
    return problem(
        exc.status_code,
        str(exc.detail),
        str(exc.detail),
        code=code.get(exc.status_code, "http_error"),
        headers=headers,
    )


def _allowed(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, APIRoute) and route.path_regex.match(request.url.path):
            methods |= route.methods or set()
    return sorted(methods)


def outage(exc: BaseException) -> ReelflowError | None:
    """The outage an unexpected error stands for, if it is one (503, not 500)."""
    if broker.is_unavailable(exc):
        return broker.BrokerUnavailable("the broker is not answering; try again shortly")
    if database_away(exc):
        return DatabaseUnavailable()
    return None


class Unexpected:
    """Anything no handler took: a 503 with Retry-After for an outage of the database or
    the broker, a 500 otherwise, logged once (a traceback without locals, masked). The
    exception is not raised further, so the server keeps the connection alive."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            away = outage(exc)
            if away is not None:
                log.warning("api_dependency_unavailable", path=scope["path"], code=away.code,
                            error=f"{type(exc).__name__}: {exc}"[:300])  # fmt: skip
            else:
                log.error("api_unhandled_error", path=scope["path"], exc_info=exc)
            if started:
                raise  # the answer is on its way: the server can only cut it short
            if away is not None:
                title = (type(away).__doc__ or away.code).strip().splitlines()[0]
                response = problem(503, title, away.message, code=away.code,
                                   headers={"Retry-After": str(RETRY_OUTAGE_S)})  # fmt: skip
            else:
                response = problem(500, "Internal error", "the server failed; see its log",
                                   code="internal")  # fmt: skip
            await response(scope, receive, send)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ReelflowError, _reelflow_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(Unexpected)  # innermost of the middlewares: sees route errors first
