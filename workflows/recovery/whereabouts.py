"""Where a run's messages are: held by a live worker (asked with `celery inspect`), or
waiting in a queue (judged by its depth, through kombu). Both through public interfaces,
so the reconciler works the same on Redis and RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from db.records import OpenStep, RunRecord
from db.repository.reconcile import RunningStep
from reelflow import broker
from reelflow.celery_app import QUEUES, app
from workflows.definition.canvas import expander_key, task_id
from workflows.definition.registry import get_workflow

log = structlog.get_logger("reelflow.reconciler")


@dataclass(frozen=True)
class Held:
    """What the live workers said they hold."""

    ids: set[str]  # tasks running, reserved, or waiting out a retry countdown
    answered: set[str]  # nodenames of the workers that answered every question


def held_tasks() -> Held | None:
    """Ask the live workers; None when the broker cannot be asked (then nothing is taken)."""
    try:
        inspect = app.control.inspect(timeout=1.0)
        replies: list[Any] = [inspect.active(), inspect.reserved(), inspect.scheduled()]
    except Exception as exc:
        log.warning("inspect_failed", error=repr(exc))
        return None
    ids: set[str] = set()
    answered = set.intersection(*(set(r or {}) for r in replies))
    for held in replies:
        for tasks in (held or {}).values():
            for task in tasks:
                request = task.get("request", task)  # scheduled entries wrap the request
                if request.get("id"):
                    ids.add(str(request["id"]))
    return Held(ids, answered)


def is_dead(step: RunningStep, held: Held) -> bool:
    """A running step's attempt is gone: no live worker holds it, and either its worker
    stopped beating, or (a worker that names no heartbeat) its lease expired, or its
    worker beats, its lease expired, and that worker itself answered without it."""
    if step.celery_task_id and step.celery_task_id in held.ids:
        return False  # alive, however long ago its lease lapsed (a database outage)
    if step.worker_silent:
        return True
    if step.lease_worker is None:
        return step.lease_expired
    return step.lease_expired and step.nodename in held.answered


def expected_ids(run: RunRecord, steps: Iterable[OpenStep]) -> set[str]:
    """Message ids the run's current generation may have out for its unfinished steps."""
    ids = set()
    for step in steps:
        ids.add(task_id(run.id, step.key, run.generation))
        if step.celery_task_id:
            ids.add(step.celery_task_id)
    for mapped in get_workflow(run.workflow).mapped_steps:
        ids.add(task_id(run.id, expander_key(mapped), run.generation))
    return ids


@dataclass(frozen=True)
class OutThere:
    """What may still deliver a stalled run's next message."""

    held: set[str]  # message ids the live workers hold
    depths: dict[str, int]  # messages waiting in each step queue, whoever they are for


def out_there() -> OutThere | None:
    """Ask the workers what they hold and the broker how much waits, both through public
    interfaces (inspect, a passive queue declare); None when either cannot be asked."""
    held = held_tasks()
    if held is None:
        return None
    try:
        depths = broker.queue_depths(QUEUES)
    except Exception as exc:
        log.warning("queue_depth_failed", error=repr(exc))
        return None
    return OutThere(held.ids, depths)
