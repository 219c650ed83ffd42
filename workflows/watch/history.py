"""A run's history, as an operator reads it: what happened to it and who did it (its
events, and its steps' failures, retries and losses), and every attempt of every step on
one timeline."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from db import repository as repo
from db.states import AttemptStatus
from workflows.recovery.reconciler import ACTOR as RECONCILER


async def timeline(conn: AsyncConnection, *, run_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every attempt, oldest first, each with `waited_ms`: how long its message waited in
    the queue, as recorded (None for attempts from before it was)."""
    await repo.require_run(conn, run_id=run_id)
    attempts = await repo.get_attempts(conn, run_id=run_id)
    return [
        {**a.model_dump(), "waited_ms": _waited_ms(a.started_at, a.enqueued_at)}
        for a in sorted(attempts, key=lambda a: (a.started_at, a.attempt))
    ]


def _waited_ms(started: datetime, enqueued: datetime | None) -> float | None:
    return None if enqueued is None else max(0.0, (started - enqueued).total_seconds() * 1000)


#: How an attempt that ended badly reads in the run's history.
ENDING_KINDS = {
    AttemptStatus.FAILED: "step_failed",  # for good: the run failed with it
    AttemptStatus.RETRYING: "step_retrying",  # a transient failure: it runs again
    AttemptStatus.LOST: "step_lost",  # its worker died or hung: the step was released
}


async def events(conn: AsyncConnection, *, run_id: uuid.UUID) -> list[dict[str, Any]]:
    """What happened to the run and who did it, oldest first: operators' and the
    reconciler's actions, and steps that failed, will retry or were lost, each with its
    actor (`worker:<hostname>` for what a worker saw; a lost attempt's is the worker that
    took its step over, or the reconciler that released it)."""
    await repo.require_run(conn, run_id=run_id)
    return [
        _entry(row) for row in await repo.run_history(conn, run_id=run_id, endings=ENDING_KINDS)
    ]


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    entry = {"created_at": row["at"], "step": row["step_key"], "attempt": row["attempt"]}
    if row["status"] is None:  # an event row
        return {**entry, "kind": row["kind"], "actor": row["actor"], "detail": row["detail"]}
    status = AttemptStatus(row["status"])
    detail = dict(row["detail"] or {})
    if status is AttemptStatus.LOST:
        detail["worker"] = row["worker"]
        actor = f"worker:{row['taken_by']}" if row["taken_by"] else RECONCILER
    else:
        actor = f"worker:{row['worker'] or 'unknown'}"
    return {**entry, "kind": ENDING_KINDS[status], "actor": actor, "detail": detail}
