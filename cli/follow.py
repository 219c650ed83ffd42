"""Reading runs for the CLI, and following one live until it ends."""

from __future__ import annotations

import sys
import time
import uuid
from contextlib import nullcontext
from typing import Any

from rich.live import Live

from cli import output
from db import repository as repo
from db.engine import get_engine
from db.records import AttemptRecord, RunRecord, StepRecord
from reelflow.errors import StepNotFound, UnknownWorkflow
from workflows.definition.registry import get_workflow
from workflows.watch import history
from workflows.watch.stream import load, watch


async def attempts(run_id: uuid.UUID, key: str) -> list[AttemptRecord]:
    _, steps = await load(run_id)
    if not any(s.key == key for s in steps):
        raise StepNotFound(f"run {run_id} has no step {key!r}")
    async with get_engine().connect() as conn:
        return await repo.get_attempts(conn, run_id=run_id, key=key)


async def run_history(run_id: uuid.UUID) -> list[dict[str, Any]]:
    async with get_engine().connect() as conn:
        return await history.events(conn, run_id=run_id)


def in_workflow_order(workflow: str, steps: list[StepRecord]) -> list[StepRecord]:
    """Steps as the workflow runs them (map items by index), not as their rows were made."""
    try:
        names = get_workflow(workflow).step_names
    except UnknownWorkflow:
        return steps
    rank = {name: i for i, name in enumerate(names)}
    return sorted(steps, key=lambda s: (rank.get(s.step, len(rank)), s.item_index or 0))


async def published_video(run_id: uuid.UUID) -> str | None:
    """The path of the video a run published, if it published one."""
    _, steps = await load(run_id)
    for step in steps:
        video = (step.output or {}).get("video") if step.key == "publish" else None
        if isinstance(video, dict) and video.get("path"):
            return str(video["path"])
    return None


async def follow(run_id: uuid.UUID, *, quiet: bool = False, poll: float = 0.5) -> RunRecord:
    """Follow the run until it ends: in a terminal, a progress bar with the elapsed time over
    the steps' table; piped, one line per change."""
    live = Live(console=output.console, refresh_per_second=4) if sys.stdout.isatty() else None
    started = time.monotonic()
    with live or nullcontext():
        async for snapshot in watch(run_id, poll=poll):
            if quiet:
                continue
            steps = in_workflow_order(snapshot.run.workflow, snapshot.steps)
            if live is not None:
                live.update(output.progress_view(snapshot.run, steps, time.monotonic() - started))
            for s in (
                []
                if live is not None
                else in_workflow_order(snapshot.run.workflow, snapshot.changed)
            ):
                elapsed = time.monotonic() - started
                print(f"{elapsed:7.1f}s {s.key:<20} {s.status.value:<10} attempt {s.attempts}",
                      flush=True)  # fmt: skip
    run = snapshot.run
    if not quiet:
        output.console.print(f"run {run_id} {output.status_label(run.status.value)}")
    return run
