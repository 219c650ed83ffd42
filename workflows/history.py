"""Keeping history in bounds: prune runs that finished long ago, rows and files alike."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import structlog
from pydantic import BaseModel

from db import repository as repo
from db.engine import get_engine
from reelflow.errors import InvalidParams
from reelflow.storage import artifact_store

log = structlog.get_logger("reelflow.history")

_AGE = re.compile(r"(\d{1,6})([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `2w`, `45s` (up to six digits: no age overflows a date)."""
    found = _AGE.fullmatch(text.strip())
    if not found:
        raise InvalidParams(
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


async def prune(older_than: str, *, dry_run: bool, batch: int = 10_000) -> PruneReport:
    """Delete (or, dry, count) runs finished before now - `older_than`, with their steps,
    attempts, events and artifacts (in the local folder or the bucket). Active runs are
    never touched."""
    now = datetime.now(UTC)
    age = parse_age(older_than)
    before = (
        now - age if age < now - datetime(1, 1, 2, tzinfo=UTC) else datetime(1, 1, 2, tzinfo=UTC)
    )
    async with get_engine().connect() as conn:
        found = await repo.finished_before(conn, before=before, limit=batch)
    store = artifact_store()  # the local folder or the bucket: the same calls
    files = await asyncio.to_thread(
        lambda: {run_id: len(store.keys(f"{run_id}/")) for run_id, _, _ in found}
    )
    if not dry_run:
        # Files first: a storage error leaves the rows, so the next prune finds them again
        # (rows deleted first would leave objects nothing points to).
        for run_id, count in files.items():
            if count:
                await asyncio.to_thread(store.delete_prefix, f"{run_id}/")
        async with get_engine().begin() as conn:
            await repo.delete_runs(conn, run_ids=[run_id for run_id, _, _ in found])
        log.info("runs_pruned", runs=len(found), before=before.isoformat())
    return PruneReport(
        dry_run=dry_run,
        older_than=older_than,
        before=before,
        runs=len(found),
        steps=sum(s for _, s, _ in found),
        attempts=sum(a for _, _, a in found),
        artifact_dirs=sum(1 for count in files.values() if count),
        artifacts=sum(files.values()),
    )
