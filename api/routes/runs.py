"""/runs: start, list, inspect, resume, retry, cancel, and follow runs."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse

from api.deps import Actor, Conn
from api.problems import documented
from api.schemas import AttemptOut, PlanOut, RunCreate, RunDetail, RunOut, RunPage, StepOut
from db import repository as repo
from db.engine import get_engine
from db.states import RUN_TERMINAL, RunStatus
from reelflow.errors import ArtifactNotFound, InvalidParams, RunNotFound, StepNotFound
from reelflow.settings import get_settings
from workflows import operations
from workflows.operations import Plan

router = APIRouter(
    prefix="/runs", tags=["runs"], responses=documented(401, 404, 409, 413, 422, 500, 503)
)

StepKey = Annotated[str, Path(max_length=200, pattern=r"^[^\x00]+$", examples=["c[2]"])]


def _cursor(run: RunOut) -> str:
    raw = f"{run.created_at.isoformat()}|{run.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _parse_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        at, run_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(at), uuid.UUID(run_id)
    except (ValueError, UnicodeDecodeError):
        raise InvalidParams(
            "cursor is not one this API returned", [{"field": "cursor", "message": "invalid"}]
        ) from None


@router.post("", status_code=201, response_model=RunOut)
async def create_run(
    body: RunCreate,
    response: Response,
    actor: Actor,
    idempotency_key: Annotated[
        str | None, Header(max_length=200, pattern=r"^[\x21-\x7e]+$")
    ] = None,
) -> RunOut:
    """Start a run. The same `Idempotency-Key` again returns the same run (200)."""
    result = await operations.start_run(
        body.workflow, body.params, idempotency_key=idempotency_key, actor=actor
    )
    if not result.created:
        response.status_code = 200
    return RunOut.of(result.run)


@router.get("", response_model=RunPage)
async def list_runs(
    conn: Conn,
    status: RunStatus | None = None,
    workflow: Annotated[str | None, Query(max_length=100, pattern=r"^[^\x00]*$")] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    cursor: Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_=-]*$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RunPage:
    """Newest first, a page at a time (keyset pagination: pass `next_cursor` back)."""
    runs = await repo.list_runs(
        conn,
        status=status,
        workflow=workflow,
        created_after=created_after,
        created_before=created_before,
        before=_parse_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    items = [RunOut.of(r) for r in runs[:limit]]
    return RunPage(items=items, next_cursor=_cursor(items[-1]) if len(runs) > limit else None)


async def _run(conn: Conn, run_id: uuid.UUID) -> RunOut:
    run = await repo.get_run(conn, run_id=run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id}")
    return RunOut.of(run)


@router.get("/{run_id}", response_model=RunDetail)
async def get_run(run_id: uuid.UUID, conn: Conn) -> RunDetail:
    run = await _run(conn, run_id)
    steps = await repo.get_steps(conn, run_id=run_id)
    return RunDetail(**run.model_dump(), steps=[StepOut.of(s) for s in steps])


@router.get("/{run_id}/steps", response_model=list[StepOut])
async def get_steps(run_id: uuid.UUID, conn: Conn) -> list[StepOut]:
    await _run(conn, run_id)
    return [StepOut.of(s) for s in await repo.get_steps(conn, run_id=run_id)]


@router.get("/{run_id}/steps/{key}/attempts", response_model=list[AttemptOut])
async def get_attempts(run_id: uuid.UUID, key: StepKey, conn: Conn) -> list[AttemptOut]:
    """The attempt history of one step: worker, timings, error type, message, traceback."""
    await _run(conn, run_id)
    if not any(s.key == key for s in await repo.get_steps(conn, run_id=run_id)):
        raise StepNotFound(f"run {run_id} has no step {key!r}")
    return [AttemptOut.of(a) for a in await repo.get_attempts(conn, run_id=run_id, key=key)]


def _planned(result: RunOut | Plan) -> PlanOut:
    assert isinstance(result, Plan)
    return PlanOut(
        run_id=result.run_id, operation=result.operation, run=result.run, skip=result.skip
    )


@router.post("/{run_id}/resume", status_code=202, response_model=RunOut | PlanOut)
async def resume(
    run_id: uuid.UUID, response: Response, actor: Actor, dry_run: bool = False
) -> RunOut | PlanOut:
    """Run every step that has not succeeded. `dry_run=true` answers with the plan only."""
    result = await operations.resume_run(run_id, actor=actor, dry_run=dry_run)
    if dry_run:
        response.status_code = 200
        return _planned(result)  # type: ignore[arg-type]
    assert not isinstance(result, Plan)
    return RunOut.of(result)


@router.post("/{run_id}/steps/{key}/retry", status_code=202, response_model=RunOut | PlanOut)
async def retry(
    run_id: uuid.UUID, key: StepKey, response: Response, actor: Actor, dry_run: bool = False
) -> RunOut | PlanOut:
    """Rerun one step and everything downstream of it."""
    result = await operations.retry_step(run_id, key, actor=actor, dry_run=dry_run)
    if dry_run:
        response.status_code = 200
        return _planned(result)  # type: ignore[arg-type]
    assert not isinstance(result, Plan)
    return RunOut.of(result)


@router.post("/{run_id}/cancel", status_code=202, response_model=RunOut)
async def cancel(run_id: uuid.UUID, actor: Actor) -> RunOut:
    return RunOut.of(await operations.cancel_run(run_id, actor=actor))


@router.get("/{run_id}/artifacts/{path:path}", response_class=FileResponse)
async def artifact(
    run_id: uuid.UUID,
    path: Annotated[str, Path(max_length=500, pattern=r"^[^\x00]+$")],
    conn: Conn,
) -> FileResponse:
    """A file a step of the run wrote, e.g. `compose_video/video.mp4`. Read-only; paths
    that resolve outside the run's folder are refused."""
    await _run(conn, run_id)
    root = (get_settings().artifact_root / str(run_id)).resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise ArtifactNotFound(f"run {run_id} has no artifact {path!r}")
    return FileResponse(target)


@router.get("/{run_id}/events", response_class=StreamingResponse)
async def events(run_id: uuid.UUID, request: Request, conn: Conn) -> StreamingResponse:
    """Server-sent events: `step` and `run` state changes, until the run ends."""
    await _run(conn, run_id)
    return StreamingResponse(_changes(run_id, request), media_type="text/event-stream")


async def _changes(run_id: uuid.UUID, request: Request, poll: float = 0.25) -> AsyncIterator[str]:
    seen: dict[str, tuple[str, int]] = {}
    last_run: str | None = None
    while not await request.is_disconnected():
        async with get_engine().connect() as conn:
            run = await repo.get_run(conn, run_id=run_id)
            steps = await repo.get_steps(conn, run_id=run_id)
        if run is None:
            return
        for s in steps:
            state = (s.status.value, s.attempts)
            if seen.get(s.key) != state:
                seen[s.key] = state
                data = {"key": s.key, "status": s.status.value, "attempts": s.attempts}
                yield f"event: step\ndata: {json.dumps(data)}\n\n"
        if run.status.value != last_run:
            last_run = run.status.value
            yield f"event: run\ndata: {json.dumps({'status': last_run})}\n\n"
        if run.status in RUN_TERMINAL:
            return
        await asyncio.sleep(poll)
