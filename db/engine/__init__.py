"""Connections to PostgreSQL: how each is made (`connection`: TLS, timeouts, the pooler's
rules) and the engines and claim-protocol connections of each process (`engines`)."""

from db.engine.connection import connect, driver_dsn
from db.engine.engines import (
    PoolUsage,
    create_engine,
    dispose_engine,
    driver_connection,
    driver_session,
    drop_driver_connection,
    forget_engines,
    get_engine,
    on_driver,
    pool_usage,
    pooled,
)

__all__ = [
    "PoolUsage",
    "connect",
    "create_engine",
    "dispose_engine",
    "driver_connection",
    "driver_dsn",
    "driver_session",
    "drop_driver_connection",
    "forget_engines",
    "get_engine",
    "on_driver",
    "pool_usage",
    "pooled",
]
