"""Every worker keeps the deployment healthy: a thread in its main process records the
worker's heartbeat, publishes due dispatch intents, and takes its turn at reconciling.

So a deployment of the API and workers heals itself, with no process of its own to run.
Registered by the worker's task imports (`reelflow.celery_app.TASK_MODULES`).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any

import structlog
from celery.signals import worker_init, worker_ready, worker_shutdown

from db import repository as repo
from db.engine import get_engine
from reelflow import messages
from reelflow.settings import get_settings
from steps.engine import bridge
from steps.engine.bridge import WorkerIdentity
from workflows import relay
from workflows.reconciler import reconcile_once

log = structlog.get_logger("reelflow.maintenance")


async def beat(hostname: str, queues: list[str]) -> None:
    assert WorkerIdentity.id is not None
    rejected = messages.drain_rejections()
    try:
        async with get_engine().begin() as conn:
            await repo.beat(
                conn, worker_id=WorkerIdentity.id, hostname=hostname, pid=os.getpid(),
                queues=queues,
            )  # fmt: skip
            for reason, n in rejected.items():  # messages this worker refused since
                await repo.bump_counter(conn, name="messages_rejected", label=reason, by=n)
    except BaseException:
        messages.restore_rejections(rejected)
        raise


async def forget() -> None:
    if WorkerIdentity.id is not None:
        async with get_engine().begin() as conn:
            await repo.forget_worker(conn, worker_id=WorkerIdentity.id)


class Maintenance(threading.Thread):
    """Ticks every second: heartbeat, relay, and (every RECONCILE_INTERVAL_SECONDS) a
    reconciler pass. Each job's failure is logged and retried on the next tick."""

    def __init__(self, hostname: str, queues: list[str]) -> None:
        super().__init__(name="reelflow-maintenance", daemon=True)
        self.hostname, self.queues = hostname, queues
        self.stopping = threading.Event()

    def run(self) -> None:
        settings = get_settings()
        due = {"beat": 0.0, "relay": 0.0, "reconcile": 0.0}
        every = {
            "beat": settings.worker_heartbeat_seconds,
            "relay": 1.0,
            "reconcile": settings.reconcile_interval_seconds,
        }
        while not self.stopping.wait(0.2):
            now = time.monotonic()
            for job, at in due.items():
                if now < at:
                    continue
                due[job] = now + every[job]
                try:
                    self._do(job)
                except Exception as exc:  # the database or broker is away: next tick
                    log.warning("maintenance_failed", job=job, error=repr(exc))

    def _do(self, job: str) -> None:
        if job == "beat":
            bridge.run(beat(self.hostname, self.queues))
        elif job == "relay":
            tally = bridge.run(relay.publish_due())
            if tally:
                log.info("intents_relayed", **tally)
        else:
            report = bridge.run(reconcile_once())
            if report.requeued or report.failed or report.settled:
                log.info("reconciled", **report.model_dump(mode="json"))


_thread: Maintenance | None = None


@worker_init.connect
def _identify(sender: Any = None, **_: Any) -> None:
    """Name this worker before its pool forks, so every lease names the worker that holds
    it, and record a first heartbeat before any task can run."""
    WorkerIdentity.id = uuid.uuid4().hex
    hostname = getattr(sender, "hostname", None) or "worker"
    bridge.run(beat(hostname, _queues(sender)))
    bridge.run(_dispose())


@worker_ready.connect
def _start(sender: Any = None, **_: Any) -> None:
    global _thread
    worker = getattr(sender, "controller", None)
    hostname = getattr(sender, "hostname", None) or "worker"
    _thread = Maintenance(hostname, _queues(worker))
    _thread.start()


@worker_shutdown.connect
def _stop(**_: Any) -> None:
    if _thread is not None:
        _thread.stopping.set()
        _thread.join(timeout=5)
    try:
        bridge.run(forget())
    except Exception as exc:
        log.warning("worker_not_forgotten", error=repr(exc))


def _queues(worker: Any) -> list[str]:
    try:
        return sorted(q.name for q in worker.app.amqp.queues.consume_from.values())
    except Exception:
        return []


async def _dispose() -> None:
    from db.engine import dispose_engine

    await dispose_engine()  # the parent keeps no connection its pool processes inherit
