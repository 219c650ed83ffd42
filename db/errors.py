"""Which database errors are the database being away: the one place that knows the
driver's (asyncpg) and SQLAlchemy's exception classes. Callers above `db/` ask
`is_unavailable(exc)`, or catch `DatabaseUnavailable`, and never test driver classes.

A statement stopped by our own timeouts (DATABASE_STATEMENT_TIMEOUT_MS,
DATABASE_LOCK_TIMEOUT_MS) counts as away too: a later try can pass once the lock is
released or the load eases. Each one is tallied here, per process, and written to the
engine counters (`database_timeouts`) by whoever drains the tally next."""

from __future__ import annotations

import ssl
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import asyncpg
import structlog
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from tenacity import RetryCallState, retry_if_exception, stop_after_delay, wait_exponential_jitter
from tenacity import retry as tenacity_retry

from reelflow.errors import ReelflowError

log = structlog.get_logger("reelflow.db")
_Fn = TypeVar("_Fn", bound=Callable[..., Any])

#: SQLSTATEs of a statement our timeouts stopped: statement_timeout cancels it
#: (57014 query_canceled), lock_timeout gives up its wait (55P03 lock_not_available).
TIMEOUTS = {"57014": "statement", "55P03": "lock"}
#: SQLSTATE class 53, insufficient resources: 53300 too_many_connections above all.
_SERVER_FULL = "53"
#: A transaction PostgreSQL rolled back to break a deadlock (40P01) or a serialization
#: conflict (40001): the same work tried again goes through.
_ROLLED_BACK = {"40P01", "40001"}


class DatabaseUnavailable(ReelflowError):
    """The database is not answering; try again shortly.

    It is restarting, failing over, or out of connections."""

    code = "database_unavailable"


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a server error, as asyncpg raised it or SQLAlchemy wrapped it."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return None
        code = getattr(seen, "sqlstate", None)
        if isinstance(code, str):
            return code
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


def timeout_kind(exc: BaseException) -> str | None:
    """ "statement" or "lock" when one of our timeouts stopped the statement, else None."""
    return TIMEOUTS.get(sqlstate(exc) or "")


def is_unavailable(exc: BaseException) -> bool:
    """True for errors a later try can succeed past: the connection failed, the server
    restarts or refuses connections now (too many clients), no pooled connection came
    free in DATABASE_POOL_TIMEOUT_SECONDS, a call timed out, or a statement ran past its
    statement or lock timeout, or was rolled back to break a deadlock."""
    if _misconfigured(exc):
        return False
    if isinstance(exc, (DatabaseUnavailable, PoolTimeout)):
        return True
    code = sqlstate(exc)
    if code is not None and (
        code in TIMEOUTS or code in _ROLLED_BACK or code.startswith(_SERVER_FULL)
    ):
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


def _misconfigured(exc: BaseException) -> bool:
    """A mistake no later try gets past: a server certificate the CA does not verify (or
    for another host), here or in what caused it (never in what it merely interrupted: a
    blip while handling such an error is still a blip)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


_seen: Counter[str] = Counter()
_seen_lock = threading.Lock()


def note_timeout(exc: BaseException) -> str | None:
    """Tally `exc` if one of our timeouts stopped it; return which."""
    kind = timeout_kind(exc)
    if kind is not None:
        with _seen_lock:
            _seen[kind] += 1
    return kind


def timeouts_pending() -> bool:
    """Whether any timeout waits to be counted (read without the lock: a hint)."""
    return bool(_seen)


def drain_timeouts() -> dict[str, int]:
    """The timeouts tallied since the last drain (give them back with `restore_timeouts`
    if they could not be written)."""
    with _seen_lock:
        found = dict(_seen)
        _seen.clear()
    return found


def restore_timeouts(found: dict[str, int]) -> None:
    with _seen_lock:
        _seen.update(found)


def _first_retry(state: RetryCallState) -> None:
    """One line per wait, not per try: the first retry says why it waits."""
    if state.attempt_number == 1 and state.outcome is not None:
        log.warning("db_retrying", error=repr(state.outcome.exception()))


_POLICY = {
    "retry": retry_if_exception(is_unavailable),
    "wait": wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.5),
    "stop": stop_after_delay(120),
    "reraise": True,
}
#: Database writes from workers: ride out a restart or failover of PostgreSQL, a held
#: lock, a full pool or a full server (bounded), saying once why it waits.
db_retry: Callable[[_Fn], _Fn] = tenacity_retry(**_POLICY, before_sleep=_first_retry)  # type: ignore[call-overload]
#: The same, silent: for a caller that said why already.
quiet_retry: Callable[[_Fn], _Fn] = tenacity_retry(**_POLICY)  # type: ignore[call-overload]
