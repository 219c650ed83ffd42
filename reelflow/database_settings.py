"""How each process talks to PostgreSQL: its connection budget and its time limits, apart
from the service's settings so the budget reads as one list. `Settings` inherits them.

Connections needed = hosts x processes per host x (DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW
+ 2): the `+ 2` is the claim protocol's own connection and the maintenance thread's. When
that passes PostgreSQL's `max_connections`, put a transaction-mode pooler in front.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_pool_size: int = Field(
        5, ge=1, le=100, description="Connections each process keeps open (SQLAlchemy pool_size)"
    )
    database_max_overflow: int = Field(
        5, ge=0, le=100, description="Connections a process may open beyond the pool, closed after"
    )
    database_pool_timeout_seconds: float = Field(
        30, gt=0, le=600, description="How long a process waits for a free connection"
    )
