"""/runs/{id}/history and /runs/{id}/attempts: what happened to a run, and its attempts
on one timeline. Read-only; the web UI draws its run page from these."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api.deps import Conn
from api.problems import documented
from api.schemas import EventOut, RunAttemptOut
from workflows.watch import history

router = APIRouter(prefix="/runs", tags=["runs"], responses=documented(404, 422, 500, 503))


@router.get("/{run_id}/attempts", response_model=list[RunAttemptOut])
async def list_run_attempts(run_id: uuid.UUID, conn: Conn) -> list[RunAttemptOut]:
    """Every attempt of every step, oldest first: the run's timeline."""
    found = await history.timeline(conn, run_id=run_id)
    return [RunAttemptOut.model_validate(a) for a in found]


@router.get("/{run_id}/history", response_model=list[EventOut])
async def list_run_history(run_id: uuid.UUID, conn: Conn) -> list[EventOut]:
    """What happened to the run and who did it, oldest first (at most 500 entries): actions
    (created, resumed, step_retried, revised, cancelled, reconciled) and what happened to
    its steps (step_failed, step_retrying, step_lost), each with its actor: an operator,
    `worker:<hostname>` or `reconciler`."""
    return [EventOut.model_validate(e) for e in await history.events(conn, run_id=run_id)]
