"""Steps and attempts: read, reset, queue, cancel, supersede, and re-attach map items."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from db.models import OPEN_STEP
from db.records import AttemptRecord, NewStep, OpenStep, StepRecord
from db.repository.tables import attempts, steps
from db.states import (
    ATTEMPT_OPEN,
    LOST_ERROR_TYPE,
    LOST_MESSAGE,
    STEP_SUPERSEDABLE,
    AttemptStatus,
    StepStatus,
    step_sources,
    values,
)


async def get_steps(conn: AsyncConnection, *, run_id: uuid.UUID) -> list[StepRecord]:
    stmt = select(steps).where(steps.c.run_id == run_id).order_by(steps.c.id)
    return [StepRecord.model_validate(r._mapping) for r in await conn.execute(stmt)]


async def open_steps(conn: AsyncConnection, *, run_id: uuid.UUID) -> list[OpenStep]:
    """The steps not finished for good (neither succeeded nor superseded), read through the
    partial index: an operation's cost does not grow with the steps already done."""
    stmt = text(
        f"SELECT key, step, status, item_index, celery_task_id FROM step_runs"
        f" WHERE run_id = :run_id AND {OPEN_STEP} ORDER BY id"
    )
    rows = await conn.execute(stmt, {"run_id": run_id})
    return [OpenStep.model_validate(r._mapping) for r in rows]


async def count_steps(conn: AsyncConnection, *, run_id: uuid.UUID) -> dict[StepStatus, int]:
    stmt = (
        select(steps.c.status, func.count())
        .where(steps.c.run_id == run_id)
        .group_by(steps.c.status)
    )
    return {StepStatus(s): int(n) for s, n in await conn.execute(stmt)}


async def get_step_output(
    conn: AsyncConnection, *, run_id: uuid.UUID, key: str
) -> tuple[StepStatus, Any] | None:
    stmt = select(steps.c.status, steps.c.output).where(
        steps.c.run_id == run_id, steps.c.key == key
    )
    row = (await conn.execute(stmt)).one_or_none()
    return (StepStatus(row.status), row.output) if row else None


async def get_attempts(
    conn: AsyncConnection, *, run_id: uuid.UUID, key: str | None = None
) -> list[AttemptRecord]:
    stmt = select(attempts).where(attempts.c.run_id == run_id)
    if key is not None:
        stmt = stmt.where(attempts.c.step_key == key)
    stmt = stmt.order_by(attempts.c.step_key, attempts.c.attempt)
    return [AttemptRecord.model_validate(r._mapping) for r in await conn.execute(stmt)]


async def set_steps_status(
    conn: AsyncConnection,
    *,
    run_id: uuid.UUID,
    keys: Iterable[str],
    status: StepStatus,
    names: Iterable[str] = (),
    only_from: Iterable[StepStatus] | None = None,
) -> list[str]:
    """Move the steps with these keys, and every step (each item of a map) with these
    names, to `status` from one of `only_from` (default: every declared source); return
    the keys moved. Back to pending clears the output and the error."""
    keys, names = list(keys), list(names)
    if not keys and not names:
        return []
    sources = step_sources(status) if only_from is None else frozenset(only_from)
    vals: dict[str, Any] = {"status": status.value, "updated_at": func.now()}
    if status is StepStatus.QUEUED:
        vals["queued_at"] = func.now()
    if status is StepStatus.PENDING:
        vals.update(output=None, output_digest=None, reused_from=None, error=None,
                    finished_at=None)  # fmt: skip
    if status in (StepStatus.PENDING, StepStatus.CANCELLED, StepStatus.SUPERSEDED):
        vals.update(lease_owner=None, lease_worker=None, lease_expires_at=None)
    if status in (StepStatus.CANCELLED, StepStatus.SUPERSEDED):
        vals["finished_at"] = func.now()
    stmt = (
        update(steps)
        .where(
            steps.c.run_id == run_id,
            or_(steps.c.key.in_(keys), steps.c.step.in_(names)),
            steps.c.status.in_(values(sources)),
        )
        .values(**vals)
        .returning(steps.c.key)
    )
    return [r.key for r in await conn.execute(stmt)]


