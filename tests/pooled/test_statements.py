"""The claim protocol's statements behind PgBouncer in transaction mode: prepared once per
server connection under a name made from their text, reused by every client, and
prepared again (not failed) where a server connection lacks one. Asserted on the server
connections themselves (their pids and `pg_prepared_statements`)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from db.engine import connect, driver_connection, on_driver
from tests.pgbouncer import PgBouncer
from tests.support import patched_environment

pytestmark = pytest.mark.slow

STATEMENT = "SELECT count(*) FROM step_runs WHERE run_id IS NOT NULL AND attempts >= $1"


async def _server(conn: asyncpg.Connection) -> tuple[int, list[str]]:
    """Which server connection this transaction runs on, and the statements it holds."""
    pid = await conn.fetchval("SELECT pg_backend_pid()")
    names = await conn.fetch("SELECT name FROM pg_prepared_statements ORDER BY name")
    return pid, [r["name"] for r in names]


async def _count(conn: asyncpg.Connection) -> tuple[int, int, list[str]]:
    found = await conn.fetchval(STATEMENT, 0)
    return (found, *await _server(conn))


async def test_a_statement_follows_the_client_to_every_server_connection(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Two server connections: the client's statement, prepared on the first, is run on
    the second while another client holds the first, then on the first again by a
    client that never prepared it: each time a right answer, never an error."""
    direct = env["DATABASE_DIRECT_URL"]
    bouncer = PgBouncer(tmp_path / "pgbouncer", direct, pool_size=2)
    bouncer.start()
    url = bouncer.url(make_url(direct).database or "")
    holder = None
    try:
        with patched_environment({"DATABASE_URL": url}):
            _, first, held = await on_driver(_count)
            assert [n for n in held if n.startswith("reelflow_")], held
            assert not [n for n in held if n.startswith("__asyncpg")], held  # never per client

            holder = await connect(url, pooled=True, shared=True)
            hold = holder.transaction()
            await hold.start()
            # PgBouncer hands out the server connection released last: the client's.
            assert await holder.fetchval("SELECT pg_backend_pid()") == first
            # So the client's next transaction runs where its statement was never prepared.
            count, second, _ = await on_driver(_count)
            assert count == 0 and second != first
            await hold.rollback()

            newcomer = await connect(url, pooled=True, shared=True)
            try:
                for _ in range(4):  # every server connection now holds it: no error
                    async with newcomer.transaction():
                        assert (await _count(newcomer))[0] == 0
            finally:
                await newcomer.close()
            (await driver_connection()).terminate()
    finally:
        if holder is not None:
            holder.terminate()
        bouncer.stop()
    assert "prepared statement" not in bouncer.tail(200_000)
