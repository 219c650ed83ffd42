"""Slot pools: the statements of waiting for a slot and handing slots over.

A step of a pool takes a slot in its claim's statement (`db.claim_statement`); when none is
free for it, it waits here, in PostgreSQL (its message is taken off the broker, so the
queue holds only what can run). Whenever a slot is given back (an attempt ends, a run is
cancelled, a lease expires), `grant` hands the free slots to the waiting steps: the highest
priority first, then round-robin across tenants (each tenant's next before anyone's
second, the tenant served longest ago first), then the oldest, and reserves each slot for
the step it went to, whose message is then published again (`granted`, `sent`).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from db.states import STEP_CLAIMABLE, StepStatus, sql_in

#: Slot-wait times (seconds), the histogram's bucket bounds.
WAIT_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)

_PARK = """
INSERT INTO slot_waits (step_id, run_id, step_key, pool, tenant, priority, generation,
                        signature)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
ON CONFLICT (step_id) DO UPDATE
SET generation = EXCLUDED.generation, signature = EXCLUDED.signature,
    priority = EXCLUDED.priority, tenant = EXCLUDED.tenant,
    granted_at = NULL, granted_slot = NULL, sent_at = NULL
"""


def slot_free(alias: str, *, dead_after: str) -> str:
    """SQL: the slot `alias` is held by no one: never taken, given back, or its holder's
    lease lapsed while its worker is dead (silent `dead_after` seconds, a SQL expression).
    A live worker keeps its slot through an outage that lapsed its lease, as it keeps its
    step: the slot is never handed to a second step while the first still runs."""
    return f"""({alias}.holder_step_id IS NULL OR ({alias}.lease_expires_at < now()
        AND NOT EXISTS (SELECT 1 FROM step_runs h JOIN worker_heartbeats hw
                        ON hw.id = h.lease_worker
                        WHERE h.id = {alias}.holder_step_id
                          AND h.attempts = {alias}.holder_attempt
                          AND h.status = '{StepStatus.RUNNING}'
                          AND hw.last_seen > now() - make_interval(secs => {dead_after}))))"""


#: The advisory lock of a pool's hand-overs (its name follows): one grant at a time, and
#: whatever else changes many of its slots and waits at once waits for it.
POOL_LOCK = "reelflow-pool:"
_LOCK = f"SELECT pg_advisory_xact_lock(hashtext('{POOL_LOCK}' || $1))"

_GRANT = f"""
WITH open_slots AS (
    -- locked, so no claim takes one between this read and its reservation (a locked row
    -- is read as it is now, not as the statement's snapshot saw it)
    SELECT q.slot FROM pool_slots q
    WHERE q.pool = $1 AND {slot_free("q", dead_after="$3")}
      AND (q.reserved_for IS NULL OR q.reserved_until < now())
    FOR UPDATE OF q SKIP LOCKED
), free AS (
    SELECT slot, row_number() OVER (ORDER BY slot) AS n FROM open_slots
), waiting AS (
    SELECT w.step_id, w.tenant, w.priority, w.enqueued_at,
           row_number() OVER (PARTITION BY w.priority, w.tenant
                              ORDER BY w.enqueued_at, w.step_id) AS turn
    FROM slot_waits w WHERE w.pool = $1 AND w.granted_at IS NULL
), next AS (
    SELECT w.step_id, w.tenant, w.enqueued_at,
           row_number() OVER (ORDER BY w.priority DESC, w.turn,
                              coalesce(t.last_granted, '-infinity'), w.enqueued_at,
                              w.step_id) AS n
    FROM waiting w LEFT JOIN pool_tenants t ON t.pool = $1 AND t.tenant = w.tenant
), pairs AS (
    SELECT free.slot, next.step_id, next.tenant, next.enqueued_at
    FROM free JOIN next USING (n)
), reserved AS (
    UPDATE pool_slots p SET reserved_for = pairs.step_id,
        reserved_until = now() + make_interval(secs => $2)
    FROM pairs WHERE p.pool = $1 AND p.slot = pairs.slot
), granted AS (
    UPDATE slot_waits w SET granted_at = now(), granted_slot = pairs.slot
    FROM pairs WHERE w.step_id = pairs.step_id
    RETURNING w.step_id
), served AS (
    INSERT INTO pool_tenants (pool, tenant, last_granted)
    SELECT DISTINCT $1, tenant, now() FROM pairs
    ON CONFLICT (pool, tenant) DO UPDATE SET last_granted = now()
), waited AS (
    -- the wait each grant ended, into the histogram (pool|tenant|bucket, and sums)
    INSERT INTO engine_counters (name, label, value)
    SELECT name, label, sum(value) FROM (
        SELECT 'slot_wait_bucket' AS name,
               $1 || '|' || p.tenant || '|' || coalesce((
                   SELECT b::text FROM unnest(ARRAY{list(WAIT_BUCKETS)}::float[]) b
                   WHERE b >= extract(epoch FROM now() - p.enqueued_at)
                   ORDER BY b LIMIT 1), '+Inf') AS label, 1::bigint AS value
        FROM pairs p
        UNION ALL
        SELECT 'slot_wait_ms_sum', $1 || '|' || p.tenant,
               round(extract(epoch FROM now() - p.enqueued_at) * 1000)::bigint
        FROM pairs p
    ) x GROUP BY name, label
    ON CONFLICT (name, label) DO UPDATE SET value = engine_counters.value + EXCLUDED.value
)
SELECT count(*) FROM granted
"""

_REGRANT = """
-- grants whose step never came for its slot (its message lost, a publisher that died
-- before sending it): once the reservation lapses, the step waits again, in its turn
UPDATE slot_waits w SET granted_at = NULL, granted_slot = NULL, sent_at = NULL
WHERE w.pool = $1 AND w.granted_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM pool_slots p WHERE p.pool = w.pool
                  AND p.reserved_for = w.step_id AND p.reserved_until >= now())
