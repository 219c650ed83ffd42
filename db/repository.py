"""All SQL outside the claim protocol: runs, steps, attempts and events.

Functions take an open connection and keyword-only arguments; the caller owns the
transaction, so an operation that changes several rows does it atomically.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, func, insert, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from db.models import RunEvent, StepAttempt, StepRun, WorkflowRun
from db.records import AttemptRecord, EventRecord, NewStep, RunRecord, StepRecord
from db.states import RunStatus, StepStatus

runs = cast(Table, WorkflowRun.__table__)
steps_t = cast(Table, StepRun.__table__)
attempts_t = cast(Table, StepAttempt.__table__)
events_t = cast(Table, RunEvent.__table__)


async def create_run(
    conn: AsyncConnection,
    *,
    run_id: uuid.UUID,
    workflow: str,
    workflow_version: int,
    params: dict[str, Any],
    idempotency_key: str | None,
    steps: Sequence[NewStep],
    actor: str,
) -> tuple[RunRecord, bool]:
    """Insert the run and its known steps; (run, False) if the idempotency key exists."""
    stmt = (
        pg_insert(runs)
        .values(
            id=run_id,
            workflow=workflow,
            workflow_version=workflow_version,
            params=params,
            status=RunStatus.PENDING.value,
            idempotency_key=idempotency_key,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(*runs.c)
    )
    row = (await conn.execute(stmt)).one_or_none()
    if row is None:
        existing = (
            await conn.execute(select(runs).where(runs.c.idempotency_key == idempotency_key))
        ).one()
        return RunRecord.model_validate(existing._mapping), False
    if steps:
        await conn.execute(insert(steps_t), [{"run_id": run_id, **s.model_dump()} for s in steps])
    await add_event(conn, run_id=run_id, kind="created", actor=actor, detail={"params": params})
    return RunRecord.model_validate(row._mapping), True


async def add_steps(conn: AsyncConnection, *, run_id: uuid.UUID, steps: Sequence[NewStep]) -> None:
    """Create step rows that do not exist yet (a map expanding twice creates them once)."""
    if steps:
        stmt = pg_insert(steps_t).on_conflict_do_nothing(index_elements=["run_id", "key"])
        await conn.execute(stmt, [{"run_id": run_id, **s.model_dump()} for s in steps])


async def get_run(
    conn: AsyncConnection, *, run_id: uuid.UUID, for_update: bool = False
) -> RunRecord | None:
    stmt = select(runs).where(runs.c.id == run_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).one_or_none()
    return RunRecord.model_validate(row._mapping) if row else None


async def get_steps(conn: AsyncConnection, *, run_id: uuid.UUID) -> list[StepRecord]:
    stmt = select(steps_t).where(steps_t.c.run_id == run_id).order_by(steps_t.c.id)
    return [StepRecord.model_validate(r._mapping) for r in await conn.execute(stmt)]


async def get_step_output(
    conn: AsyncConnection, *, run_id: uuid.UUID, key: str
) -> tuple[StepStatus, Any] | None:
    stmt = select(steps_t.c.status, steps_t.c.output).where(
        steps_t.c.run_id == run_id, steps_t.c.key == key
    )
    row = (await conn.execute(stmt)).one_or_none()
    return (StepStatus(row.status), row.output) if row else None


async def get_attempts(
    conn: AsyncConnection, *, run_id: uuid.UUID, key: str | None = None
) -> list[AttemptRecord]:
    stmt = select(attempts_t).where(attempts_t.c.run_id == run_id)
    if key is not None:
        stmt = stmt.where(attempts_t.c.step_key == key)
    stmt = stmt.order_by(attempts_t.c.step_key, attempts_t.c.attempt)
    return [AttemptRecord.model_validate(r._mapping) for r in await conn.execute(stmt)]


async def list_runs(
    conn: AsyncConnection,
    *,
    status: RunStatus | None = None,
    workflow: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    before: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[RunRecord]:
    """Newest first; `before` is the keyset cursor (created_at, id) of the last row seen."""
    stmt = select(runs)
    if status is not None:
        stmt = stmt.where(runs.c.status == status.value)
    if workflow is not None:
        stmt = stmt.where(runs.c.workflow == workflow)
    if created_after is not None:
        stmt = stmt.where(runs.c.created_at > created_after)
    if created_before is not None:
        stmt = stmt.where(runs.c.created_at < created_before)
    if before is not None:
        at, last_id = before
        stmt = stmt.where(
            or_(runs.c.created_at < at, and_(runs.c.created_at == at, runs.c.id < last_id))
        )
    stmt = stmt.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
    return [RunRecord.model_validate(r._mapping) for r in await conn.execute(stmt)]


async def count_by_status(conn: AsyncConnection) -> dict[str, dict[str, int]]:
    """Runs and steps by status, for metrics."""
    out: dict[str, dict[str, int]] = {"runs": {}, "steps": {}}
    for name, table in (("runs", runs), ("steps", steps_t)):
        stmt = select(table.c.status, func.count()).group_by(table.c.status)
        out[name] = {status: n for status, n in await conn.execute(stmt)}
    return out


async def attempt_duration_buckets(
    conn: AsyncConnection, buckets_ms: Sequence[float]
) -> dict[tuple[str, str], tuple[list[int], float, int]]:
    """Finished attempts per (step, queue): cumulative counts per bucket, sum, count."""
    step = func.regexp_replace(attempts_t.c.step_key, r"\[\d+\]$", "")
    columns = [
        func.count().filter(attempts_t.c.duration_ms <= bound).label(f"b{i}")
        for i, bound in enumerate(buckets_ms)
    ]
    stmt = (
        select(
            step.label("step"),
            func.coalesce(attempts_t.c.queue, "default").label("queue"),
            func.coalesce(func.sum(attempts_t.c.duration_ms), 0).label("total"),
            func.count().label("n"),
            *columns,
        )
        .where(attempts_t.c.duration_ms.is_not(None))
        .group_by(text("1"), text("2"))
    )
    out = {}
    for row in await conn.execute(stmt):
        m = row._mapping
        out[(m["step"], m["queue"])] = (
            [int(m[f"b{i}"]) for i in range(len(buckets_ms))],
            float(m["total"]),
            int(m["n"]),
        )
    return out


async def retries_by_step(conn: AsyncConnection) -> dict[str, int]:
    step = func.regexp_replace(attempts_t.c.step_key, r"\[\d+\]$", "")
    stmt = (
        select(step.label("step"), func.count())
        .where(attempts_t.c.status == "retrying")
        .group_by(text("1"))
    )
    return {s: int(n) for s, n in await conn.execute(stmt)}


async def set_run_status(
    conn: AsyncConnection,
    *,
    run_id: uuid.UUID,
    status: RunStatus,
    bump_generation: bool = False,
    clear_error: bool = False,
    started: bool = False,
    finished: bool = False,
) -> None:
    values: dict[str, Any] = {"status": status.value, "updated_at": func.now()}
    if bump_generation:
        values["resume_count"] = runs.c.resume_count + 1
    if clear_error:
        values["error"] = None
    if started:
        values["started_at"] = func.coalesce(runs.c.started_at, func.now())
        values["finished_at"] = None
    if finished:
        values["finished_at"] = func.now()
    await conn.execute(update(runs).where(runs.c.id == run_id).values(**values))


async def fail_run(conn: AsyncConnection, *, run_id: uuid.UUID, error: dict[str, Any]) -> None:
    """Fail a running run for a reason no step row owns (a map that could not expand)."""
    await conn.execute(
        update(runs)
        .where(runs.c.id == run_id, runs.c.status == RunStatus.RUNNING.value)
        .values(
            status=RunStatus.FAILED.value,
            error=error,
            finished_at=func.now(),
            updated_at=func.now(),
        )
    )


async def set_steps_status(
    conn: AsyncConnection,
    *,
    run_id: uuid.UUID,
    keys: Iterable[str],
    status: StepStatus,
    only_from: Iterable[StepStatus] | None = None,
) -> list[str]:
    """Move the named steps to `status` (optionally only from some states); return the moved."""
    keys = list(keys)
    if not keys:
        return []
    values: dict[str, Any] = {"status": status.value, "updated_at": func.now()}
    if status is StepStatus.QUEUED:
        values["queued_at"] = func.now()
    if status is StepStatus.PENDING:
        values.update(error=None, finished_at=None, lease_owner=None, lease_expires_at=None)
    if status is StepStatus.CANCELLED:
        values.update(finished_at=func.now(), lease_owner=None, lease_expires_at=None)
    stmt = update(steps_t).where(steps_t.c.run_id == run_id, steps_t.c.key.in_(keys))
    if only_from is not None:
        stmt = stmt.where(steps_t.c.status.in_([s.value for s in only_from]))
    result = await conn.execute(stmt.values(**values).returning(steps_t.c.key))
    return [r.key for r in result]


async def renew_budgets(
    conn: AsyncConnection, *, run_id: uuid.UUID, budgets: dict[str, int]
) -> None:
    """A resumed or retried step gets its whole attempt budget again, counted from now."""
    for key, budget in budgets.items():
        await conn.execute(
            update(steps_t)
            .where(steps_t.c.run_id == run_id, steps_t.c.key == key)
            .values(max_attempts=steps_t.c.attempts + budget)
        )


async def mark_queued(conn: AsyncConnection, *, run_id: uuid.UUID, keys: Iterable[str]) -> None:
    """Steps whose messages are being sent: pending -> queued."""
    await set_steps_status(
        conn, run_id=run_id, keys=keys, status=StepStatus.QUEUED, only_from={StepStatus.PENDING}
    )


async def unmark_queued(conn: AsyncConnection, *, run_id: uuid.UUID, keys: Iterable[str]) -> None:
    """The broker did not take the messages after all: queued -> pending."""
    await set_steps_status(
        conn, run_id=run_id, keys=keys, status=StepStatus.PENDING, only_from={StepStatus.QUEUED}
    )


async def close_running_attempts(
    conn: AsyncConnection, *, run_id: uuid.UUID, status: str, message: str
) -> None:
    """Close attempts left open (a cancelled run's), so history shows how they ended."""
    await conn.execute(
        update(attempts_t)
        .where(attempts_t.c.run_id == run_id, attempts_t.c.status == "running")
        .values(
            status=status,
            finished_at=func.now(),
            error_message=message,
            duration_ms=func.extract("epoch", func.now() - attempts_t.c.started_at) * 1000,
        )
    )


async def add_event(
    conn: AsyncConnection,
    *,
    run_id: uuid.UUID,
    kind: str,
    actor: str,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        insert(events_t).values(run_id=run_id, kind=kind, actor=actor, detail=detail or {})
    )


async def get_events(
    conn: AsyncConnection, *, run_id: uuid.UUID, after_id: int = 0
) -> list[EventRecord]:
    stmt = (
        select(events_t)
        .where(events_t.c.run_id == run_id, events_t.c.id > after_id)
        .order_by(events_t.c.id)
    )
    return [EventRecord.model_validate(r._mapping) for r in await conn.execute(stmt)]


async def stalled_runs(conn: AsyncConnection, *, stall_after_s: float) -> list[RunRecord]:
    """Running runs where nothing moved for `stall_after_s` and no step holds a live lease."""
    stmt = text(
        """
        SELECT r.* FROM workflow_runs r
        WHERE r.status = 'running' AND r.updated_at < now() - make_interval(secs => :after)
          AND NOT EXISTS (
              SELECT 1 FROM step_runs s
              WHERE s.run_id = r.id
                AND ((s.status = 'running' AND s.lease_expires_at > now())
                     OR s.updated_at > now() - make_interval(secs => :after)))
        ORDER BY r.updated_at
        LIMIT 100
        """
    )
    rows = await conn.execute(stmt, {"after": float(stall_after_s)})
    return [RunRecord.model_validate(r._mapping) for r in rows]


async def unsettled_runs(conn: AsyncConnection) -> list[tuple[RunRecord, list[str]]]:
    """Running runs whose steps are all finished: (run, the set of their statuses)."""
    stmt = text(
        """
        SELECT r.*, array_agg(DISTINCT s.status) AS statuses FROM workflow_runs r
        JOIN step_runs s ON s.run_id = r.id
        WHERE r.status = 'running'
        GROUP BY r.id
        HAVING bool_and(s.status IN ('succeeded', 'failed', 'cancelled'))
        LIMIT 100
        """
    )
    out = []
    for row in await conn.execute(stmt):
        data = dict(row._mapping)
        statuses = data.pop("statuses")
        out.append((RunRecord.model_validate(data), list(statuses)))
    return out


async def lose_expired_attempts(conn: AsyncConnection, *, run_id: uuid.UUID) -> list[str]:
    """Running steps whose lease expired go back to pending; their attempts are marked lost."""
    result = await conn.execute(
        update(steps_t)
        .where(
            steps_t.c.run_id == run_id,
            steps_t.c.status == StepStatus.RUNNING.value,
            steps_t.c.lease_expires_at < func.now(),
        )
        .values(
            status=StepStatus.PENDING.value,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=func.now(),
        )
        .returning(steps_t.c.id, steps_t.c.key)
    )
    rows = result.all()
    if rows:
        await conn.execute(
            update(attempts_t)
            .where(
                attempts_t.c.step_run_id.in_([r.id for r in rows]), attempts_t.c.status == "running"
            )
            .values(
                status="lost",
                finished_at=func.now(),
                error_type="WorkerLost",
                error_message="lease expired: the worker died or hung",
                duration_ms=func.extract("epoch", func.now() - attempts_t.c.started_at) * 1000,
            )
        )
    return [r.key for r in rows]


async def step_states(
    conn: AsyncConnection, *, pairs: Sequence[tuple[uuid.UUID, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Attempt, start and lease of the given (run id, step key) pairs, for introspection."""
    if not pairs:
        return {}
    stmt = select(
        steps_t.c.run_id,
        steps_t.c.key,
        steps_t.c.attempts,
        steps_t.c.started_at,
        steps_t.c.lease_owner,
    ).where(tuple_(steps_t.c.run_id, steps_t.c.key).in_(list(pairs)))
    return {(str(r.run_id), r.key): dict(r._mapping) for r in await conn.execute(stmt)}


async def ping(conn: AsyncConnection) -> None:
    await conn.execute(text("SELECT 1"))
