"""What reelflow asks of its broker, through kombu's public interface only.

Redis and RabbitMQ answer the same two questions here (is it there, how many messages wait
in each queue), so health, metrics and the reconciler work on either without reading a
broker's internals. Nothing here peeks at messages: what is queued for a run is judged
from the queues' depths and from what the live workers say they hold.
"""

from __future__ import annotations

import contextlib
from typing import Any

from kombu import Connection
from kombu.exceptions import OperationalError

from reelflow.errors import ReelflowError
from reelflow.settings import get_settings


class BrokerUnavailable(ReelflowError):
    """The broker did not answer within the timeout; try again shortly."""

    code = "broker_unavailable"


def is_unavailable(exc: BaseException) -> bool:
    """The broker (or Redis as the result backend) is away: kombu's and redis-py's
    connection errors, in whatever wrapping Celery raises them."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    broker_errors = (BrokerUnavailable, OperationalError, RedisConnectionError, RedisTimeoutError)
    return isinstance(exc, broker_errors)


def _connection(timeout: float) -> Connection:
    settings = get_settings()
    if settings.broker_kind == "redis":
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    else:  # py-amqp waits forever for a reply unless told: a stalled broker must not hang us
        options = {"read_timeout": timeout, "write_timeout": timeout}
    return Connection(settings.broker_url, connect_timeout=timeout, transport_options=options)


def _connected(conn: Connection) -> None:
    """Connect once: no retry, so a refusal answers at once and the caller's timeout holds."""
    try:
        conn.ensure_connection(max_retries=0, interval_start=0, interval_step=0, interval_max=0)
    except (OperationalError, OSError) as exc:
        raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from exc


def ping(timeout: float = 1.0) -> None:
    """Return when the broker accepts a connection; BrokerUnavailable otherwise."""
    with _connection(timeout) as conn:
        _connected(conn)
        conn.default_channel  # noqa: B018 - opening a channel proves the login and vhost


def queue_depths(queues: tuple[str, ...], timeout: float = 2.0) -> dict[str, int]:
    """Messages ready in each queue (not those a worker holds unacked): a passive declare,
    which both transports answer. A queue nobody declared yet holds nothing."""
    depths: dict[str, int] = {}
    with _connection(timeout) as conn:
        _connected(conn)
        for queue in queues:
            channel: Any = conn.channel()
            try:
                depths[queue] = int(channel.queue_declare(queue=queue, passive=True).message_count)
            except conn.channel_errors:
                depths[queue] = 0  # not declared yet (a RabbitMQ 404 closes the channel)
            finally:
                with contextlib.suppress(Exception):  # closed already by a RabbitMQ 404
                    channel.close()
    return depths


def declare_dead_letter_queue(timeout: float = 5.0) -> None:
    """RabbitMQ: the exchange and queue the step queues dead-letter into (idempotent)."""
    from reelflow.celery_app import dead_letter_queue

    with _connection(timeout) as conn:
        _connected(conn)
        dead_letter_queue()(conn.default_channel).declare()
