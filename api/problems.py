"""Every error as `application/problem+json` (RFC 9457) with a stable `code`."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import Problem
from reelflow.errors import (
    ArtifactNotFound,
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


STATUS: dict[type[ReelflowError], int] = {
    RunNotFound: 404,
    ArtifactNotFound: 404,
    StepNotFound: 404,
    UnknownWorkflow: 422,
    InvalidParams: 422,
    RunStateConflict: 409,
    DispatchFailed: 503,
    Overloaded: 429,
    ParamsTooLarge: 413,
    SchemaBehind: 503,
}


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
    title = (type(exc).__doc__ or type(exc).__name__).strip().splitlines()[0]
    return problem(status, title, exc.message, code=exc.code, headers=headers, **extra)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc.errors(), skip="body")
    detail = summarise(errors, whole="body")
    return problem(422, "Request is invalid", detail, code="validation_error", errors=errors)


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


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("api_unhandled_error", path=request.url.path)
    return problem(500, "Internal error", "the server failed; see its log", code="internal")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ReelflowError, _reelflow_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
