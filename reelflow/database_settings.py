"""Where a process finds its servers and how it talks to PostgreSQL: its connection budget,
apart from the service's settings so the budget reads as one list. `Settings` inherits them.

Beside `reelflow dev`: the stack writes `REELFLOW_HOME/dev.json` (its pid and its servers'
URLs) once it is up and removes it when it stops. A process whose settings name no database
and no broker reads it: `reelflow run` or `celery -A reelflow inspect` in a second terminal,
in the same folder, talk to the same servers, and inject failures if the stack allows it. A
file left by a stack that died (its pid gone) is ignored.

Connections needed = hosts x processes per host x (DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW
+ 2), a worker's processes being its children and its main process: the `+ 2` are the
connections of a process's threads outside the pool (a child's claim protocol and lease
renewer; a main process's maintenance; an API's slot hand-overs). When
that passes PostgreSQL's `max_connections`, put a transaction-mode pooler in front
(PgBouncer) and say so with DATABASE_POOLER=transaction: nothing then relies on a session
(no statement cache, timeouts set per transaction), and migrations take
DATABASE_DIRECT_URL, past the pooler.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reelflow.setting_values import async_database_url

DEV_STATE = "dev.json"


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
    database_pooler: Literal["none", "transaction"] = Field(
        "none",
        description="What DATABASE_URL reaches: none (PostgreSQL itself) or transaction"
        " (a transaction-mode pooler such as PgBouncer: no prepared-statement cache)",
    )
    database_direct_url: str | None = Field(
        None, description="PostgreSQL past the pooler, for migrations; default DATABASE_URL"
    )
    database_statement_timeout_ms: int = Field(
        30_000, ge=0, description="A statement running longer is cancelled and retried (0: none)"
    )
    database_lock_timeout_ms: int = Field(
        10_000, ge=0, description="A lock waited for longer is given up and retried (0: none)"
    )
    database_ssl_root_cert: Path | None = Field(
        None, description="CA file the server's certificate is verified against (sslmode=verify-*)"
    )

    @field_validator("database_ssl_root_cert")
    @classmethod
    def _ca_file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"no CA file at {v}")
        return v

    @field_validator("database_direct_url")
    @classmethod
    def _direct(cls, v: str | None) -> str | None:
        return async_database_url(v) if v else None

    @model_validator(mode="before")
    @classmethod
    def _beside_dev(cls, data: Any) -> Any:
        """No database or broker named: those of the `reelflow dev` running from here."""
        return adopt_dev_stack(data) if isinstance(data, dict) else data


def write_dev_state(home: Path, **state: Any) -> None:
    """Written whole then renamed (a reader never sees half), readable by its owner only:
    the URLs may hold passwords."""
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / f".{DEV_STATE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"pid": os.getpid(), **state}, fh)
    tmp.replace(home / DEV_STATE)


def clear_dev_state(home: Path) -> None:
    """Remove the file if it is this process's."""
    path = home / DEV_STATE
    found = read_dev_state(home, live_only=False)
    if found is not None and found.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def read_dev_state(home: Path, *, live_only: bool = True) -> dict[str, Any] | None:
    """The state of the stack running from `home`, or None (no file, unreadable, or its
    process is gone)."""
    try:
        state = json.loads((home / DEV_STATE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not isinstance(state.get("pid"), int):
        return None
    if live_only and not _alive(state["pid"]):
        return None
    return state


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    except OSError:
        return False
    return True


def adopt_dev_stack(data: dict[str, Any]) -> dict[str, Any]:
    """Raw settings with the running dev stack's servers filled in, when they name none.

    Only when neither a database nor a broker is set: a process told where its servers are
    never drifts to another stack. ALLOW_FAULT_INJECTION follows the stack's unless set."""
    keys = ("database_url", "redis_url", "celery_broker_url")
    if any(data.get(k) for k in keys):
        return data
    state = read_dev_state(Path(data.get("reelflow_home") or ".reelflow"))
    if state is None:
        return data
    found = {k: state[k] for k in ("database_url", "redis_url") if isinstance(state.get(k), str)}
    if "allow_fault_injection" not in data and isinstance(state.get("allow_fault_injection"), bool):
        found["allow_fault_injection"] = state["allow_fault_injection"]
    return {**data, **found}
