"""The dispatch outbox: intents written with the state change that asks for them.

A relay locks a due intent (`FOR UPDATE SKIP LOCKED`, so relays in several processes
never publish the same one at once), publishes its canvas, and marks it sent in the same
transaction. An intent whose run moved on (another generation, cancelled) is discarded.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from db.repository.tables import intents, runs


class Intent(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    run_id: uuid.UUID
    generation: int
    canvas: dict[str, Any]
    reason: str
    publish_attempts: int
    trace: dict[str, str] | None = None
    #: The run's generation and status now, to tell a live intent from a stale one.
    run_generation: int
    run_status: str


async def add_intent(
    conn: AsyncConnection,
    *,
    run_id: uuid.UUID,
    generation: int,
    canvas: dict[str, Any],
    reason: str,
    grace_s: float,
    trace: dict[str, str] | None = None,
) -> int:
    """Record that `generation` of the run must be published. Background relays leave it
    to the writer for `grace_s` (it publishes at once after committing)."""
    stmt = (
        insert(intents)
        .values(
            run_id=run_id,
            generation=generation,
            canvas=canvas,
            reason=reason,
            trace=trace or None,
            available_at=func.now() + text(f"make_interval(secs => {float(grace_s)})"),
        )
        .returning(intents.c.id)
    )
    return int((await conn.execute(stmt)).scalar_one())


_SELECT = select(
    intents.c.id,
    intents.c.run_id,
    intents.c.generation,
    intents.c.canvas,
    intents.c.reason,
    intents.c.publish_attempts,
    intents.c.trace,
    runs.c.generation.label("run_generation"),
    runs.c.status.label("run_status"),
).join(runs, runs.c.id == intents.c.run_id)
_UNSENT = (intents.c.sent_at.is_(None), intents.c.discarded_at.is_(None))


async def lock_intent(conn: AsyncConnection, *, intent_id: int) -> Intent | None:
    """The unsent intent, locked for this transaction; None if sent or another relay has it."""
    stmt = _SELECT.where(intents.c.id == intent_id, *_UNSENT).with_for_update(
        of=intents, skip_locked=True
    )
    row = (await conn.execute(stmt)).one_or_none()
    return Intent.model_validate(row._mapping) if row else None


async def lock_due_intents(conn: AsyncConnection, *, limit: int) -> list[Intent]:
    """Unsent intents whose time has come, oldest first, locked for this transaction."""
    stmt = (
        _SELECT.where(*_UNSENT, intents.c.available_at <= func.now())
        .order_by(intents.c.available_at)
        .limit(limit)
        .with_for_update(of=intents, skip_locked=True)
    )
    return [Intent.model_validate(r._mapping) for r in await conn.execute(stmt)]


async def intent_of(conn: AsyncConnection, *, run_id: uuid.UUID, generation: int) -> int | None:
    stmt = select(intents.c.id).where(
        intents.c.run_id == run_id, intents.c.generation == generation
    )
    return (await conn.execute(stmt)).scalar_one_or_none()


async def mark_intent(
    conn: AsyncConnection, *, intent_id: int, outcome: Literal["sent", "discarded"]
) -> None:
    column = "sent_at" if outcome == "sent" else "discarded_at"
    await conn.execute(
        update(intents).where(intents.c.id == intent_id).values({column: func.now()})
    )


async def postpone_intent(
    conn: AsyncConnection, *, intent_id: int, error: str, delay_s: float
) -> None:
    """The broker refused it: try again after `delay_s`."""
    await conn.execute(
        update(intents)
        .where(intents.c.id == intent_id)
        .values(
            publish_attempts=intents.c.publish_attempts + 1,
            last_error=error[:2000],
            available_at=func.now() + text(f"make_interval(secs => {float(delay_s)})"),
        )
    )
