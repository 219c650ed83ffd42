"""The Celery app, configured from settings. `celery -A reelflow worker` finds it.

Configuration is added lazily (`add_defaults`), so importing a step module does not need a
broker URL until something actually talks to the broker.
"""

from __future__ import annotations

import importlib
import time
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from celery.signals import before_task_publish
from kombu import Exchange, Queue

from reelflow.messages import DEAD_LETTER  # importing it registers the guarded transport
from reelflow.settings import get_settings

QUEUES = ("default", "gpu")

#: The worker's side: its lifecycle (every signal it answers) and `inspect steps`.
WORKER_MODULES = ["workflows.worker.lifecycle", "workflows.worker.inspect"]

#: Modules whose import registers tasks; the worker imports them at start.
TASK_MODULES = [
    "steps.probe",
    "steps.short_video.trends",
    "steps.short_video.script",
    "steps.short_video.voice",
    "steps.short_video.render",
    "steps.short_video.compose",
    "workflows.definition.expander",
]


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any) -> Any:
    """Each step's queue comes from its `@step(queue=...)` declaration."""
    spec = getattr(task, "spec", None)
    return {"queue": spec.queue} if spec is not None else None


def step_queues(kind: str, queue_type: str) -> list[Queue]:
    """The step queues. On RabbitMQ each has a topic exchange of its own, so that Celery's
    native delayed delivery can route a retry's countdown through the broker (quorum
    queues do not support holding ETA messages in a worker); on Redis, plain queues."""
    if kind != "amqp":
        return [Queue(name) for name in QUEUES]
    return [
        Queue(
            name,
            Exchange(name, type="topic"),
            routing_key=name,
            # A message a worker refuses (malformed, unroutable) goes to reelflow.dead.
            queue_arguments={"x-queue-type": queue_type, "x-dead-letter-exchange": DEAD_LETTER},
        )
        for name in QUEUES
    ]


def dead_letter_queue() -> Queue:
    """Where the step queues dead-letter on RabbitMQ: kept for an operator to read, never
    consumed by a worker."""
    return Queue(DEAD_LETTER, Exchange(DEAD_LETTER, type="fanout"), routing_key=DEAD_LETTER)


def celery_config() -> dict[str, Any]:
    settings = get_settings()
    kind = settings.broker_kind
    redis_transport = {"visibility_timeout": settings.visibility_timeout_seconds}
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend,
        # Redis redelivers an unacked message after visibility_timeout; RabbitMQ when the
        # consumer's connection closes (and after its consumer_timeout, 30 min by default).
        # RabbitMQ: a publish returns once the broker has taken the message (publisher
        # confirms), so an intent is never marked sent for a message the broker dropped.
        "broker_transport_options": redis_transport
        if kind == "redis"
        else {"confirm_publish": True},
        "result_backend_transport_options": redis_transport,
        "broker_native_delayed_delivery_queue_type": settings.amqp_queue_type,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_track_started": True,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_default_queue": "default",
        "task_queues": step_queues(kind, settings.amqp_queue_type),
        "task_create_missing_queues": False,
        "task_routes": (route_task,),
        "result_expires": 24 * 3600,
        "result_extended": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # Refuse a poison message (rejected, counted, logged once) instead of dying of it.
        "worker_consumer": "reelflow.messages:GuardedConsumer",
        # A deployment's own workflows (WORKFLOW_MODULES) register their steps here too.
        "include": [*WORKER_MODULES, *TASK_MODULES, *_split(settings.workflow_modules)],
    }


app = Celery("reelflow")
app.add_defaults(celery_config)

#: The header every message carries from whoever publishes it (API, relay, worker): when
#: it became deliverable, in epoch seconds (sent, or its ETA when later: a retry's countdown
#: is not time waited in the queue). The worker that takes it measures the wait from it.
ENQUEUED_HEADER = "reelflow_enqueued_at"


@before_task_publish.connect
def _stamp_enqueued(headers: Any = None, **_: Any) -> None:
    if headers is None:
        return
    now = time.time()
    headers[ENQUEUED_HEADER] = max(now, _epoch(headers.get("eta")) or now)


def _epoch(iso: Any) -> float | None:
    """An ETA header (ISO 8601, UTC when it names no zone) as epoch seconds."""
    if not isinstance(iso, str):
        return None
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _split(names: str) -> list[str]:
    return [n.strip() for n in names.split(",") if n.strip()]


def load_worker_modules() -> None:
    """Import, by name, what a process needs that talks to workers: the step tasks, the
    worker hooks and the `inspect steps` command (whose client side must know it too).
    Named as strings, like Celery's own `include`, so the ground floor imports nothing
    above it."""
    extra = _split(get_settings().workflow_modules)
    for module in (*WORKER_MODULES, *TASK_MODULES, *extra):
        importlib.import_module(module)
