"""Async engines, one per (process, event loop), created lazily and never inherited by a fork.

A prefork child that used its parent's pool would share sockets with it; an engine used from
a second event loop fails with "attached to a different loop". Keying engines by pid and
loop rules out both.
"""

from __future__ import annotations

import asyncio
import os

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from reelflow.settings import get_settings

_engines: dict[tuple[int, int, str], AsyncEngine] = {}


def get_engine() -> AsyncEngine:
    """The engine of this process and running loop."""
    url = get_settings().require_database_url()
    key = (os.getpid(), id(asyncio.get_running_loop()), url)
    engine = _engines.get(key)
    if engine is None:
        engine = create_engine(url)
        _engines[key] = engine
    return engine


def autocommit(engine: AsyncEngine) -> AsyncEngine:
    """The same pool without BEGIN/COMMIT round trips: for work done in one statement.

    The claim protocol's statements are single CTE statements, atomic on their own, so each
    costs one round trip to PostgreSQL instead of three.
    """
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def create_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=10,
        pool_recycle=1800,
        pool_timeout=10,
        connect_args={"timeout": 10, "command_timeout": 60},
    )


def forget_engines() -> None:
    """Drop engines inherited over fork without closing them: the parent still owns them."""
    pid = os.getpid()
    for key in [k for k in _engines if k[0] != pid]:
        del _engines[key]


async def dispose_engine() -> None:
    loop_key = (os.getpid(), id(asyncio.get_running_loop()))
    for key in [k for k in _engines if k[:2] == loop_key]:
        await _engines.pop(key).dispose()
