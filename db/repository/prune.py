"""Pruning old runs, one run per transaction under its row lock, so no concurrent
operation ever sees half of a run: a resume or retry waits for the lock, then finds the
run gone (404) or untouched."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from db.repository.assets import ASSET_PREFIX
from db.repository.tables import attempts, deletions, refs, runs, steps
from db.states import RUN_TERMINAL, STEP_IN_FLIGHT, sql_in


@dataclass(frozen=True)
class PrunedRun:
    run_id: uuid.UUID
    steps: int
    attempts: int
    deletion_id: int  # its files, recorded for deletion


@dataclass(frozen=True)
class Deletion:
    """Files to delete: everything under `prefix` but `keep`, and `keys`."""

    id: int
    prefix: str
    keep: list[str]
    keys: list[str]


async def finished_before(
    conn: AsyncConnection, *, before: datetime, limit: int = 10_000
) -> list[tuple[uuid.UUID, int, int]]:
    """Runs that finished (succeeded, failed, cancelled) before `before`, oldest first:
    (run id, its steps, its attempts). Only a candidate list: `prune_run` decides."""
    rows = await conn.execute(
        text(
            f"""
            SELECT r.id,
                   (SELECT count(*) FROM step_runs s WHERE s.run_id = r.id) AS steps,
                   (SELECT count(*) FROM step_attempts a WHERE a.run_id = r.id) AS attempts
            FROM workflow_runs r
            WHERE r.finished_at < :before AND r.status IN {sql_in(RUN_TERMINAL)}
            ORDER BY r.finished_at
            LIMIT :limit
            """
        ),
        {"before": before, "limit": limit},
    )
    return [(r.id, int(r.steps), int(r.attempts)) for r in rows]


async def prune_run(
    conn: AsyncConnection, *, run_id: uuid.UUID, before: datetime, prefix: str
) -> PrunedRun | None:
    """Delete the run (its steps, attempts, events and intents cascade) and record its
    files for deletion, if, under its row lock, it is still finished before `before` and
    none of its steps is in flight (a straggler of a failed run may still write). None
    when it no longer qualifies: it was resumed, finished again, or is gone."""
    locked = (
        await conn.execute(
            select(runs.c.status, runs.c.finished_at).where(runs.c.id == run_id).with_for_update()
        )
    ).one_or_none()
    if locked is None or locked.finished_at is None or locked.finished_at >= before:
        return None
    if locked.status not in {s.value for s in RUN_TERMINAL}:
        return None
    busy = await conn.execute(
        select(func.count()).where(
            steps.c.run_id == run_id, steps.c.status.in_([s.value for s in STEP_IN_FLIGHT])
        )
    )
    if busy.scalar_one():
        return None
    n_steps = (
        await conn.execute(select(func.count()).where(steps.c.run_id == run_id))
    ).scalar_one()
    n_attempts = (
        await conn.execute(select(func.count()).where(attempts.c.run_id == run_id))
    ).scalar_one()
    # Files other runs still use (they reused its results) stay; files of runs pruned
    # before that only this run still used go with it. Cached results referring to a file
    # that goes are deleted first: that waits for any reuse of them in flight (it holds
    # them key-share locked until it commits its refs), and a reuse after it finds none.
    # Only then is it decided what stays, seeing the refs those reuses committed.
    mine = await conn.execute(select(refs.c.artifact_key).where(refs.c.run_id == run_id))
    # An uploaded asset an output passes on is the asset's to delete (prune_assets), not
    # the run's: its row may outlive every run that read it.
    used = {row.artifact_key for row in mine if not row.artifact_key.startswith(ASSET_PREFIX)}
    going = sorted(used - await _shared(conn, run_id=run_id))
    if going:
        await conn.execute(
            text("DELETE FROM step_results WHERE artifacts ?| CAST(:going AS text[])"),
            {"going": going},
        )
    kept = await _shared(conn, run_id=run_id)
    going = sorted(used - kept)
    keep_here = sorted(k for k in kept if k.startswith(prefix))
    others = [k for k in going if not k.startswith(prefix)]
    await conn.execute(delete(runs).where(runs.c.id == run_id))
    deletion_id = (
        await conn.execute(
            insert(deletions)
            .values(prefix=prefix, keep=keep_here, keys=others)
            .returning(deletions.c.id)
        )
    ).scalar_one()
    return PrunedRun(run_id, int(n_steps), int(n_attempts), int(deletion_id))


async def _shared(conn: AsyncConnection, *, run_id: uuid.UUID) -> set[str]:
    """The files the run uses that another run uses too."""
    rows = await conn.execute(
        text(
            "SELECT DISTINCT r.artifact_key FROM artifact_refs r WHERE r.run_id = :r"
            " AND EXISTS (SELECT 1 FROM artifact_refs o"
            " WHERE o.artifact_key = r.artifact_key AND o.run_id <> :r)"
        ),
        {"r": run_id},
    )
    return {row.artifact_key for row in rows}


async def pending_deletions(conn: AsyncConnection, *, limit: int = 1000) -> list[Deletion]:
    """File deletions recorded by prunes that did not finish them."""
    rows = await conn.execute(select(deletions).order_by(deletions.c.id).limit(limit))
    return [Deletion(r.id, r.prefix, list(r.keep or []), list(r.keys or [])) for r in rows]


async def deletion(conn: AsyncConnection, *, deletion_id: int) -> Deletion:
    row = (await conn.execute(select(deletions).where(deletions.c.id == deletion_id))).one()
    return Deletion(row.id, row.prefix, list(row.keep or []), list(row.keys or []))


async def forget_deletion(conn: AsyncConnection, *, deletion_id: int) -> None:
    await conn.execute(delete(deletions).where(deletions.c.id == deletion_id))