"""

_UNSENT = """
-- taken for sending, so two publishers never send the same grant; one that fails puts
-- them back (`unsend`), one that dies leaves them to `_REGRANT`
UPDATE slot_waits w SET sent_at = now()
FROM (SELECT step_id FROM slot_waits
      WHERE granted_at IS NOT NULL AND sent_at IS NULL AND ($1::text IS NULL OR pool = $1)
        AND granted_at < now() - make_interval(secs => $2)
      ORDER BY granted_at LIMIT 500
      FOR UPDATE SKIP LOCKED) due
WHERE w.step_id = due.step_id
RETURNING w.step_id, w.signature, w.granted_at
"""

_UNSEND = "UPDATE slot_waits SET sent_at = NULL WHERE step_id = ANY($1::bigint[])"

_RENEW = """
UPDATE pool_slots SET lease_expires_at = now() + make_interval(secs => $3)
WHERE holder_step_id = $1 AND holder_attempt = $2
"""

_ENDED_HOLDER = f"""p.holder_step_id IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM step_runs s WHERE s.id = p.holder_step_id AND s.status = '{StepStatus.RUNNING}'
      AND s.attempts = p.holder_attempt)"""

_TIDY = f"""
-- waits whose step no longer waits (cancelled, reset, gone)
DELETE FROM slot_waits w WHERE NOT EXISTS (
    SELECT 1 FROM step_runs s JOIN workflow_runs r ON r.id = s.run_id
    WHERE s.id = w.step_id AND s.status IN {sql_in(STEP_CLAIMABLE)}
      AND r.generation = w.generation)
