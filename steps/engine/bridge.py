"""The one sync-to-async bridge of a worker process, and who the process works for.

Celery runs task bodies synchronously; the database layer is async. Each thread gets one
event loop, created on first use after fork and reused for every task, so engines and their
pools live as long as the process (no `asyncio.run()` per call).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog

from db import outcomes
from db.engine import drop_driver_connection, forget_engines, on_driver
from db.errors import (
    drain_timeouts,
    is_unavailable,
    note_timeout,
    quiet_retry,
    restore_timeouts,
    timeouts_pending,
)

T = TypeVar("T")
log = structlog.get_logger("reelflow.runtime")

_local = threading.local()


class WorkerIdentity:
    """Who this process works for: the worker's id (its heartbeat row), set by the worker's
    main process at start and inherited by its pool processes over fork."""

    id: str | None = None


def worker_id() -> str | None:
    return WorkerIdentity.id


def count_ignored(reason: str) -> None:
    """Count a delivery that changed nothing (stale, duplicate, not ready), best effort."""
    try:
        run_db(outcomes.count, name="deliveries_ignored", label=reason)
    except Exception as exc:  # a counter must never fail the task
        log.warning("counter_not_written", error=repr(exc))


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

    The first try goes straight through; only a failure pays for the retry machinery. A
    statement our timeouts stopped (a lock held elsewhere too long) is tried again like an
    outage, and counted once the database answers (`database_timeouts`).
    """
    try:
        result = _call(fn, kwargs)
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        log.warning("db_retrying", error=repr(exc))
        result = _retrying_call(fn, kwargs)
    if timeouts_pending():
        _count_timeouts()
    return result


@quiet_retry
def _retrying_call(fn: Any, kwargs: dict[str, Any]) -> Any:
    return _call(fn, kwargs)


def _count_timeouts() -> None:
    """Write the timeouts this process met to the engine counters (best effort: kept for
    the next time when the write fails)."""
    found = drain_timeouts()
    try:
        for kind, n in found.items():
            _call(outcomes.count, {"name": "database_timeouts", "label": kind, "by": n})
    except Exception as exc:
        restore_timeouts(found)
        log.warning("counter_not_written", error=repr(exc))


def _call(fn: Any, kwargs: dict[str, Any]) -> Any:
    async def go() -> Any:
        failed = False
        try:
            return await on_driver(fn, **kwargs)
        except BaseException as exc:
            failed = True
            note_timeout(exc)
            raise
        finally:
            drop_driver_connection(failed=failed)

    return run(go())


def after_fork() -> None:
    """Called in each new worker process: forget the parent's loop and engines."""
    _local.__dict__.clear()
    forget_engines()
