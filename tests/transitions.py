"""Which status moves the test suite made, recorded by the databases themselves.

A trigger in every test database (never in a deployment's) notes each (table, from, to)
it sees; the fixtures collect the notes before dropping a database, and
`tests/test_state_machine.py` checks that the suite made every move `db/states.py`
declares, through public operations only.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

RECORDER = [
    """CREATE TABLE IF NOT EXISTS test_transitions (
        tbl text, src text, dst text, PRIMARY KEY (tbl, src, dst))""",
    """CREATE OR REPLACE FUNCTION test_record_transition() RETURNS trigger
       LANGUAGE plpgsql AS $$
       BEGIN
           INSERT INTO test_transitions VALUES (TG_TABLE_NAME, OLD.status, NEW.status)
           ON CONFLICT DO NOTHING;
           RETURN NULL;
       END $$""",
    *(
        f"""CREATE TRIGGER test_record AFTER UPDATE OF status ON {table} FOR EACH ROW
            WHEN (OLD.status IS DISTINCT FROM NEW.status)
            EXECUTE FUNCTION test_record_transition()"""
        for table in ("workflow_runs", "step_runs")
    ),
]

#: (table, src, dst) seen so far in this session, and the test modules that contributed.
SEEN: set[tuple[str, str, str]] = set()
CONTRIBUTORS: set[str] = set()


def install(url: str) -> None:
    async def go() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                for statement in RECORDER:
                    await conn.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(go())


def collect(url: str, contributor: str) -> None:
    """Add the moves recorded in the database at `url` (best effort: it may be gone)."""

    async def go() -> set[tuple[str, str, str]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(text("SELECT tbl, src, dst FROM test_transitions"))
                return {(r.tbl, r.src, r.dst) for r in rows}
        finally:
            await engine.dispose()

    try:
        SEEN.update(asyncio.run(go()))
        CONTRIBUTORS.add(contributor)
    except Exception:  # a database a test broke on purpose: its moves are lost, not the run
        pass