async def supersede_items(
    conn: AsyncConnection, *, run_id: uuid.UUID, mapped: Iterable[str]
) -> list[str]:
    """Every item of these maps leaves the run (kept as history): their source reruns."""
    names = list(mapped)
    if not names:
        return []
    stmt = (
        update(steps)
        .where(
            steps.c.run_id == run_id,
            steps.c.step.in_(names),
            steps.c.item_index.is_not(None),
            steps.c.status.in_(values(STEP_SUPERSEDABLE)),
        )
        .values(
            status=StepStatus.SUPERSEDED.value,
            finished_at=func.now(),
            updated_at=func.now(),
            lease_owner=None,
            lease_worker=None,
            lease_expires_at=None,
        )
        .returning(steps.c.key)
    )
    return [r.key for r in await conn.execute(stmt)]


async def attach_items(
    conn: AsyncConnection, *, run_id: uuid.UUID, items: Sequence[NewStep]
) -> None:
    """A map expands: each item row is created, or a superseded one with its index comes
    back as pending with the new item (its attempt history continues)."""
    if not items:
        return
    stmt = pg_insert(steps).values([{"run_id": run_id, **s.model_dump()} for s in items])
    stmt = stmt.on_conflict_do_update(
        index_elements=["run_id", "key"],
        set_={
            "status": StepStatus.PENDING.value,
            "item": stmt.excluded.item,
            "item_digest": stmt.excluded.item_digest,
            "output": None,
            "output_digest": None,
            "reused_from": None,
            "error": None,
            "finished_at": None,
            "max_attempts": steps.c.attempts + stmt.excluded.max_attempts,
            "updated_at": func.now(),
        },
        where=steps.c.status == StepStatus.SUPERSEDED.value,
    )
    await conn.execute(stmt)


async def renew_budgets(
    conn: AsyncConnection, *, run_id: uuid.UUID, keys: list[str], budgets: dict[str, int]
) -> None:
    """Reset steps get their step's whole attempt budget again, counted from now (so lost
    and failed attempts of earlier dispatches don't eat it). One statement for any width."""
    if not keys:
        return
    await conn.execute(
        text(
            "UPDATE step_runs SET max_attempts = attempts + (CAST(:budgets AS jsonb) ->> step)::int"
            " WHERE run_id = :run_id AND key = ANY(:keys)"
        ),
        {"budgets": json.dumps(budgets), "run_id": run_id, "keys": keys},
    )


async def mark_queued(conn: AsyncConnection, *, run_id: uuid.UUID, keys: Iterable[str]) -> None:
    """Steps whose messages are about to be sent: pending -> queued."""
    await set_steps_status(
        conn, run_id=run_id, keys=keys, status=StepStatus.QUEUED, only_from={StepStatus.PENDING}
    )


async def close_running_attempts(
    conn: AsyncConnection, *, run_id: uuid.UUID, status: AttemptStatus, message: str
) -> None:
    """Close attempts left open (a cancelled run's), so history shows how they ended."""
    await conn.execute(
        update(attempts)
        .where(attempts.c.run_id == run_id, attempts.c.status == ATTEMPT_OPEN.value)
        .values(
            status=status.value,
            finished_at=func.now(),
            error_message=message,
            duration_ms=func.extract("epoch", func.now() - attempts.c.started_at) * 1000,
        )
    )


async def lose_attempts(
    conn: AsyncConnection, *, run_id: uuid.UUID, keys: Iterable[str]
) -> list[str]:
    """Running steps whose worker is gone go back to pending; their attempts are `lost`."""
    keys = list(keys)
    moved = await set_steps_status(
        conn, run_id=run_id, keys=keys, status=StepStatus.PENDING, only_from={StepStatus.RUNNING}
    )
    if moved:
        await conn.execute(
            update(attempts)
            .where(
                attempts.c.run_id == run_id,
                attempts.c.step_key.in_(moved),
                attempts.c.status == ATTEMPT_OPEN.value,
            )
            .values(
                status=AttemptStatus.LOST.value,
                finished_at=func.now(),
                error_type=LOST_ERROR_TYPE,
                error_message=LOST_MESSAGE,
                duration_ms=func.extract("epoch", func.now() - attempts.c.started_at) * 1000,
            )
        )
    return moved


async def step_states(
    conn: AsyncConnection, *, pairs: Sequence[tuple[uuid.UUID, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """Attempt, start and lease of the given (run id, step key) pairs, for introspection."""
    if not pairs:
        return {}
    stmt = select(
        steps.c.run_id,
        steps.c.key,
        steps.c.attempts,
        steps.c.started_at,
        steps.c.lease_owner,
    ).where(tuple_(steps.c.run_id, steps.c.key).in_(list(pairs)))
    return {(str(r.run_id), r.key): dict(r._mapping) for r in await conn.execute(stmt)}
