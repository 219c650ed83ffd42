"""The one sync-to-async bridge of a worker process, and the lease heartbeat.

Celery runs task bodies synchronously; the database layer is async. Each thread gets one
event loop, created on first use after fork and reused for every task, so engines and their
pools live as long as the process (no `asyncio.run()` per call).
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from db import claims
from db.engine import autocommit, forget_engines, get_engine
from db.states import RunStatus
from steps.retry import db_retry

T = TypeVar("T")
log = structlog.get_logger("reelflow.runtime")

_local = threading.local()


def _loop() -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or getattr(_local, "pid", None) != os.getpid() or loop.is_closed():
        loop = asyncio.new_event_loop()
        _local.loop, _local.pid = loop, os.getpid()
    return loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on this thread's persistent loop."""
    return _loop().run_until_complete(coro)


def run_db(fn: Any, /, **kwargs: Any) -> Any:
    """Call `fn(engine, **kwargs)` from `db.claims`, retrying transient database errors."""

    @db_retry
    def attempt() -> Any:
        async def go() -> Any:
            return await fn(autocommit(get_engine()), **kwargs)

        return run(go())

    return attempt()


def after_fork() -> None:
    """Called in each new worker process: forget the parent's loop, engines and leases."""
    _local.__dict__.clear()
    forget_engines()
    Heartbeat.reset()


@dataclass
class Lease:
    run_id: uuid.UUID
    key: str
    attempt: int
    cancelled: bool = False
    lost: bool = False


class Heartbeat:
    """One daemon thread per process renews the leases of the attempts running in it.

    A step that runs longer than its lease is then never taken for dead while its worker
    lives; a renewal that finds the run cancelled flags the lease so the step can stop.
    """

    _instance: Heartbeat | None = None
    _guard = threading.Lock()

    def __init__(self, lease_seconds: int) -> None:
        self.lease_seconds = lease_seconds
        self.interval = max(1.0, lease_seconds / 3)
        self.leases: dict[tuple[uuid.UUID, str, int], Lease] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="reelflow-heartbeat", daemon=True)
        self.thread.start()

    @classmethod
    def get(cls, lease_seconds: int) -> Heartbeat:
        with cls._guard:
            if cls._instance is None or not cls._instance.thread.is_alive():
                cls._instance = Heartbeat(lease_seconds)
            return cls._instance

    @classmethod
    def reset(cls) -> None:
        cls._instance = None
        cls._guard = threading.Lock()

    def hold(self, lease: Lease) -> None:
        with self.lock:
            self.leases[(lease.run_id, lease.key, lease.attempt)] = lease

    def release(self, lease: Lease) -> None:
        with self.lock:
            self.leases.pop((lease.run_id, lease.key, lease.attempt), None)

    def _loop(self) -> None:
        while not self.stop.wait(self.interval):
            with self.lock:
                held = list(self.leases.values())
            for lease in held:
                try:
                    status = run_db(
                        claims.renew_lease,
                        run_id=lease.run_id,
                        key=lease.key,
                        attempt=lease.attempt,
                        lease_seconds=self.lease_seconds,
                    )
                except Exception as exc:  # the next beat tries again; the lease has slack
                    log.warning("lease_renew_failed", step_key=lease.key, error=repr(exc))
                    continue
                lease.lost = status is None
                lease.cancelled = status is RunStatus.CANCELLED
