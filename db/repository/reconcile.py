"""The reconciler's questions: dead attempts, stalled and unsettled runs, orphans; the
advisory lock under which one process at a time asks them; and the worker heartbeats it
judges liveness by (each worker's main process refreshes its row every few seconds)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from db.records import RunRecord
from db.repository.tables import workers
from db.states import (
    RUN_CLAIMABLE,
    RUN_LIVE,
    STEP_TERMINAL,
    RunStatus,
    StepStatus,
    sql_in,
)

#: Advisory lock key of the reconciler (any 64-bit number no other tool uses).
RECONCILER_LOCK = 0x7265656C666C6F77  # "reelflow"

_RUNNING = StepStatus.RUNNING.value
_FINISHED = STEP_TERMINAL | {StepStatus.SUPERSEDED}


@dataclass(frozen=True)
class RunningStep:
    run_id: uuid.UUID
    key: str
    celery_task_id: str | None
    lease_owner: str | None  # "<worker nodename>/<pid>"
    lease_worker: str | None
    lease_expired: bool
    worker_silent: bool  # it names its worker, whose heartbeat is missing or stale

    @property
    def nodename(self) -> str:
        return (self.lease_owner or "").rpartition("/")[0]


async def try_reconciler_lock(conn: AsyncConnection) -> bool:
    """The reconciler's lock, if free, held until `conn`'s transaction ends: its commit,
    its rollback, or its connection's death. A transaction's lock, never a session's:
    behind a transaction-mode pooler a session lock would stay with whichever server
    connection took it, and recovery would stop everywhere."""
    got = await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": RECONCILER_LOCK})
    return bool(got.scalar())


async def dead_running_steps(
    conn: AsyncConnection, *, dead_after_s: float
) -> tuple[list[RunningStep], list[RunningStep]]:
    """Running steps of live runs, split into (suspects, alive): a suspect's lease expired
    or its worker stopped beating. The caller still asks the workers whether one holds it."""
    rows = await conn.execute(
        text(
            f"""
            SELECT s.run_id, s.key, s.celery_task_id, s.lease_owner, s.lease_worker,
                   coalesce(s.lease_expires_at < now(), true) AS lease_expired,
                   (s.lease_worker IS NOT NULL
                    AND (w.last_seen IS NULL
                         OR w.last_seen < now() - make_interval(secs => :dead))) AS worker_silent
            FROM step_runs s
            JOIN workflow_runs r ON r.id = s.run_id
            LEFT JOIN worker_heartbeats w ON w.id = s.lease_worker
            WHERE s.status = '{_RUNNING}' AND r.status IN {sql_in(RUN_CLAIMABLE)}
            ORDER BY s.run_id, s.key
            """
        ),
        {"dead": float(dead_after_s)},
    )
    suspects: list[RunningStep] = []
    alive: list[RunningStep] = []
    for r in rows:
        step = RunningStep(**r._mapping)
        (suspects if step.lease_expired or step.worker_silent else alive).append(step)
    return suspects, alive


async def stalled_runs(
    conn: AsyncConnection, *, stall_after_s: float, limit: int = 100
) -> list[RunRecord]:
    """Running runs where nothing moved for `stall_after_s`, no step is running and none
    waits for a pool's slot (that wait is in PostgreSQL, and the pools' hand-over serves
    it): their next message may have been lost (a broker that forgot its queues)."""
    rows = await conn.execute(
        text(
            f"""
            SELECT r.* FROM workflow_runs r
            WHERE r.status = '{RunStatus.RUNNING}'
              AND r.updated_at < now() - make_interval(secs => :after)
              AND NOT EXISTS (
                  SELECT 1 FROM step_runs s
                  WHERE s.run_id = r.id
                    AND (s.status = '{_RUNNING}'
                         OR s.updated_at > now() - make_interval(secs => :after)))
              AND NOT EXISTS (
                  SELECT 1 FROM slot_waits w
                  WHERE w.run_id = r.id AND w.generation = r.generation)
            ORDER BY r.updated_at
            LIMIT :limit
            """
        ),
        {"after": float(stall_after_s), "limit": limit},
    )
    return [RunRecord.model_validate(r._mapping) for r in rows]


async def orphan_pending_runs(
    conn: AsyncConnection, *, older_than_s: float, limit: int = 100
) -> list[uuid.UUID]:
    """Pending runs with no unsent intent for their generation: nothing would dispatch them
    (left by a version of reelflow before the outbox). Never expected otherwise."""
    rows = await conn.execute(
        text(
            f"""
            SELECT r.id FROM workflow_runs r
            WHERE r.status IN {sql_in(RUN_LIVE - {RunStatus.RUNNING})}
              AND r.updated_at < now() - make_interval(secs => :older)
              AND NOT EXISTS (SELECT 1 FROM dispatch_intents i
                              WHERE i.run_id = r.id AND i.generation = r.generation
                                AND i.discarded_at IS NULL)
            LIMIT :limit
            """
        ),
        {"older": float(older_than_s), "limit": limit},
    )
    return [r.id for r in rows]


async def unsettled_runs(
    conn: AsyncConnection, *, limit: int = 100
) -> list[tuple[RunRecord, list[StepStatus]]]:
    """Running runs whose steps are all finished: (run, the set of their statuses)."""
    rows = await conn.execute(
        text(
            f"""
            SELECT r.*, array_agg(DISTINCT s.status) AS statuses FROM workflow_runs r
            JOIN step_runs s ON s.run_id = r.id
            WHERE r.status = '{RunStatus.RUNNING}'
            GROUP BY r.id
            HAVING bool_and(s.status IN {sql_in(_FINISHED)})
            LIMIT :limit
            """
        ),
        {"limit": limit},
    )
    out = []
    for row in rows:
        data = dict(row._mapping)
        statuses = [StepStatus(s) for s in data.pop("statuses")]
        out.append((RunRecord.model_validate(data), statuses))
    return out


async def database_now(conn: AsyncConnection) -> datetime:
    """The database's clock: ages are measured against the timestamps it wrote."""
    now: datetime = (await conn.execute(text("SELECT now()"))).scalar_one()
    return now


# --- worker heartbeats ------------------------------------------------------------


async def beat(
    conn: AsyncConnection, *, worker_id: str, hostname: str, pid: int, queues: list[str]
) -> None:
    stmt = pg_insert(workers).values(id=worker_id, hostname=hostname, pid=pid, queues=queues)
    stmt = stmt.on_conflict_do_update(
        index_elements=["id"], set_={"last_seen": func.now(), "queues": stmt.excluded.queues}
    )
    await conn.execute(stmt)
    # Rows of workers gone for an hour are history nobody reads: keep the table small.
    await conn.execute(
        text("DELETE FROM worker_heartbeats WHERE last_seen < now() - interval '1 hour'")
    )


async def forget_worker(conn: AsyncConnection, *, worker_id: str) -> None:
    """A worker shutting down warmly says so (its leases are released as it finishes)."""
    await conn.execute(delete(workers).where(workers.c.id == worker_id))


async def live_workers(conn: AsyncConnection, *, dead_after_s: float) -> list[dict[str, Any]]:
    """Workers that beat within `dead_after_s`: hostname, pid, queues, started, last seen."""
    stmt = select(workers).where(
        workers.c.last_seen > func.now() - text(f"make_interval(secs => {float(dead_after_s)})")
    )
    return [dict(r._mapping) for r in await conn.execute(stmt)]
