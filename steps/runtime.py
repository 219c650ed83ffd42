"""The one sync-to-async bridge of a worker process, and the lease heartbeat.

Celery runs task bodies synchronously; the database layer is async. Each thread gets one
event loop, created on first use after fork and reused for every task, so engines and their
pools live as long as the process (no `asyncio.run()` per call).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from db import claims
from db.engine import driver_connection, drop_driver_connection, forget_engines
from db.states import RunStatus
from steps.retry import db_retry, is_transient_db_error

T = TypeVar("T")
log = structlog.get_logger("reelflow.runtime")

_local = threading.local()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:  # a step pays two database round trips; uvloop makes each cheaper to drive
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def _loop() -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or getattr(_local, "pid", None) != os.getpid() or loop.is_closed():
        loop = _new_loop()
        _local.loop, _local.pid = loop, os.getpid()
    return loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on this thread's persistent loop."""
    return _loop().run_until_complete(coro)


def run_db(fn: Any, /, **kwargs: Any) -> Any:
    """Call `fn(connection, **kwargs)` from `db.claims`, retrying transient database errors.

    The first try goes straight through; only a failure pays for the retry machinery.
    """
    try:
        return _call(fn, kwargs)
    except Exception as exc:
        if not is_transient_db_error(exc):
            raise
        log.warning("db_retrying", error=repr(exc))
    return _retrying_call(fn, kwargs)


@db_retry
def _retrying_call(fn: Any, kwargs: dict[str, Any]) -> Any:
    return _call(fn, kwargs)


def _call(fn: Any, kwargs: dict[str, Any]) -> Any:
    async def go() -> Any:
        conn = await driver_connection()
        try:
            return await fn(conn, **kwargs)
        except BaseException:
            if not conn.is_closed() and conn.is_in_transaction():
                conn.terminate()  # never reuse a connection in an unknown state
            raise
        finally:
            drop_driver_connection()

    return run(go())


def after_fork() -> None:
    """Called in each new worker process: forget the parent's loop, engines and leases."""
    _local.__dict__.clear()
    forget_engines()
    Heartbeat.reset()


@dataclass
class Lease:
    step_id: int
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
        self.leases: dict[tuple[int, int], Lease] = {}
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
            self.leases[(lease.step_id, lease.attempt)] = lease

    def release(self, lease: Lease) -> None:
        with self.lock:
            self.leases.pop((lease.step_id, lease.attempt), None)

    def _loop(self) -> None:
        while not self.stop.wait(self.interval):
            with self.lock:
                held = list(self.leases.values())
            for lease in held:
                try:
                    status = run_db(
                        claims.renew_lease,
                        step_id=lease.step_id,
                        attempt=lease.attempt,
                        lease_seconds=self.lease_seconds,
                    )
                except Exception as exc:  # the next beat tries again; the lease has slack
                    log.warning("lease_renew_failed", step_key=lease.key, error=repr(exc))
                    continue
                lease.lost = status is None
                lease.cancelled = status is RunStatus.CANCELLED
