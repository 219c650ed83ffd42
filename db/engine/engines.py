"""Async engines, one per (process, event loop), created lazily and never inherited by a fork,
and the claim protocol's own connection, one per (process, event loop) too.

A prefork child that used its parent's pool would share sockets with it; an engine used from
a second event loop fails with "attached to a different loop". Keying engines by pid and
loop rules out both. Every connection comes from `db.engine.connection.connect`.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, QueuePool

from db.engine.connection import StatementMissing, connect
from db.errors import note_timeout
from reelflow.settings import Settings, async_database_url, get_settings

T = TypeVar("T")

_engines: dict[tuple[int, int, str], AsyncEngine] = {}
_conns: dict[tuple[int, int, str], asyncpg.Connection] = {}
_loops: dict[int, weakref.ref[asyncio.AbstractEventLoop]] = {}


def pooled(settings: Settings | None = None) -> bool:
    """Whether DATABASE_URL reaches a transaction-mode pooler (DATABASE_POOLER)."""
    return (settings or get_settings()).database_pooler == "transaction"


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

    Each claim-protocol statement is one CTE, atomic on its own, so on PostgreSQL itself it
    runs without BEGIN/COMMIT round trips (behind a pooler a call is one transaction, for
    its timeouts), without the ORM's per-statement overhead, and without a pool's reset
    query on release: a worker process runs one step at a time per thread, so one
    connection per thread's loop suffices. A broken connection is dropped and reopened on
    the next call (callers retry transient errors). Use it through `on_driver()`.
    """
    url = get_settings().require_database_url()
    key = (os.getpid(), id(asyncio.get_running_loop()), url)
    conn = _conns.get(key)
    if conn is None or conn.is_closed():
        _forget_closed_loops()
        _loops[key[1]] = weakref.ref(asyncio.get_running_loop())
        # The protocol's statements are prepared once per server connection (behind a
        # pooler too: `shared`); a generic plan saves planning them again (milliseconds
        # for the claim) on every step.
        conn = await connect(
            url, pooled=pooled(), extra={"plan_cache_mode": "force_generic_plan"}, shared=True
        )
        _conns[key] = conn
    return conn


@asynccontextmanager
async def driver_session() -> AsyncIterator[asyncpg.Connection]:
    """The driver connection for one use. Behind a pooler the use is one transaction, so
    the timeouts (`SET LOCAL`, sent with its BEGIN) bound it and its statements are the
    server connection's own; on PostgreSQL itself they are the session's, and a
    statement needs no BEGIN."""
    conn = await driver_connection()
    if not pooled() or conn.is_in_transaction():
        yield conn
        return
    async with conn.transaction():
        yield conn


async def on_driver(fn: Callable[..., Awaitable[T]], /, **kwargs: Any) -> T:
    """`fn(connection, **kwargs)` in a `driver_session`, run again once if the server
    connection the pooler gave it lacks a statement this client prepared on another."""
    try:
        async with driver_session() as conn:
            return await fn(conn, **kwargs)
    except StatementMissing:
        (await driver_connection()).forget_statements()
    async with driver_session() as conn:
        return await fn(conn, **kwargs)


def drop_driver_connection(*, failed: bool = False) -> None:
    """Forget this process's closed connections; they are reopened on next use. `failed`
    (a call on this loop's connection raised): one left inside a transaction is closed
    first, never reused in an unknown state."""
    loop_id = id(asyncio.get_running_loop()) if failed else None
    for key in [k for k in _conns if k[0] == os.getpid()]:
        conn = _conns[key]
        if key[1] == loop_id and not conn.is_closed() and conn.is_in_transaction():
            conn.terminate()
        if conn.is_closed():
            del _conns[key]


def create_engine(
    url: str, *, behind_pooler: bool | None = None, timed: bool = True, pool: bool = True
) -> AsyncEngine:
    """An engine whose connections come from `connect()`. `behind_pooler`: default
    DATABASE_POOLER's word. `timed=False` (migrations): no statement or lock timeout.
    `pool=False`: a connection per use, closed after."""
    settings = get_settings()
    url = async_database_url(url)  # the dialect SQLAlchemy needs, whatever the spelling
    via_pooler = pooled(settings) if behind_pooler is None else behind_pooler
    engine: AsyncEngine

    def creator() -> Any:  # SQLAlchemy's adapter around the asyncpg connection we make
        return engine.sync_engine.dialect.loaded_dbapi.connect(
            async_creator_fn=lambda: connect(url, pooled=via_pooler, timed=timed),
            # Behind a pooler: no cache, and the unnamed statement (see the docstring).
            prepared_statement_cache_size=0 if via_pooler else 100,
            prepared_statement_name_func=(lambda: "") if via_pooler else None,
        )

    options: dict[str, Any] = {"poolclass": NullPool}
    if pool:
        options = {
            "pool_size": settings.database_pool_size,
            "max_overflow": settings.database_max_overflow,
            "pool_recycle": 1800,
            "pool_pre_ping": True,  # survive a database restart or failover
            "pool_timeout": settings.database_pool_timeout_seconds,
        }
    engine = create_async_engine(url, creator=creator, **options)
    event.listen(engine.sync_engine, "handle_error", _note_timeouts)
    return engine


def _note_timeouts(context: ExceptionContext) -> None:
    """A statement our timeouts stopped is tallied (`db.errors`), whoever ran it."""
    note_timeout(context.original_exception)


@dataclass(frozen=True)
class PoolUsage:
    """This process's connections from its engines' pools (one per event loop): in use,
    open (in use or idle), and the most they may open (pool size + overflow each)."""

    in_use: int
    open: int
    limit: int


def pool_usage() -> PoolUsage:
    settings = get_settings()
    in_use = open_ = engines = 0
    for key, engine in list(_engines.items()):
        pool = engine.sync_engine.pool
        if key[0] == os.getpid() and isinstance(pool, QueuePool):
            engines += 1
            in_use += pool.checkedout()
            open_ += pool.checkedout() + pool.checkedin()
    per_engine = settings.database_pool_size + settings.database_max_overflow
    return PoolUsage(in_use=in_use, open=open_, limit=per_engine * max(engines, 1))


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
