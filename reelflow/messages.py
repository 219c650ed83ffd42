"""Poison messages: a message the worker cannot take is refused, never a reason to stop.

Celery's consumer parses each message in the worker's main process; a body that is not
its `[args, kwargs, embed]` triple (a JSON object, say) raises inside that parsing, the
worker exits, the message goes back to the queue and kills the next worker that takes it.
`GuardedConsumer` (the `worker_consumer` setting) checks every message before Celery
touches it: its headers, its content type, the shape of its body, and, for a task that
declares `check_message(args, kwargs)` (reelflow's steps and expander), its arguments.
A message that fails is rejected without requeueing (on RabbitMQ the step queues
dead-letter it to `reelflow.dead`), logged once and counted by reason; the worker goes on.
A message it takes is handed to Celery with what its task says its lines carry
(`log_fields`: a step's run, step and key) bound, so Celery's `received` line names them.

On Redis a message is parsed once more before that, by kombu's transport: an entry of the
queue's list that is not JSON, or a JSON envelope kombu cannot build a message from
(headers that are a list, no properties), raised there and stopped the worker.
`GuardedRedisTransport` (registered for redis:// and rediss:// URLs) refuses those the
same way, and keeps every message it refuses in the `reelflow.dead` list, as RabbitMQ
dead-letters them.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

import structlog
from celery.signals import task_received
from celery.worker.consumer import Consumer
from kombu.exceptions import ContentDisallowed, DecodeError
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from structlog.contextvars import bound_contextvars
from vine import promise

log = structlog.get_logger("reelflow.messages")

_lock = threading.Lock()
_rejected: Counter[str] = Counter()


def count_rejection(reason: str) -> None:
    with _lock:
        _rejected[reason] += 1


def drain_rejections() -> dict[str, int]:
    """Rejections since the last call (the worker's maintenance thread records them)."""
    with _lock:
        drained = dict(_rejected)
        _rejected.clear()
    return drained


def restore_rejections(counts: Mapping[str, int]) -> None:
    """Put back counts that could not be recorded (the database was away)."""
    with _lock:
        _rejected.update(counts)


_LISTS = ("callbacks", "errbacks", "chain")


def _seconds(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def malformed(headers: Any, payload: Any) -> tuple[str, str] | None:
    """Why a decoded message is not one Celery can take: (reason label, detail)."""
    if not isinstance(headers, Mapping):
        return "malformed", "headers are not a mapping"
    if not isinstance(headers.get("task"), str) or not headers["task"]:
        return "malformed", "no task name in the headers (not Celery's message protocol 2)"
    if not isinstance(headers.get("id"), str) or not headers["id"]:
        return "malformed", "no task id in the headers"
    limits = headers.get("timelimit")
    if limits is not None and not (
        isinstance(limits, (list, tuple))
        and len(limits) == 2
        and all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in limits
        )
    ):
        return "malformed", "timelimit is not [hard, soft]"
    if not (isinstance(payload, (list, tuple)) and len(payload) == 3):
        return "malformed", "the body is not Celery's [args, kwargs, embed]"
    args, kwargs, embed = payload
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        return "malformed", "args is not a list or kwargs is not an object"
    if embed is not None and not isinstance(embed, dict):
        return "malformed", "embed is not an object"
    for name in _LISTS:
        value = (embed or {}).get(name)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, dict) for v in value)
        ):
            return "malformed", f"embed.{name} is not a list of signatures"
    chord = (embed or {}).get("chord")
    if chord is not None and not isinstance(chord, dict):
        return "malformed", "embed.chord is not a signature"
    return None


