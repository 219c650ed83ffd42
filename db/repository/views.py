"""Read models for the operator's views (the API's runs list, a run's history, the workers):
bounded queries, each served by an index."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Integer, String, and_, cast, func, literal, null, select, text, union_all
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from db.repository.tables import attempts, events, steps, workers
from db.states import AttemptStatus, StepStatus


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


async def output_fields(
    conn: AsyncConnection,
    *,
    run_ids: Sequence[uuid.UUID],
    fields: Sequence[tuple[str, tuple[str, ...]]],
) -> dict[uuid.UUID, dict[tuple[str, tuple[str, ...]], Any]]:
    """The values at (step key, path within its output) of each run's recorded outputs,
    absent ones left out: one scan of the unique (run_id, key) index for a page of runs,
    each value extracted in the database (`#>`), not the whole output sent."""
    keys = sorted({key for key, _ in fields})
    if not run_ids or not keys:
        return {}
    stmt = select(steps.c.run_id, steps.c.key, *(steps.c.output[path] for _, path in fields)).where(
        steps.c.run_id.in_(list(run_ids)), steps.c.key.in_(keys)
    )
    found: dict[uuid.UUID, dict[tuple[str, tuple[str, ...]], Any]] = {}
    for run_id, key, *values in await conn.execute(stmt):
        mine = {f: v for f, v in zip(fields, values, strict=True) if f[0] == key and v is not None}
        found.setdefault(run_id, {}).update(mine)
    return found


async def run_history(
    conn: AsyncConnection,
    *,
    run_id: uuid.UUID,
    endings: Iterable[AttemptStatus],
    limit: int = 500,
) -> list[dict[str, Any]]:
    """What happened to a run, oldest first: its events (who asked for what: created,
    resumed, retried, cancelled, reconciled) and its attempts that ended in one of
    `endings`, read from the attempts (ix_step_attempts_run) so that claiming and finishing
    a step write nothing more. Attempt rows carry `status`, `step_key`, `attempt`, `worker`,
    and `taken_by`: for a lost attempt, the worker whose claim took its step over (its
    successor started the instant it was lost), None when something else released it."""
    e, a, later = events, attempts, attempts.alias("later")
    absent_text, absent_int = cast(null(), String), cast(null(), Integer)
    logged = select(
        e.c.created_at.label("at"), literal(1).label("tie"), e.c.id.label("seq"),
        e.c.kind, e.c.actor, e.c.detail, absent_text.label("status"),
        absent_text.label("step_key"), absent_int.label("attempt"),
        absent_text.label("worker"), absent_text.label("taken_by"),
    ).where(e.c.run_id == run_id)  # fmt: skip
    taken_over = and_(
        a.c.status == AttemptStatus.LOST.value,
        later.c.step_run_id == a.c.step_run_id,
        later.c.attempt > a.c.attempt,
        later.c.started_at == a.c.finished_at,
    )
    detail = func.jsonb_strip_nulls(func.jsonb_build_object(
        "error_type", a.c.error_type, "message", a.c.error_message, "queue", a.c.queue,
        "duration_ms", a.c.duration_ms,
    ), type_=JSONB)  # fmt: skip
    ended = (
        select(
            func.coalesce(a.c.finished_at, a.c.started_at).label("at"),
            literal(0).label("tie"),
            a.c.id.label("seq"),
            absent_text.label("kind"),
            absent_text.label("actor"),
            detail.label("detail"),
            a.c.status,
            a.c.step_key,
            a.c.attempt,
            a.c.worker_hostname.label("worker"),
            later.c.worker_hostname.label("taken_by"),
        )
        .select_from(a.outerjoin(later, taken_over))
        .where(a.c.run_id == run_id, a.c.status.in_([s.value for s in endings]))
    )
    both = union_all(logged, ended).subquery()
    stmt = select(both).order_by(both.c.at, both.c.tie, both.c.seq).limit(limit)
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
