"""Revisions of runs: the audited, immutable record of each change an operator made, and
the row changes a revision brings to a map whose source's output was replaced."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from db.records import NewStep
from db.repository.tables import revisions, steps
from db.states import StepStatus


async def add_revision(
    conn: AsyncConnection,
    *,
    run_id: uuid.UUID,
    actor: str,
    reason: str,
    params_patch: dict[str, Any],
    params_before: dict[str, Any],
    params_after: dict[str, Any],
    outputs_before: dict[str, Any],
    outputs_after: dict[str, Any],
    plan: dict[str, Any],
) -> int:
    """Record a revision (numbered 1, 2, ... per run; the run's row is locked by the
    caller, so numbers never collide); returns its number."""
    number = (
        await conn.execute(
            select(func.coalesce(func.max(revisions.c.number), 0) + 1).where(
                revisions.c.run_id == run_id
            )
        )
    ).scalar_one()
    await conn.execute(
        insert(revisions).values(
            run_id=run_id,
            number=number,
            actor=actor,
            reason=reason,
            params_patch=params_patch,
            params_before=params_before,
            params_after=params_after,
            outputs_before=outputs_before,
            outputs_after=outputs_after,
            plan=plan,
        )
    )
    return int(number)


async def list_revisions(conn: AsyncConnection, *, run_id: uuid.UUID) -> list[dict[str, Any]]:
    stmt = select(revisions).where(revisions.c.run_id == run_id).order_by(revisions.c.number)
    return [dict(r._mapping) for r in await conn.execute(stmt)]


async def set_items(conn: AsyncConnection, *, run_id: uuid.UUID, items: Sequence[NewStep]) -> None:
    """A map's items as its source's replaced output has them: a row whose item changed
    (or that was superseded) becomes pending with the new item; new indices get rows."""
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
    )
    await conn.execute(stmt)
