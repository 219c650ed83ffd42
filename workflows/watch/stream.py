"""Following runs: snapshots of a run each time it changed, until it ends.

The one place that watches runs. `watch()` follows one run for one caller (the CLI);
`RunWatcher` follows any number of runs for any number of callers in one process (the
API's event streams): one query per tick for every watched run together, and one snapshot
load per run that changed, shared by all of its streams, so a thousand open streams cost
what one does and none of them holds a database connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from db import repository as repo
from db.engine import get_engine
from db.records import RunRecord, StepRecord
from db.states import RUN_TERMINAL, RunStatus

log = structlog.get_logger("reelflow.watch")


@dataclass(frozen=True)
class Snapshot:
    run: RunRecord
    steps: list[StepRecord]
    changed: list[StepRecord] = field(default_factory=list)  # status or attempt moved
    run_changed: bool = False  # the run's status moved (or this is the first look)

    @property
    def finished(self) -> bool:
        return self.run.status in RUN_TERMINAL

    @property
    def version(self) -> int:
        """Microseconds of the latest change: an event id a client can resume from."""
        return _micros(max([self.run.updated_at, *(s.updated_at for s in self.steps)]))


def _micros(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


class Diff:
    """What one follower has seen, so each snapshot says only what is new to it."""

    def __init__(self, after_version: int = 0) -> None:
        self.after = after_version  # resume: changes up to here were seen already
        self.seen: dict[str, tuple[str, int]] = {}
        self.last: RunStatus | None = None

    def __call__(self, run: RunRecord, steps: list[StepRecord]) -> Snapshot:
        changed = [
            s
            for s in steps
            if self.seen.get(s.key) != (s.status.value, s.attempts)
            and _micros(s.updated_at) > self.after
        ]
        self.seen.update({s.key: (s.status.value, s.attempts) for s in steps})
        moved = run.status is not self.last and (_micros(run.updated_at) > self.after)
        self.last = run.status
        return Snapshot(run, steps, changed, moved)


async def load(run_id: uuid.UUID) -> tuple[RunRecord, list[StepRecord]]:
    async with get_engine().connect() as conn:
        run = await repo.require_run(conn, run_id=run_id)
        return run, await repo.get_steps(conn, run_id=run_id)


async def watch(run_id: uuid.UUID, *, poll: float = 0.25) -> AsyncIterator[Snapshot]:
    """Yield the run every `poll` seconds (RunNotFound if there is none), the last time once
    it has ended."""
    diff = Diff()
    while True:
        snapshot = diff(*await load(run_id))
        yield snapshot
        if snapshot.finished:
            return
        await asyncio.sleep(poll)


class RunWatcher:
    """Fans changes of many runs out to many followers, polling once per tick for all."""

    def __init__(self, tick: float = 0.25) -> None:
        self.tick = tick
        self.followers: dict[uuid.UUID, set[asyncio.Queue[tuple[RunRecord, list[StepRecord]]]]]
        self.followers = {}
        self.versions: dict[uuid.UUID, datetime] = {}
        self.latest: dict[uuid.UUID, tuple[RunRecord, list[StepRecord]]] = {}
        self.loaded_at: dict[uuid.UUID, float] = {}  # when `current` loaded an entry
        self.loading: dict[uuid.UUID, asyncio.Lock] = {}
        self.task: asyncio.Task[None] | None = None

    async def current(self, run_id: uuid.UUID) -> tuple[RunRecord, list[StepRecord]]:
        """The run as last seen (RunNotFound if there is none): followers of one run share
        one load, so a thousand streams opening at once cost one query."""
        if not self._fresh(run_id):
            async with self.loading.setdefault(run_id, asyncio.Lock()):
                if not self._fresh(run_id):
                    self._forget_unfollowed()
                    self.latest[run_id] = await load(run_id)
                    self.loaded_at[run_id] = time.monotonic()
            self.loading.pop(run_id, None)
        return self.latest[run_id]

    def _fresh(self, run_id: uuid.UUID) -> bool:
        """The poll keeps a followed run's entry current; any other serves for one tick (a
        burst of streams opening shares it), so one no stream went on to follow (an ended
        run's, a client gone before its stream began) is never read stale."""
        if run_id not in self.latest:
            return False
        polled = run_id in self.versions and run_id in self.followers
        return polled or time.monotonic() - self.loaded_at.get(run_id, 0.0) < self.tick

    def _forget_unfollowed(self) -> None:
        now = time.monotonic()
        for run_id, at in list(self.loaded_at.items()):
            if run_id not in self.versions and now - at >= self.tick:
                self.latest.pop(run_id, None)
                self.loaded_at.pop(run_id, None)

    async def ended(self, run_id: uuid.UUID, *, after_version: int = 0) -> bool:
        """Has the run ended with nothing left to tell this caller (RunNotFound if there is
        no run)? A new stream (no `after_version`) has nothing to follow; a reconnect has
        nothing once it has seen the last change. Its stream then answers 204, which tells
        an EventSource to stop reconnecting; a reconnect that missed the end gets it first."""
        snapshot = Snapshot(*await self.current(run_id))
        return snapshot.finished and (not after_version or snapshot.version <= after_version)

    async def follow(self, run_id: uuid.UUID, *, after_version: int = 0) -> AsyncIterator[Snapshot]:
        """Snapshots of one run as it changes (the first at once), until it ends."""
        queue: asyncio.Queue[tuple[RunRecord, list[StepRecord]]] = asyncio.Queue(maxsize=1)
        self.followers.setdefault(run_id, set()).add(queue)
        self._ensure_running()
        diff = Diff(after_version)
        try:
            snapshot = diff(*await self.current(run_id))
            while True:
                yield snapshot
                if snapshot.finished:
                    return
                snapshot = diff(*await queue.get())
        finally:
            self.followers[run_id].discard(queue)
            if not self.followers[run_id]:
                del self.followers[run_id]
                self.versions.pop(run_id, None)
                self.latest.pop(run_id, None)
                self.loaded_at.pop(run_id, None)

    def _ensure_running(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._loop(), name="reelflow-run-watcher")

    async def _loop(self) -> None:
        while self.followers:
            try:
                await self._poll()
            except Exception as exc:  # the database blinked: the next tick tries again
                log.warning("run_watch_failed", error=repr(exc))
            await asyncio.sleep(self.tick)

    async def _poll(self) -> None:
        watched = list(self.followers)
        async with get_engine().connect() as conn:
            latest = await repo.latest_changes(conn, run_ids=watched)
        moved = [r for r, at in latest.items() if self.versions.get(r) != at]
        self.versions.update(latest)
        for run_id in moved:
            snapshot = self.latest[run_id] = await load(run_id)
            for queue in list(self.followers.get(run_id, ())):
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()  # a follower that lags gets the newest state only
                queue.put_nowait(snapshot)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
