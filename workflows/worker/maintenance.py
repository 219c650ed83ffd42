"""Every worker keeps the deployment healthy: a thread in its main process records the
worker's heartbeat, publishes due dispatch intents, and takes its turn at reconciling.

So a deployment of the API and workers heals itself, with no process of its own to run.
Started and stopped by the worker's lifecycle (`workflows.worker.lifecycle`).
"""

from __future__ import annotations

import os
import threading
import time

import structlog

from db import pools
from db import repository as repo
from db.engine import get_engine
from db.errors import drain_timeouts, restore_timeouts
from reelflow import messages
from reelflow.settings import get_settings
from steps.engine import bridge, slots
from steps.engine.bridge import WorkerIdentity
from workflows.recovery.reconciler import reconcile_once
from workflows.runs import relay

log = structlog.get_logger("reelflow.maintenance")


async def beat(hostname: str, queues: list[str]) -> None:
    assert WorkerIdentity.id is not None
    rejected, timeouts = messages.drain_rejections(), drain_timeouts()
    try:
        async with get_engine().begin() as conn:
            await repo.beat(
                conn, worker_id=WorkerIdentity.id, hostname=hostname, pid=os.getpid(),
                queues=queues,
            )  # fmt: skip
            for reason, n in rejected.items():  # messages this worker refused since
                await repo.bump_counter(conn, name="messages_rejected", label=reason, by=n)
            for kind, n in timeouts.items():  # statements our timeouts stopped since
                await repo.bump_counter(conn, name="database_timeouts", label=kind, by=n)
    except BaseException:
        messages.restore_rejections(rejected)
        restore_timeouts(timeouts)
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
        due = {"beat": 0.0, "relay": 0.0, "reconcile": 0.0, "slots": 0.0, "tidy": 0.0}
        every = {
            "beat": settings.worker_heartbeat_seconds,
            "relay": 1.0,
            "reconcile": settings.reconcile_interval_seconds,
            "slots": 1.0,
            "tidy": 5.0,
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
        elif job == "slots":
            # Slots that came free without a hand-over (an expired lease, a lost publish).
            if get_settings().pool_sizes():
                slots.hand_over(older_than_s=2.0)
        elif job == "tidy":
            if sizes := get_settings().pool_sizes():
                bridge.run_db(pools.tidy, sizes=sizes)
        else:
            report = bridge.run(reconcile_once())
            if report.requeued or report.failed or report.settled:
                log.info("reconciled", **report.model_dump(mode="json"))
