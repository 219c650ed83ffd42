"""Read models for the operator's views (the API's runs list, a run's events, the workers):
bounded queries, each served by an index."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from db.repository.tables import events, steps, workers
from db.states import StepStatus


async def step_progress(
    conn: AsyncConnection, *, run_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, int]]:
    """(steps finished, steps in all) of each run, superseded items left out: one grouped
    scan of the step rows of a page of runs (ix on step_runs.run_id)."""
    if not run_ids:
        return {}
    counted = steps.c.status != StepStatus.SUPERSEDED.value
    done = func.count().filter(steps.c.status == StepStatus.SUCCEEDED.value)
    stmt = (
        select(steps.c.run_id, done, func.count())
        .where(steps.c.run_id.in_(list(run_ids)), counted)
        .group_by(steps.c.run_id)
    )
    return {row[0]: (int(row[1]), int(row[2])) for row in await conn.execute(stmt)}


async def run_events(
    conn: AsyncConnection, *, run_id: uuid.UUID, limit: int = 500
) -> list[dict[str, Any]]:
    """What happened to a run and who did it (created, resumed, retried, cancelled,
    reconciled), oldest first."""
    stmt = (
        select(events.c.id, events.c.kind, events.c.actor, events.c.detail, events.c.created_at)
        .where(events.c.run_id == run_id)
        .order_by(events.c.id)
        .limit(limit)
    )
    return [dict(r._mapping) for r in await conn.execute(stmt)]


async def workers_with_steps(conn: AsyncConnection, *, dead_after_s: float) -> list[dict[str, Any]]:
    """Live workers (fresh heartbeats) and the steps each is running now, from the leases
    (the partial index on running steps)."""
    fresh = workers.c.last_seen > func.now() - text(f"make_interval(secs => {float(dead_after_s)})")
    rows = [dict(r._mapping) for r in await conn.execute(select(workers).where(fresh))]
    running = await conn.execute(
        select(steps.c.lease_worker, steps.c.run_id, steps.c.key, steps.c.attempts,
               steps.c.started_at)
        .where(steps.c.status == StepStatus.RUNNING.value,
               steps.c.lease_worker.in_([r["id"] for r in rows]))
        .order_by(steps.c.started_at)
    )  # fmt: skip
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for worker_id, run_id, key, attempt, started in running:
        by_worker.setdefault(worker_id, []).append(
            {"run_id": run_id, "key": key, "attempt": attempt, "started_at": started}
        )
    for row in rows:
        row["running"] = by_worker.get(row["id"], [])
    return sorted(rows, key=lambda r: str(r["hostname"]))
