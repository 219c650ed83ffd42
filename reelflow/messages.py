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
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

import structlog
from celery.signals import task_received
from celery.worker.consumer import Consumer
from kombu.exceptions import ContentDisallowed, DecodeError
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
