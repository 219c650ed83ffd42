"""Keeping history in bounds: prune runs that finished long ago, rows and files alike, and
then the uploaded assets older than the same cutoff that no kept run names."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta

import structlog
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from db import repository as repo
from db.engine import get_engine
from reelflow.errors import InvalidAge
from reelflow.storage import ArtifactStore, artifact_store

log = structlog.get_logger("reelflow.history")

_AGE = re.compile(r"(\d{1,6})([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `2w`, `45s` (up to six digits: no age overflows a date)."""
    found = _AGE.fullmatch(text.strip())
    if not found:
        raise InvalidAge(
            f"age {text!r} is not a number and a unit (s, m, h, d, w), e.g. 30d",
            [{"field": "older_than", "message": "expected e.g. 30d"}],
        )
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})


class PruneReport(BaseModel):
    dry_run: bool
    older_than: str
    before: datetime
    runs: int
    steps: int
    attempts: int
    artifact_dirs: int  # runs with artifacts
    artifacts: int  # their files (objects)
    assets: int = 0  # uploads made before the cutoff that no kept run names


def cutoff(older_than: str, now: datetime | None = None) -> datetime:
    """now - `older_than`, clamped to the earliest date a timestamp can hold."""
    now = now or datetime.now(UTC)
    age = parse_age(older_than)
    floor = datetime(1, 1, 2, tzinfo=UTC)
    return now - age if age < now - floor else floor


async def prune(older_than: str, *, dry_run: bool, batch: int = 10_000) -> PruneReport:
    """Delete (or, dry, count) runs finished before now - `older_than`, with their steps,
    attempts, events and artifacts (in the local folder or the bucket), then the assets
    uploaded before it that no remaining run names. Active runs are never touched."""
    before = cutoff(older_than)
    selected = await select_prunable(before, limit=batch)
    if dry_run:
        ids = [run_id for run_id, _, _ in selected]
        async with get_engine().connect() as conn:  # the runs selected go first
            assets = await repo.count_unused(conn, before=before, ignoring=ids)
        store = artifact_store()
        files = await asyncio.to_thread(
            lambda: {run_id: len(store.keys(f"{run_id}/")) for run_id, _, _ in selected}
        )
        return PruneReport(
            dry_run=True,
            older_than=older_than,
            before=before,
            runs=len(selected),
            steps=sum(s for _, s, _ in selected),
            attempts=sum(a for _, _, a in selected),
            artifact_dirs=sum(1 for count in files.values() if count),
            artifacts=sum(files.values()),
            assets=assets,
        )
    report = await prune_selected(
        [run_id for run_id, _, _ in selected], before=before, older_than=older_than
    )
    report.assets = await prune_assets(before)
    return report


async def select_prunable(before: datetime, *, limit: int) -> list[tuple[uuid.UUID, int, int]]:
    """Candidates only: each is checked again under its lock when it is pruned."""
    async with get_engine().connect() as conn:
        return await repo.finished_before(conn, before=before, limit=limit)


async def prune_selected(
    run_ids: list[uuid.UUID], *, before: datetime, older_than: str
) -> PruneReport:
    """Prune each run on its own: under its row lock, re-check that it finished before
    `before` and that nothing of it runs, delete its rows and record its files for
    deletion (one transaction), then delete the files. A run resumed or finished again
    since it was selected is left alone; the report counts only what was deleted."""
    store = artifact_store()
    report = PruneReport(
        dry_run=False, older_than=older_than, before=before,
        runs=0, steps=0, attempts=0, artifact_dirs=0, artifacts=0,
    )  # fmt: skip
    await _delete_leftover_files(store)
    for run_id in run_ids:
        async with get_engine().begin() as conn:
            pruned = await repo.prune_run(conn, run_id=run_id, before=before, prefix=f"{run_id}/")
        if pruned is None:
            continue
        report.runs += 1
        report.steps += pruned.steps
        report.attempts += pruned.attempts
        async with get_engine().connect() as conn:
            recorded = await repo.deletion(conn, deletion_id=pruned.deletion_id)
        deleted = await _delete_files(store, recorded)
        report.artifact_dirs += 1 if deleted else 0
        report.artifacts += deleted
    if report.runs:
        log.info("runs_pruned", runs=report.runs, before=before.isoformat())
    return report


async def prune_assets(before: datetime) -> int:
    """Delete the assets made before `before` that no run names (rows, then files)."""
    store, deleted = artifact_store(), 0
    async with get_engine().begin() as conn:
        pruned = await repo.prune_assets(conn, before=before)
    for _, deletion_id in pruned:
        async with get_engine().connect() as conn:
            recorded = await repo.deletion(conn, deletion_id=deletion_id)
        await _delete_files(store, recorded)
        deleted += 1
    if deleted:
        log.info("assets_pruned", assets=deleted, before=before.isoformat())
    return deleted


async def _delete_files(store: ArtifactStore, deletion: repo.Deletion) -> int:
    """Delete a pruned run's files (all under its prefix but those other runs still use,
    and the files of earlier pruned runs only it still used), or a pruned asset's file,
    then forget the recorded deletion; returns how many were deleted. A storage error
    leaves the record for the next prune."""
    content = repo.content_of(deletion.prefix)
    if content is None:
        return await _delete_recorded(store, deletion)
    # An asset's file sits at a key its bytes name: an upload of the same bytes since the
    # prune may need it again. Decide and delete under the content's lock.
    async with get_engine().begin() as conn:
        await repo.lock_content(conn, sha256=content)
        if await repo.find_by_sha(conn, sha256=content) is not None:
            await repo.forget_deletion(conn, deletion_id=deletion.id)
            return 0
        return await _delete_recorded(store, deletion, conn)


async def _delete_recorded(
    store: ArtifactStore, deletion: repo.Deletion, conn: AsyncConnection | None = None
) -> int:
    try:
        under = await asyncio.to_thread(store.keys, deletion.prefix)
        doomed = [k for k in under if k not in set(deletion.keep)] + deletion.keys
        if deletion.keep:
            await asyncio.to_thread(store.delete_keys, doomed)
        else:
            await asyncio.to_thread(store.delete_prefix, deletion.prefix)
            await asyncio.to_thread(store.delete_keys, deletion.keys)
    except Exception as exc:
        log.warning("artifacts_not_deleted", prefix=deletion.prefix, error=repr(exc))
        return 0
    if conn is not None:
        await repo.forget_deletion(conn, deletion_id=deletion.id)
        return len(doomed)
    async with get_engine().begin() as own:
        await repo.forget_deletion(own, deletion_id=deletion.id)
    return len(doomed)


async def _delete_leftover_files(store: ArtifactStore) -> None:
    """Files of runs pruned by a prune that stopped before deleting them."""
    async with get_engine().connect() as conn:
        leftover = await repo.pending_deletions(conn)
    for found in leftover:
        await _delete_files(store, found)
