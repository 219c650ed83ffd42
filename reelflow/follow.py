"""Reading runs for the CLI, and following one live until it ends."""

from __future__ import annotations

import asyncio
import sys
import uuid

from rich.live import Live

from db import repository as repo
from db.engine import get_engine
from db.records import AttemptRecord, RunRecord, StepRecord
from db.states import RUN_TERMINAL
from reelflow import render
from reelflow.errors import RunNotFound, StepNotFound


async def load(run_id: uuid.UUID) -> tuple[RunRecord, list[StepRecord]]:
    async with get_engine().connect() as conn:
        run = await repo.get_run(conn, run_id=run_id)
        if run is None:
            raise RunNotFound(f"no run {run_id}")
        return run, await repo.get_steps(conn, run_id=run_id)


async def attempts(run_id: uuid.UUID, key: str) -> list[AttemptRecord]:
    _, steps = await load(run_id)
    if not any(s.key == key for s in steps):
        raise StepNotFound(f"run {run_id} has no step {key!r}")
    async with get_engine().connect() as conn:
        return await repo.get_attempts(conn, run_id=run_id, key=key)


async def follow(run_id: uuid.UUID, *, quiet: bool = False, poll: float = 0.5) -> RunRecord:
    """Show the steps until the run ends: a live table in a terminal, lines otherwise."""
    if quiet:
        while True:
            run, _ = await load(run_id)
            if run.status in RUN_TERMINAL:
                return run
            await asyncio.sleep(poll)
    if sys.stdout.isatty():
        with Live(console=render.console, refresh_per_second=4) as live:
            while True:
                run, steps = await load(run_id)
                live.update(render.steps_table(steps))
                if run.status in RUN_TERMINAL:
                    break
                await asyncio.sleep(poll)
    else:
        seen: dict[str, tuple[str, int]] = {}
        while True:
            run, steps = await load(run_id)
            for s in steps:
                state = (s.status.value, s.attempts)
                if seen.get(s.key) != state:
                    seen[s.key] = state
                    print(f"{s.key:<20} {s.status.value:<10} attempt {s.attempts}", flush=True)
            if run.status in RUN_TERMINAL:
                break
            await asyncio.sleep(poll)
    render.console.print(f"run {run_id} {render._status(run.status.value)}")
    return run
