"""Queries behind /metrics. None scans history: gauges count only what is in flight
(through partial indexes), and everything cumulative comes from `engine_counters`, which
triggers and the claim protocol maintain as events happen."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from db.repository.tables import counters as counter_table
from db.repository.tables import runs, steps
from db.states import RUN_LIVE, STEP_IN_FLIGHT, values


async def in_flight(conn: AsyncConnection) -> dict[str, dict[str, int]]:
    """Runs pending or running, and steps queued, running or retrying, by status."""
    run_stmt = (
        select(runs.c.status, func.count())
        .where(runs.c.status.in_(values(RUN_LIVE)))
        .group_by(runs.c.status)
    )
    step_stmt = (
        select(steps.c.status, func.count())
        .where(steps.c.status.in_(values(STEP_IN_FLIGHT)))
        .group_by(steps.c.status)
    )
    return {
        "runs": {s: int(n) for s, n in await conn.execute(run_stmt)},
        "steps": {s: int(n) for s, n in await conn.execute(step_stmt)},
    }


async def counters(conn: AsyncConnection) -> dict[tuple[str, str], int]:
    """Engine counters: (name, label) -> value."""
    stmt = select(counter_table.c.name, counter_table.c.label, counter_table.c.value)
    return {(n, label): int(v) for n, label, v in await conn.execute(stmt)}


async def bump_counter(conn: AsyncConnection, *, name: str, label: str, by: int = 1) -> None:
    """Add `by` (one) to an engine counter."""
    stmt = pg_insert(counter_table).values(name=name, label=label, value=by)
    stmt = stmt.on_conflict_do_update(
        index_elements=["name", "label"], set_={"value": counter_table.c.value + by}
    )
    await conn.execute(stmt)
