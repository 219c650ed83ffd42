"""Slot pools, outside the hot path: making the slots POOLS declares, freeing a cancelled
run's, and what `GET /pools` and the metrics show."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from db.pools import POOL_LOCK, slot_free
from db.repository.tables import slots, waits

_FREE = {
    "holder_step_id": None, "holder_attempt": None, "holder_run_id": None, "holder_key": None,
    "holder_worker": None, "tenant": None, "since": None, "lease_expires_at": None,
}  # fmt: skip


async def sync_slots(conn: AsyncConnection, *, sizes: dict[str, int]) -> None:
    """One row per slot of every pool this process declares; the idle slots past a
    declared pool's size go (held or reserved ones once their step ends: the workers'
    tidy). Pools it does not declare are left as they are: a process started without
    POOLS (an API, a CPU worker) or with other pools is not the one that runs their steps,
    and must not take slots from those that do."""
    if not sizes:
        return
    surplus = [(slots.c.pool == pool) & (slots.c.slot >= size) for pool, size in sizes.items()]
    for pool, size in sizes.items():
        rows = [{"pool": pool, "slot": n} for n in range(size)]
        await conn.execute(pg_insert(slots).values(rows).on_conflict_do_nothing())
    idle = slots.c.holder_step_id.is_(None) & (
        slots.c.reserved_for.is_(None) | (slots.c.reserved_until < func.now())
    )
    await conn.execute(delete(slots).where(idle, or_(*surplus)))


async def release_run(conn: AsyncConnection, *, run_id: uuid.UUID) -> list[str]:
    """A cancelled run's slots go back and its waiting steps stop waiting; returns the
    pools that have slots to hand over now. Run in a transaction of its own, after the
    cancel's: under the pools' locks (as a grant is), slots before waits (as a claim
    takes them), so it never deadlocks with either."""
    touched = (
        select(slots.c.pool)
        .where(slots.c.holder_run_id == run_id)
        .union(select(waits.c.pool).where(waits.c.run_id == run_id))
    )  # a cancelled run takes no new slot: these are all it can have
    for pool in sorted(await conn.scalars(touched)):
        await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(POOL_LOCK + pool))))
    freed = await conn.execute(
        update(slots).where(slots.c.holder_run_id == run_id).values(**_FREE).returning(slots.c.pool)
    )
    released = {r.pool for r in freed}
    await conn.execute(
        update(slots)
        .where(slots.c.reserved_for.in_(select(waits.c.step_id).where(waits.c.run_id == run_id)))
        .values(reserved_for=None, reserved_until=None)
    )
    gone = await conn.execute(delete(waits).where(waits.c.run_id == run_id).returning(waits.c.pool))
    return sorted(released | {r.pool for r in gone})


async def release_attempts(conn: AsyncConnection, *, holders: list[tuple[int, int]]) -> list[str]:
    """The slots held by these attempts (step id, attempt) go back: attempts an operation
    stopped. Only those attempts: a later attempt of the same step keeps what it took. Run
    in a transaction of its own, under the pools' locks, as release_run is."""
    if not holders:
        return []
    touched = select(slots.c.pool).where(slots.c.holder_step_id.in_([h[0] for h in holders]))
    for pool in sorted(set(await conn.scalars(touched))):
        await conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(POOL_LOCK + pool))))
    released: set[str] = set()
    for step_id, attempt in holders:
        freed = await conn.execute(
            update(slots)
            .where(slots.c.holder_step_id == step_id, slots.c.holder_attempt == attempt)
            .values(**_FREE)
            .returning(slots.c.pool)
        )
        released |= {r.pool for r in freed}
    return sorted(released)


async def pools_view(conn: AsyncConnection, *, dead_after_s: float) -> dict[str, dict[str, Any]]:
    """Each pool: its slots (who holds each, since when; `held` as claims and grants judge
    it: a lapsed lease of a live worker is still held) and who waits (by tenant and
    priority)."""
    view: dict[str, dict[str, Any]] = {}
    held = text(f"NOT {slot_free('pool_slots', dead_after=':dead_after')} AS held")
    rows = await conn.execute(
        select(slots, held).order_by(slots.c.pool, slots.c.slot), {"dead_after": dead_after_s}
    )
    for row in rows:
        pool = view.setdefault(row.pool, {"slots": [], "waiting": []})
        pool["slots"].append(dict(row._mapping))
    waiting = await conn.execute(
        select(waits.c.pool, waits.c.tenant, waits.c.priority, func.count(),
               func.min(waits.c.enqueued_at))
        .where(waits.c.granted_at.is_(None))
        .group_by(waits.c.pool, waits.c.tenant, waits.c.priority)
        .order_by(waits.c.pool, waits.c.priority.desc(), waits.c.tenant)
    )  # fmt: skip
    for pool_name, tenant, priority, count, oldest in waiting:
        pool = view.setdefault(pool_name, {"slots": [], "waiting": []})
        pool["waiting"].append(
            {"tenant": tenant, "priority": priority, "count": int(count), "oldest": oldest}
        )
    return view