class GuardedConsumer(Consumer):
    """Celery's consumer, refusing what it cannot take instead of dying of it."""

    connection_errors: tuple[type[BaseException], ...]  # set by Consumer.__init__
    channel_errors: tuple[type[BaseException], ...]

    #: Set by `task_received` once Celery has built the request: after that point an
    #: error is Celery's own, and is raised as before.
    received_current = False

    def create_task_handler(self, promise: Any = promise) -> Any:
        handle = super().create_task_handler(promise)

        def guarded(message: Any) -> Any:
            problem = self._problem(message)
            if problem is not None:
                return self._refuse(message, *problem)
            self.received_current = False
            try:
                with bound_contextvars(**self._log_fields(message)):
                    return handle(message)
            except (*self.connection_errors, *self.channel_errors):
                raise  # the connection is at fault, not the message: reconnect as usual
            except Exception as exc:
                if self.received_current or message.acknowledged:
                    raise
                detail = f"Celery could not take it: {type(exc).__name__}: {exc}"
                return self._refuse(message, "malformed", detail)

        return guarded

    def _problem(self, message: Any) -> tuple[str, str] | None:
        try:
            payload = message.decode()
        except ContentDisallowed:
            return "disallowed_content", f"content type {message.content_type!r} is not accepted"
        except (DecodeError, Exception) as exc:
            return "undecodable", f"the body does not decode: {type(exc).__name__}"
        headers = message.headers
        problem = malformed(headers, payload)
        if problem is not None:
            return problem
        task = self.app.tasks.get(headers["task"])
        check = getattr(task, "check_message", None)
        if check is not None:
            reason = check(list(payload[0]), payload[1])
            if reason:
                return "invalid_args", reason
        return None

    def _log_fields(self, message: Any) -> dict[str, Any]:
        """What the message's task says its lines carry (checked by `_problem` already)."""
        task = self.app.tasks.get(message.headers["task"])
        fields = getattr(task, "log_fields", None)
        if fields is None:
            return {}
        args, kwargs, _ = message.decode()  # decoded once, by `_problem`
        return fields(list(args), kwargs)  # type: ignore[no-any-return]

    def _refuse(self, message: Any, reason: str, detail: str) -> None:
        headers = message.headers if isinstance(message.headers, Mapping) else {}
        info = message.delivery_info or {}
        log.warning(
            "message_rejected",
            reason=reason,
            detail=detail[:300],
            task=str(headers.get("task"))[:200],
            message_id=str(headers.get("id"))[:100],
            queue=info.get("routing_key"),
            body=repr(message.body)[:300],
        )
        count_rejection(reason)
        bury = getattr(message.channel, "bury", None)
        if bury is not None:  # Redis: kept for an operator, as RabbitMQ dead-letters it
            bury(getattr(message, "_raw", None) or message.body)
        message.reject_log_error(log, self.connection_errors, requeue=False)

    # Celery's own refusals: one line each (no traceback) and counted, the same way.
    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._refuse(message, "malformed", "not a Celery message")

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._refuse(message, "unknown_task", f"no task named {exc}")

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._refuse(message, "malformed", f"{type(exc).__name__}: {exc}")

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._refuse(message, "undecodable", f"{type(exc).__name__}: {exc}")


@task_received.connect
def _received(sender: Any = None, **_: Any) -> None:
    if isinstance(sender, GuardedConsumer):
        sender.received_current = True


#: The exchange and queue the step queues dead-letter into (RabbitMQ), and the list a
#: worker keeps what it refused in (Redis): refused messages, kept for an operator to read.
DEAD_LETTER = "reelflow.dead"
#: How many refused messages the Redis dead-letter list keeps (the newest).
DEAD_KEPT = 10_000


def _envelope_problem(message: Any) -> str | None:
    """What kombu's Redis message lacks that the worker would trip on later."""
    properties = message.properties
    if not isinstance(message.headers, Mapping):
        return "headers are not a mapping"
    if not isinstance(properties.get("delivery_tag"), str):
        return "no delivery tag"
    if not isinstance(properties.get("delivery_info") or {}, Mapping):
        return "delivery_info is not a mapping"
    return None


class GuardedRedisChannel(kombu_redis.Channel):
    """kombu's Redis channel, refusing a queue entry it cannot make a message of."""

    def basic_consume(self, queue: str, no_ack: bool, callback: Any, consumer_tag: str | None,
                      **kwargs: Any) -> Any:  # fmt: skip
        consumed = super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)

        def guarded(raw: Any) -> Any:  # kombu's own callback, with the envelope checked
            try:
                message = self.Message(raw, channel=self)
                problem = _envelope_problem(message)
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem is not None:
                return self._refuse_raw(raw, queue, problem)
            if not no_ack:
                self.qos.append(message, str(message.delivery_tag))
            return callback(message)

        callbacks: Any = self.connection._callbacks
        callbacks[queue] = guarded
        return consumed

    def _brpop_read(self, **options: Any) -> Any:
        try:
            return super()._brpop_read(**options)  # type: ignore[misc]
        except json.JSONDecodeError as exc:  # an entry that is not JSON: no message at all
            return self._refuse_raw(exc.doc, None, "the queue entry is not JSON")
        except UnicodeDecodeError as exc:
            return self._refuse_raw(exc.object, None, "the queue entry is not UTF-8")

    def _refuse_raw(self, raw: Any, queue: str | None, detail: str) -> bool:
        log.warning("message_rejected", reason="malformed", detail=detail[:300], queue=queue,
                    body=repr(raw)[:300])  # fmt: skip
        count_rejection("malformed")
        self.bury(raw)
        return True

    def bury(self, raw: Any) -> None:
        """Keep a refused message in the dead-letter list (the newest DEAD_KEPT)."""
        entry = raw if isinstance(raw, (str, bytes)) else json.dumps(raw, default=repr)
        try:
            with self.conn_or_acquire() as client:
                client.pipeline().lpush(DEAD_LETTER, entry).ltrim(
                    DEAD_LETTER, 0, DEAD_KEPT - 1
                ).execute()
        except Exception as exc:  # Redis away: the refusal stands, logged above
            log.warning("dead_letter_failed", error=repr(exc))


class GuardedRedisTransport(kombu_redis.Transport):
    Channel = GuardedRedisChannel


for _scheme in ("redis", "rediss"):
    TRANSPORT_ALIASES[_scheme] = "reelflow.messages:GuardedRedisTransport"
