"""One reconciler pass at a time, under a transaction's advisory lock: a pass while another
holds it is skipped, and the lock is free again once the holder's transaction ends,
whether it commits or its connection dies. Nothing is left in a session: the same tests
run behind PgBouncer in transaction mode (tests/pooled)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from db import repository as repo
from db.engine import get_engine, pool_usage
from db.repository.reconcile import RECONCILER_LOCK
from reelflow.settings import get_settings
from workflows.recovery.reconciler import reconcile_once

pytestmark = pytest.mark.usefixtures("env")


async def test_a_pass_is_skipped_while_another_holds_the_lock() -> None:
    assert not (await reconcile_once()).skipped
    async with get_engine().begin() as holder:
        assert await repo.try_reconciler_lock(holder)
        assert (await reconcile_once()).skipped
        assert (await reconcile_once()).skipped
    # The holder's transaction ended: the lock went with it.
    assert not (await reconcile_once()).skipped


async def test_passes_one_after_another_are_never_skipped() -> None:
    """A lock left behind by a pass would skip every later one (recovery stopped)."""
    reports = [await reconcile_once() for _ in range(5)]
    assert not any(r.skipped for r in reports)


async def test_concurrent_passes_leave_the_lock_and_connections_free() -> None:
    """Passes started together: one at least runs, and the lock is free after."""
    reports = await asyncio.gather(*(reconcile_once() for _ in range(4)))
    assert sum(not r.skipped for r in reports) >= 1
    assert not (await reconcile_once()).skipped
    assert pool_usage().in_use == 0  # every pass gave its connections back


async def test_a_holder_that_dies_frees_the_lock() -> None:
    """A process killed mid-pass: its connection closes, its transaction and lock end."""
    url = get_settings().require_database_url().replace("postgresql+asyncpg", "postgresql")
    doomed = await asyncpg.connect(url, statement_cache_size=0)
    await doomed.execute("BEGIN")
    assert await doomed.fetchval("SELECT pg_try_advisory_xact_lock($1)", RECONCILER_LOCK)
    assert (await reconcile_once()).skipped
    doomed.terminate()
    for _ in range(50):  # the server notices the closed socket at once, the pooler too
        if not (await reconcile_once()).skipped:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the lock outlived its holder's connection")
