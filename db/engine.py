"""Async engines, one per (process, event loop), created lazily and never inherited by a fork.

A prefork child that used its parent's pool would share sockets with it; an engine used from
a second event loop fails with "attached to a different loop". Keying engines by pid and
loop rules out both.
"""

from __future__ import annotations

import asyncio
import os
import weakref

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from reelflow.settings import get_settings

_engines: dict[tuple[int, int, str], AsyncEngine] = {}
_conns: dict[tuple[int, int, str], asyncpg.Connection] = {}
_loops: dict[int, weakref.ref[asyncio.AbstractEventLoop]] = {}


def get_engine() -> AsyncEngine:
    """The engine of this process and running loop."""
    url = get_settings().require_database_url()
    loop = asyncio.get_running_loop()
    key = (os.getpid(), id(loop), url)
    engine = _engines.get(key)
    if engine is None:
        _forget_closed_loops()
        engine = create_engine(url)
        _engines[key] = engine
        _loops[id(loop)] = weakref.ref(loop)
    return engine


def _forget_closed_loops() -> None:
    """Drop the engines and connections of loops that have closed (each `asyncio.run()` is a
    loop), so their sockets are closed when collected instead of held for the process's life:
    a caller that runs many short loops must not use up the server's connections."""
    for loop_id, ref in list(_loops.items()):
        loop = ref()
        if loop is None or loop.is_closed():
            del _loops[loop_id]
            for cache in (_engines, _conns):
                for key in [k for k in cache if k[1] == loop_id]:
                    del cache[key]


async def driver_connection() -> asyncpg.Connection:
    """A plain asyncpg connection for the claim protocol's hot path, per process and loop.

    Each claim-protocol statement is one CTE, atomic on its own, so it runs without
    BEGIN/COMMIT round trips, without the ORM's per-statement overhead, and without a pool's
    reset query on release: a worker process runs one step at a time per thread, so one
    connection per thread's loop suffices. A broken connection is dropped and reopened on
    the next call (callers retry transient errors).
    """
    url = get_settings().require_database_url()
    key = (os.getpid(), id(asyncio.get_running_loop()), url)
    conn = _conns.get(key)
    if conn is None or conn.is_closed():
        _forget_closed_loops()
        _loops[key[1]] = weakref.ref(asyncio.get_running_loop())
        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(
            dsn,
            timeout=10,
            command_timeout=60,
            # The protocol's statements are prepared once per connection; a generic plan
            # saves planning them again (about a millisecond each) on every step.
            server_settings={"plan_cache_mode": "force_generic_plan"},
        )
        _conns[key] = conn
    return conn


def drop_driver_connection() -> None:
    """Forget this loop's connection after an error; it is reopened on next use."""
    for key in [k for k in _conns if k[0] == os.getpid()]:
        conn = _conns[key]
        if conn.is_closed():
            del _conns[key]


def create_engine(url: str) -> AsyncEngine:
    settings = get_settings()
    return create_async_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_recycle=1800,
        pool_pre_ping=True,  # survive a database restart or failover without a failed request
        pool_timeout=settings.database_pool_timeout_seconds,
        connect_args={"timeout": 10, "command_timeout": 60},
    )


def forget_engines() -> None:
    """Drop engines inherited over fork without closing them: the parent still owns them."""
    pid = os.getpid()
    for key in [k for k in _engines if k[0] != pid]:
        del _engines[key]
    for key in [k for k in _conns if k[0] != pid]:
        del _conns[key]


async def dispose_engine() -> None:
    loop_key = (os.getpid(), id(asyncio.get_running_loop()))
    for key in [k for k in _engines if k[:2] == loop_key]:
        await _engines.pop(key).dispose()
    for key in [k for k in _conns if k[:2] == loop_key]:
        await _conns.pop(key).close()
