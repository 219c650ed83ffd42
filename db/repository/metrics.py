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


async def in_flight(conn: AsyncConnection) -> dict[str, dict[tuple[str, ...], int]]:
    """Runs pending or running by (workflow, status), and steps queued, running or
    retrying by (workflow, step, queue, status): both read through partial indexes, so
    their cost follows the work in flight, not the history."""
    run_stmt = (
        select(runs.c.workflow, runs.c.status, func.count())
        .where(runs.c.status.in_(values(RUN_LIVE)))
        .group_by(runs.c.workflow, runs.c.status)
    )
    # By run first, then each run's workflow by its key: the cost follows the steps in
    # flight, where a join may scan every run ever made to label them.
    flying = (
        select(steps.c.run_id, steps.c.step, steps.c.queue, steps.c.status, func.count().label("n"))
        .where(steps.c.status.in_(values(STEP_IN_FLIGHT)))
        .group_by(steps.c.run_id, steps.c.step, steps.c.queue, steps.c.status)
        .subquery()
    )
    workflow = select(runs.c.workflow).where(runs.c.id == flying.c.run_id).scalar_subquery()
    labelled = select(
        workflow.label("workflow"), flying.c.step, flying.c.queue, flying.c.status, flying.c.n
    ).subquery()
    series = (labelled.c.workflow, labelled.c.step, labelled.c.queue, labelled.c.status)
    step_stmt = select(*series, func.sum(labelled.c.n)).group_by(*series)
    return {
        "runs": {(w, s): int(n) for w, s, n in await conn.execute(run_stmt)},
        "steps": {(w, st, q, s): int(n) for w, st, q, s, n in await conn.execute(step_stmt)},
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
