"""What each run on a page of the runs list is: its title and thumbnail, as its workflow's
headline declares them, and for a failed run, which step failed and why. One indexed query
per page (per workflow that declares step fields), whatever the number of runs stored."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from db import repository as repo
from db.records import RunRecord
from db.states import RunStatus
from reelflow.errors import UnknownWorkflow
from workflows.definition.headline import Headline
from workflows.definition.registry import get_workflow

#: A failure's reason as listed: its first line, cut to this many characters.
REASON_CHARS = 200


@dataclass(frozen=True)
class RunHeadline:
    title: str | None = None
    thumbnail_key: str | None = None  # the artifact store's key of the thumbnail
    failed_step: str | None = None
    failed_reason: str | None = None


async def headlines(
    conn: AsyncConnection, *, runs: Sequence[RunRecord]
) -> dict[uuid.UUID, RunHeadline]:
    by_workflow: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_workflow.setdefault(run.workflow, []).append(run)
    out: dict[uuid.UUID, RunHeadline] = {}
    for name, group in by_workflow.items():
        declared = _headline_of(name)
        fields = declared.step_fields()
        found = (
            await repo.output_fields(conn, run_ids=[r.id for r in group], fields=fields)
            if fields
            else {}
        )
        for run in group:
            title, thumbnail = declared.read(run.params, found.get(run.id, {}))
            out[run.id] = RunHeadline(title, thumbnail, *failure(run))
    return out


def _headline_of(workflow: str) -> Headline:
    try:
        return get_workflow(workflow).headline
    except UnknownWorkflow:  # renamed away since: its runs are still listed
        return Headline()


def failure(run: RunRecord) -> tuple[str | None, str | None]:
    """(the step that failed, why, in one line) of a failed run; (None, None) otherwise. A
    run the reconciler failed has a reason and no step."""
    if run.status is not RunStatus.FAILED or not run.error:
        return None, None
    kind, message = run.error.get("type"), str(run.error.get("message") or "")
    lines = message.strip().splitlines()
    line = lines[0] if lines else ""
    reason = f"{kind}: {line}" if kind and line else str(kind or line) or None
    step = run.error.get("step")
    return (str(step) if step else None), (reason[:REASON_CHARS] if reason else None)
