"""What an operator looks at beside the runs: a run's attempts as one timeline, its event
history, and the workers with what each is running. Read-only; the web UI uses these."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

from fastapi import APIRouter

from api.deps import Conn
from api.problems import documented
from api.schemas import EventOut, RunAttemptOut, RunningStepOut, WorkerOut, WorkersPage
from db import repository as repo
from reelflow import broker
from reelflow.celery_app import QUEUES
from reelflow.settings import get_settings

router = APIRouter(responses=documented(500, 503))


@router.get(
    "/runs/{run_id}/attempts",
    response_model=list[RunAttemptOut],
    responses=documented(404, 422),
    tags=["runs"],
)
async def list_run_attempts(run_id: uuid.UUID, conn: Conn) -> list[RunAttemptOut]:
    """Every attempt of every step, oldest first: the run's timeline."""
    await repo.require_run(conn, run_id=run_id)
    steps = {s.key: s for s in await repo.get_steps(conn, run_id=run_id)}
    attempts = await repo.get_attempts(conn, run_id=run_id)
    out: list[RunAttemptOut] = []
    previous_end: dict[str, datetime | None] = {}
    for a in sorted(attempts, key=lambda a: (a.started_at, a.attempt)):
        step = steps.get(a.step_key)
        since = previous_end.get(a.step_key) or (step.queued_at if step else None)
        # unknown when the step was queued again after this attempt (a resume moves it)
        waited = (a.started_at - since).total_seconds() * 1000 if since else None
        known = waited if waited is not None and waited >= 0 else None
        out.append(RunAttemptOut.model_validate({**a.model_dump(), "waited_ms": known}))
        previous_end[a.step_key] = a.finished_at
    return out


@router.get(
    "/runs/{run_id}/history", response_model=list[EventOut], responses=documented(404, 422),
    tags=["runs"],
)  # fmt: skip
async def list_run_history(run_id: uuid.UUID, conn: Conn) -> list[EventOut]:
    """What happened to the run and who did it: created, resumed, step_retried, cancelled,
    reconciled, oldest first."""
    await repo.require_run(conn, run_id=run_id)
    return [EventOut.model_validate(e) for e in await repo.run_events(conn, run_id=run_id)]


@router.get("/workers", response_model=WorkersPage, tags=["operations"])
async def list_workers(conn: Conn) -> WorkersPage:
    """Workers online (fresh heartbeats), the steps each is running, and queue depths."""
    rows = await repo.workers_with_steps(
        conn, dead_after_s=get_settings().worker_dead_after_seconds
    )
    try:
        async with asyncio.timeout(3):
            depths: dict[str, int | None] = dict(
                await asyncio.to_thread(broker.queue_depths, QUEUES, 2.0)
            )
    except Exception:
        depths = dict.fromkeys(QUEUES)
    workers = [
        WorkerOut(
            hostname=r["hostname"], pid=r["pid"], queues=list(r["queues"]),
            started_at=r["started_at"], last_seen=r["last_seen"],
            running=[RunningStepOut.model_validate(s) for s in r["running"]],
        )
        for r in rows
    ]  # fmt: skip
    return WorkersPage(workers=workers, queues=depths)