"""

# Slots whose holder ended, in two statements: first lock them (skipping any a claim is
# taking now), then free those still ended, read after the locks. One statement would
# judge a slot a claim took meanwhile by a read from before that claim, and free it
# under its new, running holder.
_ENDED = f"""
SELECT p.pool, p.slot FROM pool_slots p WHERE {_ENDED_HOLDER}
ORDER BY p.pool, p.slot FOR UPDATE OF p SKIP LOCKED
"""

_FREE_ENDED = f"""
UPDATE pool_slots p SET holder_step_id = NULL, holder_attempt = NULL, holder_run_id = NULL,
    holder_key = NULL, holder_worker = NULL, tenant = NULL, since = NULL,
    lease_expires_at = NULL
FROM unnest($1::text[], $2::int[]) AS e(pool, slot)
WHERE p.pool = e.pool AND p.slot = e.slot AND {_ENDED_HOLDER}
"""

_UNRESERVE = """
-- reservations for steps that stopped waiting (a reserved slot is no one's for 30 s)
UPDATE pool_slots p SET reserved_for = NULL, reserved_until = NULL
WHERE p.reserved_for IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM slot_waits w WHERE w.step_id = p.reserved_for)
"""


@dataclass(frozen=True)
class Grant:
    step_id: int
    signature: dict[str, Any]


async def park(
    conn: asyncpg.Connection,
    *,
    step_id: int,
    run_id: uuid.UUID,
    key: str,
    pool: str,
    tenant: str,
    priority: int,
    generation: int,
    signature: dict[str, Any],
) -> None:
    """The step waits for a slot of `pool`, with the message to publish when granted one."""
    await conn.execute(_PARK, step_id, run_id, key, pool, tenant, priority, generation,
                       json.dumps(signature))  # fmt: skip


async def grant(
    conn: asyncpg.Connection, *, pool: str, reserve_s: float, dead_after_s: float
) -> int:
    """Hand the pool's free slots to its waiting steps (one grant at a time per pool);
    returns how many were granted. Each slot is reserved for its step `reserve_s`; a step
    that did not come for it by then waits again. `dead_after_s`: how long a worker is
    silent before its lapsed slots count as free."""
    async with conn.transaction():
        await conn.execute(_LOCK, pool)
        await conn.execute(_REGRANT, pool)
        granted: int = await conn.fetchval(_GRANT, pool, float(reserve_s), float(dead_after_s))
    return granted


async def take_unsent(
    conn: asyncpg.Connection, *, pool: str | None = None, older_than_s: float = 0.0
) -> list[Grant]:
    """Take the grants whose messages are not published yet (oldest first), marked sent:
    the caller publishes them, and puts back with `unsend` those it could not."""
    rows = await conn.fetch(_UNSENT, pool, float(older_than_s))
    rows = sorted(rows, key=lambda r: (r["granted_at"], r["step_id"]))
    return [Grant(r["step_id"], json.loads(r["signature"])) for r in rows]


async def unsend(conn: asyncpg.Connection, *, step_ids: list[int]) -> None:
    """Grants taken for sending whose publish failed: the next hand-over sends them."""
    if step_ids:
        await conn.execute(_UNSEND, step_ids)


async def renew(conn: asyncpg.Connection, *, step_id: int, attempt: int, lease_s: float) -> None:
    await conn.execute(_RENEW, step_id, attempt, float(lease_s))


async def tidy(conn: asyncpg.Connection, *, sizes: dict[str, int]) -> None:
    """Forget waits of steps that no longer wait, free slots whose holder ended, and drop
    reservations for steps no longer waiting. Under every pool's lock: no grant runs
    meanwhile. (Sizes change at a process's start, `sync_slots`: a worker still on the
    old POOLS during a rolling change must not undo the new size every few seconds.)"""
    async with conn.transaction():
        for pool in sorted(sizes):
            await conn.execute(_LOCK, pool)
        await conn.execute(_TIDY)
        ended = await conn.fetch(_ENDED)
        if ended:
            await conn.execute(_FREE_ENDED, [r["pool"] for r in ended], [r["slot"] for r in ended])
        await conn.execute(_UNRESERVE)
