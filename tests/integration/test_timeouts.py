"""Every statement has a statement timeout and every lock wait a lock timeout, set per
transaction: a held lock or a stuck query never hangs a worker or the API. Hitting one is
transient: the step's database call is tried again, and the timeout counted. So is a pool
with no free connection. The same tests run behind PgBouncer in transaction mode
(tests/pooled)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

from db.engine import create_engine, driver_session
from db.errors import db_retry, is_unavailable, timeout_kind
from db.states import RunStatus, StepStatus
from tests.support import (
    WorkerProcess,
    attempt_rows,
    counter_values,
    patched_environment,
    wait_run,
    wait_step,
)
from workflows.runs.operations import start_run

#: Short enough that a lock held for seconds outlasts it many times over.
LOCK_TIMEOUT_MS = 300


@pytest.fixture(scope="module")
def timed_worker(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    log = Path(tmp_path_factory.mktemp("worker")) / "worker.log"
    settings = {**env, "DATABASE_LOCK_TIMEOUT_MS": str(LOCK_TIMEOUT_MS)}
    proc = WorkerProcess(settings, log, name=f"timed-{uuid.uuid4().hex[:6]}", concurrency=1)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


async def test_every_transaction_carries_both_timeouts(env: dict[str, str]) -> None:
    values = {"DATABASE_STATEMENT_TIMEOUT_MS": "4321", "DATABASE_LOCK_TIMEOUT_MS": "1234"}
    with patched_environment(values):
        engine = create_engine(env["DATABASE_URL"])
        try:
            for _ in range(3):  # each transaction, on whichever server connection
                async with engine.begin() as conn:
                    found = await conn.execute(
                        text(
                            "SELECT current_setting('statement_timeout'),"
                            " current_setting('lock_timeout')"
                        )
                    )
                    assert tuple(found.one()) == ("4321ms", "1234ms")
        finally:
            await engine.dispose()
        async with driver_session() as conn:  # the claim protocol's connection
            found = await conn.fetchrow(
                "SELECT current_setting('statement_timeout') s, current_setting('lock_timeout') l"
            )
        await conn.close()  # made under these settings: not for the next test
    assert (found["s"], found["l"]) == ("4321ms", "1234ms")


async def test_a_stuck_statement_is_stopped_and_transient(env: dict[str, str]) -> None:
    with patched_environment({"DATABASE_STATEMENT_TIMEOUT_MS": "200"}):
        engine = create_engine(env["DATABASE_URL"])
        started = time.monotonic()
        try:
            with pytest.raises(Exception) as caught:
                async with engine.begin() as conn:
                    await conn.execute(text("SELECT pg_sleep(5)"))
        finally:
            await engine.dispose()
    assert time.monotonic() - started < 3
    assert timeout_kind(caught.value) == "statement" and is_unavailable(caught.value)


async def test_a_lock_held_past_the_lock_timeout_delays_the_step_not_fails_it(
    env: dict[str, str], timed_worker: WorkerProcess
) -> None:
    before = (await counter_values("database_timeouts")).get("lock", 0)
    run_id = (await start_run("probe", {"width": 1, "sleep_ms": 800})).run.id
    await wait_step(run_id, "a", lambda s: s.status is StepStatus.RUNNING)
    engine = create_engine(env["DATABASE_URL"])
    try:
        async with engine.begin() as holder:  # another session holds b's row
            await holder.execute(
                text("SELECT 1 FROM step_runs WHERE run_id = :r AND key = 'b' FOR UPDATE"),
                {"r": run_id},
            )
            await asyncio.sleep(3)  # a finishes; b's claim waits, gives up, tries again
            b = await wait_step(run_id, "b", lambda s: True)
            assert b.status is not StepStatus.RUNNING and b.attempts == 0
    finally:
        await engine.dispose()

    run = await wait_run(run_id, worker=timed_worker, timeout=60)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert [a.status for a in await attempt_rows(run_id, "b")] == ["succeeded"]
    log = timed_worker.tail(400_000)
    assert "db_retrying" in log and "lock timeout" in log
    deadline = time.monotonic() + 10  # written with the worker's next database call
    while (await counter_values("database_timeouts")).get("lock", 0) <= before:
        assert time.monotonic() < deadline, "the lock timeouts were not counted"
        await asyncio.sleep(0.2)


async def test_a_full_pool_waits_then_retries_and_says_so_once(env: dict[str, str]) -> None:
    """No free connection in DATABASE_POOL_TIMEOUT_SECONDS: a transient error, retried (a
    worker's database call waits for one, it does not fail its step), logged once."""
    budget = {
        "DATABASE_POOL_SIZE": "1",
        "DATABASE_MAX_OVERFLOW": "0",
        "DATABASE_POOL_TIMEOUT_SECONDS": "0.2",
    }
    with patched_environment(budget):
        engine = create_engine(env["DATABASE_URL"])

        @db_retry
        async def read() -> int:
            async with engine.connect() as conn:
                return int((await conn.execute(text("SELECT 7"))).scalar_one())

        try:
            async with engine.connect() as held:  # the pool's only connection
                await held.execute(text("SELECT 1"))
                with capture_logs() as logs:
                    waiting = asyncio.create_task(read())
                    await asyncio.sleep(1.5)  # several pool timeouts go by
                    assert not waiting.done()
            assert await asyncio.wait_for(waiting, 10) == 7
        finally:
            await engine.dispose()
    retrying = [e for e in logs if e["event"] == "db_retrying"]
    assert len(retrying) == 1 and "QueuePool limit" in retrying[0]["error"], logs
