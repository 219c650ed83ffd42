"""Which database errors are the database being away: the one place that knows the
driver's (asyncpg) and SQLAlchemy's exception classes. Callers above `db/` ask
`is_unavailable(exc)`, or catch `DatabaseUnavailable`, and never test driver classes."""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from tenacity import retry as tenacity_retry
from tenacity import retry_if_exception, stop_after_delay, wait_exponential_jitter

from reelflow.errors import ReelflowError


class DatabaseUnavailable(ReelflowError):
    """The database is not answering; try again shortly.

    It is restarting, failing over, or out of connections."""

    code = "database_unavailable"


def is_unavailable(exc: BaseException) -> bool:
    """True for errors a later try can succeed past: the connection failed, the server
    restarts or refuses connections now, or a call timed out."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    if isinstance(exc, (OperationalError, InterfaceError, asyncpg.InterfaceError)):
        return True
    if isinstance(
        exc,
        (
            asyncpg.PostgresConnectionError,
            asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
            asyncpg.exceptions.ConnectionDoesNotExistError,
        ),
    ):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (ConnectionError, OSError, TimeoutError))


#: Database writes from workers: ride out a restart or failover of PostgreSQL (bounded).
db_retry = tenacity_retry(
    retry=retry_if_exception(is_unavailable),
    wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.5),
    stop=stop_after_delay(120),
    reraise=True,
)
