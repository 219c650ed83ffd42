"""The claim and the pools' statements under races, against real PostgreSQL and no worker:
two deliveries of one step claiming at once, two runs' executions of one input key
claiming at once, a slot whose holder's lease lapsed while its
worker lives, grants taken by two publishers, a grant whose message was lost, a process
started without POOLS, and a run parked for a slot that the reconciler must leave alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from db import pools
from db import repository as repo
from db.claims import ClaimOutcome, claim
from db.engine import get_engine
from db.engine.connection import driver_dsn
from reelflow.settings import get_settings
from tests.support import patched_environment
from workflows.runs.operations import start_run

DEAD_AFTER = 10.0


@pytest.fixture(scope="module")
def pooled(env: dict[str, str]) -> Iterator[dict[str, str]]:
    with patched_environment({**env, "POOLS": "gpu:1"}):
        yield env


@pytest.fixture
async def conns(pooled: dict[str, str]) -> AsyncIterator[list[asyncpg.Connection]]:
    dsn = driver_dsn(get_settings().require_database_url())
    opened = [await asyncpg.connect(dsn) for _ in range(2)]
    async with get_engine().begin() as conn:
        await conn.exec_driver_sql("DELETE FROM slot_waits")
        await conn.exec_driver_sql("DELETE FROM pool_slots")
        await repo.sync_slots(conn, sizes={"gpu": 1})
    try:
        yield opened
    finally:
        for conn in opened:
            await conn.close()


async def _ready_hold(db: asyncpg.Connection) -> tuple[uuid.UUID, int]:
    """A slot_probe run whose `a` succeeded: `hold` (on the gpu pool) may be claimed."""
    run_id = (await start_run("slot_probe", {"hold_ms": 10, "width": 0})).run.id
    await db.execute(
        "UPDATE step_runs SET status = 'succeeded', output = '{}', output_digest = 'x'"
        " WHERE run_id = $1 AND key = 'a'",
        run_id,
    )
    generation = await db.fetchval("SELECT generation FROM workflow_runs WHERE id = $1", run_id)
    return run_id, generation


def _claim_kw(run_id: uuid.UUID, generation: int, owner: str, **kw: Any) -> dict[str, Any]:
    return {
        "run_id": run_id, "key": "hold", "generation": generation, "deps": ["a"],
        "mapped_deps": [], "owner": owner, "worker_id": kw.pop("worker_id", None),
        "hostname": "test", "task_id": f"task-{owner}", "queue": "gpu", "lease_seconds": 30,
        "worker_dead_after": DEAD_AFTER, "pool": "gpu", **kw,
    }  # fmt: skip


async def _slots(db: asyncpg.Connection) -> list[asyncpg.Record]:
    return await db.fetch("SELECT * FROM pool_slots WHERE pool = 'gpu' ORDER BY slot")


async def test_two_deliveries_claiming_at_once_take_one_attempt_and_one_slot(
    conns: list[asyncpg.Connection],
) -> None:
    first, second = conns
    run_id, generation = await _ready_hold(first)
    async with get_engine().begin() as conn:  # room for a second slot a duplicate could take
        await repo.sync_slots(conn, sizes={"gpu": 2})
    tx = first.transaction()
    await tx.start()
    won = await claim(first, **_claim_kw(run_id, generation, "one"))
    assert won.outcome is ClaimOutcome.CLAIMED
    # the duplicate claims while the first has not committed: it must wait for it, then
    # see its attempt, not take the step again from what it read before
    racing = asyncio.create_task(claim(second, **_claim_kw(run_id, generation, "two")))
    await asyncio.sleep(0.5)
    await tx.commit()
    lost = await racing
    assert lost.outcome is ClaimOutcome.BUSY, lost
    row = await first.fetchrow(
        "SELECT attempts, lease_owner FROM step_runs WHERE run_id = $1 AND key = 'hold'", run_id
    )
    assert (row["attempts"], row["lease_owner"]) == (1, "one")
    attempts = await first.fetch(
        "SELECT attempt, status FROM step_attempts WHERE run_id = $1 AND step_key = 'hold'", run_id
    )
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "running")]
    held = [s for s in await _slots(first) if s["holder_step_id"] is not None]
    assert [(s["holder_step_id"], s["holder_attempt"]) for s in held] == [(won.step_id, 1)]


async def test_two_executions_of_one_key_claiming_at_once_compute_it_once(
    conns: list[asyncpg.Connection],
) -> None:
    """Two identical runs: the second's claim comes while the first's has not committed.
    It waits for it and then sees the key being computed (AWAITING), instead of reading
    from before and computing the same key a second time."""
    first, second = conns
    async with get_engine().begin() as conn:
        await repo.sync_slots(conn, sizes={"gpu": 2})
    run_a, gen_a = await _ready_hold(first)
    run_b, gen_b = await _ready_hold(first)
    tx = first.transaction()
    await tx.start()
    won = await claim(first, **_claim_kw(run_a, gen_a, "one", code_version="v1"))
    assert won.outcome is ClaimOutcome.CLAIMED and won.input_key
    racing = asyncio.create_task(claim(second, **_claim_kw(run_b, gen_b, "two", code_version="v1")))
    await asyncio.sleep(0.5)
    await tx.commit()
    other = await racing
    assert other.outcome is ClaimOutcome.AWAITING, other
    assert other.input_key == won.input_key
    assert (
        await first.fetchval(
            "SELECT count(*) FROM step_attempts WHERE step_key = 'hold' AND run_id = ANY($1)",
            [run_a, run_b],
        )
        == 1
    )


async def test_tidying_never_frees_a_slot_a_claim_is_taking(
    conns: list[asyncpg.Connection],
) -> None:
    """A retried step's next attempt retakes its slot while a worker tidies: the tidy
    must not judge the slot by the attempt that ended and free it under the new one."""
    first, second = conns
    run_id, generation = await _ready_hold(first)
    held = await claim(first, **_claim_kw(run_id, generation, "one"))
    assert held.outcome is ClaimOutcome.CLAIMED
    await first.execute(  # its attempt failed (transiently) before its slot was given back
        "UPDATE step_runs SET status = 'retrying', lease_owner = NULL WHERE id = $1",
        held.step_id,
    )
    tx = first.transaction()
    await tx.start()
    again = await claim(first, **_claim_kw(run_id, generation, "two"))
    assert (again.outcome, again.attempt) == (ClaimOutcome.CLAIMED, 2)
    tidying = asyncio.create_task(pools.tidy(second, sizes={"gpu": 1}))
    await asyncio.sleep(0.5)
    await tx.commit()
    await tidying
    [slot] = await _slots(first)
    assert (slot["holder_step_id"], slot["holder_attempt"]) == (held.step_id, 2)
    await pools.tidy(second, sizes={"gpu": 1})  # and a tidy after it leaves it too
    [slot] = await _slots(first)
    assert (slot["holder_step_id"], slot["holder_attempt"]) == (held.step_id, 2)


async def test_a_live_workers_lapsed_slot_is_not_given_to_another_step(
    conns: list[asyncpg.Connection],
) -> None:
    db, _ = conns
    worker = f"w-{uuid.uuid4().hex[:6]}"
    await db.execute(
        "INSERT INTO worker_heartbeats (id, hostname, pid, queues) VALUES ($1, 'h', 1, '[]')",
        worker,
    )
    run_a, gen_a = await _ready_hold(db)
    held = await claim(db, **_claim_kw(run_a, gen_a, "holder", worker_id=worker))
    assert held.outcome is ClaimOutcome.CLAIMED
    # an outage lapsed both leases; the worker is alive (it beats) and still renders
    await db.execute("UPDATE pool_slots SET lease_expires_at = now() - interval '1 s'")
    await db.execute(
        "UPDATE step_runs SET lease_expires_at = now() - interval '1 s' WHERE id = $1",
        held.step_id,
    )
    run_b, gen_b = await _ready_hold(db)
    other = await claim(db, **_claim_kw(run_b, gen_b, "other"))
    assert other.outcome is ClaimOutcome.NO_SLOT
    assert await pools.grant(db, pool="gpu", reserve_s=30, dead_after_s=DEAD_AFTER) == 0
    assert await _held() == [True]  # and GET /pools and the metrics say so too
    # the worker dies (silent past DEAD_AFTER): now the slot is free for the next
    await db.execute(
        "UPDATE worker_heartbeats SET last_seen = now() - interval '1 hour' WHERE id = $1", worker
    )
    assert await _held() == [False]
    again = await claim(db, **_claim_kw(run_b, gen_b, "other"))
    assert again.outcome is ClaimOutcome.CLAIMED, again
    [slot] = await _slots(db)
    assert slot["holder_step_id"] == again.step_id


async def _held() -> list[bool]:
    async with get_engine().connect() as conn:
        view = await repo.pools_view(conn, dead_after_s=DEAD_AFTER)
    return [bool(slot["held"]) for slot in view["gpu"]["slots"]]


async def _park(db: asyncpg.Connection, run_id: uuid.UUID, generation: int) -> int:
    step_id: int = await db.fetchval(
        "SELECT id FROM step_runs WHERE run_id = $1 AND key = 'hold'", run_id
    )
    await pools.park(db, step_id=step_id, run_id=run_id, key="hold", pool="gpu",
                     tenant="t", priority=5, generation=generation,
                     signature={"task": "x", "args": []})  # fmt: skip
    return step_id


async def test_two_publishers_never_send_one_grant_twice_and_a_lost_one_is_granted_again(
    conns: list[asyncpg.Connection],
) -> None:
    first, second = conns
    run_id, generation = await _ready_hold(first)
    step_id = await _park(first, run_id, generation)
    assert await pools.grant(first, pool="gpu", reserve_s=0.5, dead_after_s=DEAD_AFTER) == 1
    taken = await asyncio.gather(
        pools.take_unsent(first, pool="gpu"), pools.take_unsent(second, pool="gpu")
    )
    assert sorted(len(t) for t in taken) == [0, 1]
    assert await pools.take_unsent(first, pool="gpu") == []
    # its message never reached a worker: when the reservation lapses it is granted again
    # (and sent again) rather than waiting forever
    await asyncio.sleep(0.7)
    assert await pools.grant(first, pool="gpu", reserve_s=30, dead_after_s=DEAD_AFTER) == 1
    [again] = await pools.take_unsent(first, pool="gpu")
    assert again.step_id == step_id
    # a publish that failed puts its grant back
    await pools.unsend(first, step_ids=[step_id])
    assert [g.step_id for g in await pools.take_unsent(second, pool="gpu")] == [step_id]


async def test_a_process_without_pools_or_with_fewer_slots_keeps_the_held_ones(
    conns: list[asyncpg.Connection],
) -> None:
    db, _ = conns
    async with get_engine().begin() as conn:
        await repo.sync_slots(conn, sizes={"gpu": 3})
    run_id, generation = await _ready_hold(db)
    await db.execute("UPDATE pool_slots SET reserved_for = 0, reserved_until = 'infinity'"
                     " WHERE slot < 2")  # fmt: skip
    held = await claim(db, **_claim_kw(run_id, generation, "holder"))
    assert (held.outcome, held.slot) == (ClaimOutcome.CLAIMED, 2)
    await db.execute("UPDATE pool_slots SET reserved_for = NULL, reserved_until = NULL")
    async with get_engine().begin() as conn:
        await repo.sync_slots(conn, sizes={})  # an API or CPU worker started without POOLS
    assert [s["slot"] for s in await _slots(db)] == [0, 1, 2]
    async with get_engine().begin() as conn:
        await repo.sync_slots(conn, sizes={"gpu": 1})  # shrunk: the held slot 2 stays
    assert [(s["slot"], s["holder_step_id"]) for s in await _slots(db)] == [
        (0, None),
        (2, held.step_id),
    ]
    async with get_engine().begin() as conn:
        await repo.sync_slots(conn, sizes={"cpu": 1})  # a worker with other pools only
    assert [s["slot"] for s in await _slots(db)] == [0, 2]  # takes nothing from gpu's
    await db.execute(
        "UPDATE step_runs SET status = 'succeeded', output = '{}' WHERE id = $1", held.step_id
    )
    await pools.tidy(db, sizes={"gpu": 3})  # a worker still on the old size: frees, keeps
    assert [(s["slot"], s["holder_step_id"]) for s in await _slots(db)] == [(0, None), (2, None)]
    async with get_engine().begin() as conn:  # the next start with gpu:1 drops the surplus
        await repo.sync_slots(conn, sizes={"gpu": 1})
    assert [s["slot"] for s in await _slots(db)] == [0]


async def test_a_run_waiting_for_a_slot_is_not_taken_for_stalled(
    conns: list[asyncpg.Connection],
) -> None:
    db, _ = conns
    run_id, generation = await _ready_hold(db)
    await db.execute("UPDATE workflow_runs SET status = 'running' WHERE id = $1", run_id)
    await _park(db, run_id, generation)
    await db.execute(
        "UPDATE workflow_runs SET updated_at = now() - interval '1 hour' WHERE id = $1", run_id
    )
    await db.execute(
        "UPDATE step_runs SET updated_at = now() - interval '1 hour' WHERE run_id = $1", run_id
    )
    async with get_engine().connect() as conn:
        stalled = await repo.stalled_runs(conn, stall_after_s=60)
    assert run_id not in [r.id for r in stalled]
    await db.execute("DELETE FROM slot_waits WHERE run_id = $1", run_id)
    async with get_engine().connect() as conn:
        stalled = await repo.stalled_runs(conn, stall_after_s=60)
    assert run_id in [r.id for r in stalled]
