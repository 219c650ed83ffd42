"""How every connection to PostgreSQL is made (`connect`), the engine's and the claim
protocol's alike, so TLS, timeouts and the pooler's rules hold for both.

- TLS: the URL's `sslmode` (and `sslrootcert`, or DATABASE_SSL_ROOT_CERT) reach asyncpg,
  which reads them as libpq does (SQLAlchemy's URL translation would pass them on as
  arguments asyncpg refuses).
- On PostgreSQL itself (DATABASE_POOLER=none), settings are the session's (startup
  parameters, no round trip) and asyncpg caches its prepared statements.
- Behind a transaction-mode pooler, each transaction may run on another server
  connection, and PgBouncer refuses unknown startup parameters: the settings go out with
  each BEGIN as `SET LOCAL`, and a statement is named after its text, so a server
  connection that has it (prepared by any client) serves every client, and one that
  lacks it says so (`StatementMissing`) instead of running another client's statement
  of the same name.
"""

from __future__ import annotations

import hashlib
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from reelflow.settings import Settings, get_settings

#: Does this server connection hold a statement of ours? (asked before preparing one)
_HELD = "SELECT EXISTS (SELECT FROM pg_prepared_statements WHERE name = $1)"

#: A statement prepared on another server connection, missing on this one (SQLSTATE 26000).
StatementMissing = asyncpg.exceptions.InvalidSQLStatementNameError


class PoolerSafeConnection(asyncpg.Connection):  # type: ignore[misc]
    """An asyncpg connection that keeps nothing in a session a pooler would lose.

    `begin_suffix`: `SET LOCAL`s sent with every BEGIN (asyncpg begins every transaction,
    SQLAlchemy's too, with `execute("BEGIN ...")`), in the same round trip. `shared`: a
    statement run inside a transaction is prepared once per server connection under a
    name made from its text and reused by every client (no parsing or planning per
    call); outside one it is unnamed and parsed each time."""

    begin_suffix = ""
    shared = False

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        if self.begin_suffix and not args and query.startswith("BEGIN"):
            query += self.begin_suffix
        result: str = await super().execute(query, *args, timeout=timeout)
        return result

    async def _get_statement(
        self, query: str, timeout: float | None, *, named: Any = False, use_cache: bool = True,
        **kwargs: Any,
    ) -> Any:  # fmt: skip
        """asyncpg's statement lookup (every fetch and execute goes through it), naming
        each statement after its text when shared."""
        if not self.shared or named is not False or not use_cache:
            return await super()._get_statement(
                query, timeout, named=named, use_cache=use_cache, **kwargs
            )
        if not self.is_in_transaction():  # the next call may reach another server
            return await super()._get_statement(query, timeout, named="", use_cache=False, **kwargs)
        name = "reelflow_" + hashlib.sha256(query.encode()).hexdigest()[:32]
        ready: set[str] = self.__dict__.setdefault("_shared_ready", set())
        if name not in ready:  # first use here: this server connection may hold it
            held = await self.prepare(_HELD, name="")
            if await held.fetchval(name):
                await super().execute(f"DEALLOCATE {name}")  # to prepare ours in its place
            ready.add(name)
        return await super()._get_statement(query, timeout, named=name, use_cache=True, **kwargs)

    def forget_statements(self) -> None:
        """After `StatementMissing`: prepare every statement again where it is next used.
        Nothing is sent to close the old ones (they are others' to use)."""
        self.__dict__.pop("_shared_ready", None)
        self._mark_stmts_as_closed()


def session_settings(settings: Settings, *, timed: bool) -> dict[str, str]:
    """The statement and lock timeouts (none for migrations)."""
    if not timed:
        return {}
    return {
        "statement_timeout": str(settings.database_statement_timeout_ms),
        "lock_timeout": str(settings.database_lock_timeout_ms),
    }


def driver_dsn(url: str, settings: Settings | None = None) -> str:
    """The URL as asyncpg reads it: libpq's spelling, with the CA file when one is set."""
    settings = settings or get_settings()
    parsed = make_url(url).set(drivername="postgresql")
    if settings.database_ssl_root_cert and "sslrootcert" not in parsed.query:
        parsed = parsed.update_query_dict({"sslrootcert": str(settings.database_ssl_root_cert)})
    return parsed.render_as_string(hide_password=False)


async def connect(
    url: str,
    *,
    pooled: bool,
    timed: bool = True,
    extra: dict[str, str] | None = None,
    shared: bool = False,
) -> asyncpg.Connection:
    """A new connection to `url`. `pooled`: through a transaction-mode pooler. `timed`:
    with the statement and lock timeouts (migrations run without them). `extra`: more
    settings (the session's, or each transaction's behind a pooler). `shared`: behind a
    pooler, name statements after their text (the claim protocol's connection; the
    engine's are SQLAlchemy's, unnamed)."""
    settings = get_settings()
    values = {**session_settings(settings, timed=timed), **(extra or {})}
    conn: PoolerSafeConnection = await asyncpg.connect(
        driver_dsn(url, settings),
        timeout=10,
        command_timeout=command_timeout(settings) if timed else None,
        statement_cache_size=100 if shared or not pooled else 0,
        max_cacheable_statement_size=0 if shared else 15 * 1024,  # shared: cache them all
        server_settings=None if pooled else values,
        connection_class=PoolerSafeConnection,
    )
    if pooled:
        conn.begin_suffix = "".join(f"; SET LOCAL {k} = {v}" for k, v in values.items())
        conn.shared = shared
    return conn


def command_timeout(settings: Settings) -> float:
    """asyncpg's own bound on a call, a backstop past the server's statement timeout."""
    return max(60.0, settings.database_statement_timeout_ms / 1000 + 10)
