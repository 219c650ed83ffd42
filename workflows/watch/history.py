"""A run's history, as an operator reads it: what happened to it and who did it (its
events), and every attempt of every step on one timeline."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from db import repository as repo


async def timeline(conn: AsyncConnection, *, run_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every attempt, oldest first, each with `waited_ms`: how long it waited to start
    (since its step was queued, or since the attempt before it ended)."""
    await repo.require_run(conn, run_id=run_id)
    steps = {s.key: s for s in await repo.get_steps(conn, run_id=run_id)}
    attempts = await repo.get_attempts(conn, run_id=run_id)
    out: list[dict[str, Any]] = []
    previous_end: dict[str, datetime | None] = {}
    for a in sorted(attempts, key=lambda a: (a.started_at, a.attempt)):
        step = steps.get(a.step_key)
        since = previous_end.get(a.step_key) or (step.queued_at if step else None)
        # unknown when the step was queued again after this attempt (a resume moves it)
        waited = (a.started_at - since).total_seconds() * 1000 if since else None
        known = waited if waited is not None and waited >= 0 else None
        out.append({**a.model_dump(), "waited_ms": known})
        previous_end[a.step_key] = a.finished_at
    return out


async def events(conn: AsyncConnection, *, run_id: uuid.UUID) -> list[dict[str, Any]]:
    """What happened to the run and who did it, oldest first."""
    await repo.require_run(conn, run_id=run_id)
    return list(await repo.run_events(conn, run_id=run_id))
