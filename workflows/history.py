"""Keeping history in bounds: prune runs that finished long ago, rows and files alike."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta

import structlog
from pydantic import BaseModel

from db import repository as repo
from db.engine import get_engine
from reelflow.errors import InvalidParams
from reelflow.settings import get_settings

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
    artifact_dirs: int


async def prune(older_than: str, *, dry_run: bool, batch: int = 10_000) -> PruneReport:
    """Delete (or, dry, count) runs finished before now - `older_than`, with their steps,
    attempts, events and artifact folders. Active runs are never touched."""
    now = datetime.now(UTC)
    age = parse_age(older_than)
    before = (
        now - age if age < now - datetime(1, 1, 2, tzinfo=UTC) else datetime(1, 1, 2, tzinfo=UTC)
    )
    async with get_engine().begin() as conn:
        found = await repo.finished_before(conn, before=before, limit=batch)
        if not dry_run:
            await repo.delete_runs(conn, run_ids=[run_id for run_id, _, _ in found])
    root = get_settings().artifact_root
    dirs = [root / str(run_id) for run_id, _, _ in found if (root / str(run_id)).is_dir()]
    if not dry_run:
        for folder in dirs:
            shutil.rmtree(folder, ignore_errors=True)
        log.info("runs_pruned", runs=len(found), before=before.isoformat())
    return PruneReport(
        dry_run=dry_run,
        older_than=older_than,
        before=before,
        runs=len(found),
        steps=sum(s for _, s, _ in found),
        attempts=sum(a for _, _, a in found),
        artifact_dirs=len(dirs),
    )
