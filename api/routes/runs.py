"""/runs: start, list, read, resume, cancel and follow runs (a run's steps, its history
and its artifacts have routers of their own)."""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BeforeValidator
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.deps import Actor, Conn, tenant_of
from api.problems import GUARDED, documented
from api.schemas import (
    PlanOut,
    RunCreate,
    RunDetail,
    RunOut,
    RunPage,
    RunSummary,
    StepOut,
    answer,
)
from db import repository as repo
from db.states import RunStatus, StepStatus
from reelflow.errors import InvalidCursor
from reelflow.settings import get_settings
from workflows.runs import operations
from workflows.watch.headlines import headlines
from workflows.watch.stream import RunWatcher

router = APIRouter(prefix="/runs", tags=["runs"], responses=documented(422, 500, 503))

_ISO = re.compile(r"\d{4}-\d{2}-\d{2}([T ][0-9:.]+)?(Z|[+-]\d{2}(:?\d{2})?)?")


def _iso_only(value: Any) -> Any:
    """A bare number is not taken as an epoch: `created_before=0.5` is refused, not 1970."""
    if isinstance(value, str) and not _ISO.fullmatch(value):
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-11-21T10:00:00Z")
    return value


def storable(value: datetime) -> datetime:
    """A moment PostgreSQL (through its driver) can take: its UTC time must be a valid
    date. Year 1 at +14:00 is in year 0, and 9999-12-31 at -14:00 in year 10000."""
    try:
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except (OverflowError, ValueError):
        raise ValueError("is outside the dates that can be stored (years 1 to 9999, UTC)") from None


Timestamp = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(storable)]


def _cursor(run: RunSummary) -> str:
    raw = f"{run.created_at.isoformat()}|{run.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _parse_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        at, run_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return storable(datetime.fromisoformat(at)), uuid.UUID(run_id)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidCursor(
            "cursor is not one this API returned", [{"field": "cursor", "message": "invalid"}]
        ) from None


@router.post(
    "",
    status_code=201,
    response_model=RunOut,
    responses={
        200: {"model": RunOut, "description": "the same request with the same Idempotency-Key"},
        202: {"model": RunOut, "description": "accepted; dispatched once the broker answers"},
        **documented(400, 413),
        **GUARDED,
    },
)
async def create_run(
    body: RunCreate,
    response: Response,
    actor: Actor,
    idempotency_key: Annotated[
        str | None, Header(max_length=200, pattern=r"^[\x21-\x7e]+$")
    ] = None,
) -> RunOut:
    """Start a run: 201 once its messages are out, 202 when it is accepted and waits for the
    broker (it is dispatched as soon as the broker answers). The same `Idempotency-Key`
    with the same body returns the same run (200); with another body, 422."""
    result = await operations.start_run(
        body.workflow,
        body.params,
        idempotency_key=idempotency_key,
        faults=body.faults,
        actor=actor,
        cache=body.cache,
        priority=body.priority,
        tenant=body.tenant or tenant_of(actor),
    )
    if not result.created:
        response.status_code = 200
    elif result.run.status is RunStatus.PENDING:
        response.status_code = 202
    return RunOut.of(result.run)


SEARCH = "an idempotency key, or the start of a run id"


@router.get("", response_model=RunPage)
async def list_runs(
    conn: Conn,
    status: RunStatus | None = None,
    workflow: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00]*$")] = None,
    created_after: Timestamp | None = None,
    created_before: Timestamp | None = None,
    cursor: Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_=-]*$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    q: Annotated[
        str | None, Query(max_length=200, pattern=r"^[^\x00]*$", description=SEARCH)
    ] = None,
) -> RunPage:
    """Newest first, a page at a time (keyset pagination: pass `next_cursor` back), each
    with how many of its steps are done and its `headline`: what it is (title, thumbnail)
    and, if it failed, which step and why."""
    runs = await repo.list_runs(
        conn,
        status=status,
        workflow=workflow,
        created_after=created_after,
        created_before=created_before,
        before=_parse_cursor(cursor) if cursor else None,
        search=q.strip() if q else None,
        limit=limit + 1,
    )
    page = runs[:limit]
    progress = await repo.step_progress(conn, run_ids=[r.id for r in page])
    heads = await headlines(conn, runs=page)
    items = [RunSummary.of(r, progress.get(r.id, (0, 0)), heads.get(r.id)) for r in page]
    return RunPage(items=items, next_cursor=_cursor(items[-1]) if len(runs) > limit else None)


@router.get("/{run_id}", response_model=RunDetail, responses=documented(404))
async def get_run(run_id: uuid.UUID, conn: Conn) -> RunDetail:
    run = RunOut.of(await repo.require_run(conn, run_id=run_id))
    steps = await repo.get_steps(conn, run_id=run_id)
    counted = [s for s in steps if s.status is not StepStatus.SUPERSEDED]
    done = sum(1 for s in counted if s.status is StepStatus.SUCCEEDED)
    detail = {**run.model_dump(), "steps_done": done, "steps_total": len(counted)}
    return RunDetail(**detail, steps=[StepOut.of(s) for s in steps])


@router.post(
    "/{run_id}/resume",
    status_code=202,
    response_model=RunOut,
    responses={
        200: {"model": PlanOut, "description": "dry_run=true: the plan, nothing changed"},
        **documented(404, 409),
        **GUARDED,
    },
)
async def resume_run(
    run_id: uuid.UUID, actor: Actor, dry_run: bool = False
) -> RunOut | JSONResponse:
    """Run every step that has not succeeded. `dry_run=true` answers with the plan only."""
    return answer(await operations.resume_run(run_id, actor=actor, dry_run=dry_run))


@router.post(
    "/{run_id}/cancel",
    status_code=202,
    response_model=RunOut,
    responses={**documented(404, 409), **GUARDED},
)
async def cancel_run(run_id: uuid.UUID, actor: Actor) -> RunOut:
    return RunOut.of(await operations.cancel_run(run_id, actor=actor))


@router.get(
    "/{run_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "server-sent events"},
        204: {"description": "the run has ended and this client has seen its end"},
        **documented(404),
    },
)
async def run_events(
    run_id: uuid.UUID,
    request: Request,
    last_event_id: Annotated[str | None, Header(max_length=40, pattern=r"^\d*$")] = None,
) -> Response:
    """Server-sent events, `step` and `run`, each with an `id:`, until the run ends;
    reconnecting with `Last-Event-ID` sends only what changed after it. Keepalive comments
    in between. An ended run answers 204 (a reconnect that missed the end gets it first),
    so a browser's EventSource stops reconnecting. A stream holds no database connection:
    one watcher per process polls for all streams."""
    watcher: RunWatcher = request.app.state.watcher
    after = int(last_event_id) if last_event_id else 0
    if await watcher.ended(run_id, after_version=after):  # 404 before the stream starts
        return Response(status_code=204)
    return EventSourceResponse(
        _changes(watcher, run_id, after), ping=get_settings().sse_keepalive_seconds
    )


async def _changes(
    watcher: RunWatcher, run_id: uuid.UUID, after: int
) -> AsyncIterator[ServerSentEvent]:
    async for snapshot in watcher.follow(run_id, after_version=after):
        version = str(snapshot.version)
        for s in snapshot.changed:
            data = {"key": s.key, "status": s.status.value, "attempts": s.attempts}
            yield ServerSentEvent(json.dumps(data), event="step", id=version)
        if snapshot.run_changed:
            status = {"status": snapshot.run.status.value}
            yield ServerSentEvent(json.dumps(status), event="run", id=version)
