"""Which status moves the test suite made, recorded by the databases themselves.

A trigger in every test database (never in a deployment's) notes each (table, from, to)
it sees; the fixtures collect the notes before dropping a database, and
`tests/test_state_machine.py` checks that the suite made every move `db/states.py`
declares, through public operations only.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

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
#: Under pytest-xdist each worker is a process of its own: they append what they saw to
#: this file (named by the controller), and the controller checks the whole at the end.
SHARED = "REELFLOW_TRANSITIONS_FILE"
#: The modules whose runs make the moves between them.
NEEDED = {"test_engine", "test_fencing", "test_run_races", "test_recovery", "test_faults",
          "test_revisions", "test_keys"}  # fmt: skip


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
        seen = asyncio.run(go())
    except Exception:  # a database a test broke on purpose: its moves are lost, not the run
        return
    SEEN.update(seen)
    CONTRIBUTORS.add(contributor)
    shared = os.environ.get(SHARED)
    if shared:
        line = json.dumps({"contributor": contributor, "seen": sorted(seen)})
        with Path(shared).open("a") as fh:  # one short append per module: whole lines
            fh.write(line + "\n")


def module_of(contributor: str) -> str:
    """`tests/integration/test_engine.py::x` or `tests.integration.test_engine` -> test_engine"""
    return contributor.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py").split(".")[-1]


def read_shared(path: Path) -> tuple[set[tuple[str, str, str]], set[str]]:
    """What every worker recorded: the moves seen, and the modules that contributed."""
    seen: set[tuple[str, str, str]] = set()
    contributors: set[str] = set()
    if path.exists():
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            contributors.add(module_of(entry["contributor"]))
            seen.update((t, a, b) for t, a, b in entry["seen"])
    return seen, contributors
