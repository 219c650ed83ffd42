"""`celery -A reelflow inspect steps`: the steps each worker is running right now.

Runs in the worker's main process, which knows its active requests; attempt numbers and
start times come from the step rows (one short query, best effort).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from celery.worker import state as worker_state
from celery.worker.control import inspect_command

from steps.engine.spec import STEP_TASK_PREFIX


async def _rows(pairs: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    from db import repository as repo
    from db.engine import get_engine

    async with get_engine().connect() as conn:
        return await repo.step_states(conn, pairs=[(uuid.UUID(r), k) for r, k in pairs])


@inspect_command()
def steps(state: Any, **_: Any) -> list[dict[str, Any]]:
    """List run id, step key, attempt and start time of each step this worker runs."""
    active = [r for r in list(worker_state.active_requests) if r.name.startswith(STEP_TASK_PREFIX)]
    pairs = [(str(r.args[0]), str(r.args[1])) for r in active if len(r.args) >= 2]
    try:
        from steps.engine import bridge

        rows = bridge.run(asyncio.wait_for(_rows(pairs), timeout=2)) if pairs else {}
    except Exception:  # the listing must answer even with the database away
        rows = {}
    out = []
    for request, pair in zip(active, pairs, strict=False):
        row = rows.get(pair, {})
        started = row.get("started_at")
        out.append(
            {
                "run_id": pair[0],
                "step_key": pair[1],
                "task": request.name,
                "task_id": request.id,
                "attempt": row.get("attempts"),
                "started_at": started.isoformat() if started else None,
                "worker_pid": request.worker_pid,
                "lease_owner": row.get("lease_owner"),
            }
        )
    return out
