"""Fault plans: the storage of a testing aid, kept apart from the claim protocol.

A run started with `faults` (only where ALLOW_FAULT_INJECTION allows it) records, per
step key, how many of its first attempts must fail. The engine asks only when the setting
is on (one extra lookup per attempt then), so production steps never pay for it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import asyncpg
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from db.repository.tables import faults as fault_table

_PLANNED = "SELECT failures FROM injected_faults WHERE run_id = $1 AND step_key = $2"


async def plan(conn: AsyncConnection, *, run_id: uuid.UUID, faults: Mapping[str, int]) -> None:
    """Record the run's faults (step key -> attempts that fail), with the run."""
    if faults:
        rows = [{"run_id": run_id, "step_key": k, "failures": n} for k, n in faults.items()]
        await conn.execute(insert(fault_table), rows)


async def planned_failures(conn: asyncpg.Connection, *, run_id: uuid.UUID, key: str) -> int:
    """How many first attempts of `key` the run asked to fail (0: none)."""
    found = await conn.fetchval(_PLANNED, run_id, key)
    return int(found or 0)
