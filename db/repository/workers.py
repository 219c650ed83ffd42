"""Worker heartbeats: each worker's main process refreshes its row every few seconds."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from db.repository.tables import workers


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
