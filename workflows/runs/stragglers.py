"""Steps still in flight when their run stopped: a failed run's sibling renders, still
running or queued when another step failed for good.

A resume or retry the moment a run fails does not wait for them with a 409. It takes them
over: in the operation's transaction they go back to pending with the steps it reruns, and
their open attempts close as `cancelled` ("superseded by the resume"). The new generation
then fences them as it fences any stale delivery: their late writes are refused by the
attempt guard, a renewal of their lease fails so the worker stops the work (as a cancel
does), and after the commit their messages are revoked and the slots they held go back.
A render taken over keeps its finished chunks: the rerun renders only the rest.
"""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from db import repository as repo
from db.engine import get_engine
from db.records import OpenStep, RunRecord
from db.states import STEP_IN_FLIGHT, AttemptStatus, StepStatus
from reelflow.celery_app import app
from steps.engine import slots
from workflows.definition.canvas import task_id
from workflows.runs import relay

log = structlog.get_logger("reelflow.operations")


class Stragglers:
    """What an operation took over: the keys, and what to stop once it has committed."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.revoke: set[str] = set()
        self.holders: list[tuple[int, int]] = []

    def __bool__(self) -> bool:
        return bool(self.keys)


def in_flight(rows: list[OpenStep]) -> list[str]:
    return [r.key for r in rows if r.status in STEP_IN_FLIGHT]


async def take_over(
    conn: AsyncConnection, run: RunRecord, rows: list[OpenStep], *, verb: str
) -> Stragglers:
    """In the operation's transaction (the run row locked): the in-flight steps back to
    pending, their open attempts closed."""
    found = Stragglers()
    busy = [r for r in rows if r.status in STEP_IN_FLIGHT]
    if not busy:
        return found
    keys = [r.key for r in busy]
    records = {s.key: s for s in await repo.get_steps(conn, run_id=run.id) if s.key in keys}
    found.keys = await repo.set_steps_status(
        conn, run_id=run.id, keys=keys, status=StepStatus.PENDING, only_from=STEP_IN_FLIGHT
    )
    await repo.close_running_attempts(
        conn, run_id=run.id, status=AttemptStatus.CANCELLED, message=f"superseded by the {verb}"
    )
    for r in busy:
        found.revoke.add(task_id(run.id, r.key, run.generation))
        if r.celery_task_id:
            found.revoke.add(r.celery_task_id)
        record = records.get(r.key)
        if record is not None and record.status is StepStatus.RUNNING:
            found.holders.append((record.id, record.attempts))
    return found


async def stop(run_id: uuid.UUID, found: Stragglers) -> None:
    """After the commit, best effort (their writes are refused anyway): free their slots and
    revoke their messages, terminating a task still running."""
    if not found:
        return
    try:
        async with get_engine().begin() as conn:
            freed = await repo.release_attempts(conn, holders=found.holders)
        await slots.hand_over_from_loop(freed)  # ... to the steps waiting
    except Exception as exc:
        log.warning("slot_release_failed", run_id=str(run_id), error=repr(exc))
    try:
        await relay.off_loop(lambda: app.control.revoke(sorted(found.revoke), terminate=True))
    except Exception as exc:
        log.warning("revoke_failed", run_id=str(run_id), error=repr(exc))
