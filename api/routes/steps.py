"""/runs/{id}/steps: a run's steps, each step's attempts, and retrying one step."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from api.deps import Actor, Conn
from api.problems import GUARDED, documented
from api.schemas import AttemptOut, PlanOut, RunOut, StepOut, answer
from db import repository as repo
from reelflow.errors import StepNotFound
from workflows.runs import operations

router = APIRouter(prefix="/runs", tags=["runs"], responses=documented(422, 500, 503))
StepKey = Annotated[str, Path(max_length=200, pattern=r"^[^\x00]+$", examples=["c[2]"])]


@router.get("/{run_id}/steps", response_model=list[StepOut], responses=documented(404))
async def get_steps(run_id: uuid.UUID, conn: Conn) -> list[StepOut]:
    await repo.require_run(conn, run_id=run_id)
    return [StepOut.of(s) for s in await repo.get_steps(conn, run_id=run_id)]


@router.get(
    "/{run_id}/steps/{key}/attempts", response_model=list[AttemptOut], responses=documented(404)
)
async def get_attempts(run_id: uuid.UUID, key: StepKey, conn: Conn) -> list[AttemptOut]:
    """The attempt history of one step: worker, timings, error type, message, traceback."""
    await repo.require_run(conn, run_id=run_id)
    if not any(s.key == key for s in await repo.get_steps(conn, run_id=run_id)):
        raise StepNotFound(f"run {run_id} has no step {key!r}")
    return [AttemptOut.of(a) for a in await repo.get_attempts(conn, run_id=run_id, key=key)]


@router.post(
    "/{run_id}/steps/{key}/retry",
    status_code=202,
    response_model=RunOut,
    responses={
        200: {"model": PlanOut, "description": "dry_run=true: the plan, nothing changed"},
        **documented(404, 409),
        **GUARDED,
    },
)
async def retry_step(
    run_id: uuid.UUID, key: StepKey, actor: Actor, dry_run: bool = False
) -> RunOut | JSONResponse:
    """Rerun one step and everything downstream of it. `dry_run=true`: the plan only."""
    return answer(await operations.retry_step(run_id, key, actor=actor, dry_run=dry_run))
