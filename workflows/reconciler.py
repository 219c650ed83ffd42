"""The reconciler: finds runs the message flow lost track of, and puts them back on track.

A run is *stalled* when nothing of it moved for STALL_AFTER_SECONDS, no step holds a live
lease, and no message that could advance it is in the broker: a worker died mid-step
(lease expired), a chain's next message was lost in a crash, or Redis restarted without
persistence. The reconciler then does what a resume does, under a new generation of task
ids: steps whose lease expired get a `lost` attempt, and the unfinished steps are compiled
and dispatched. A run whose steps have all finished but whose status did not follow is
settled. Every action is written to run_events.

Run it with `reelflow reconcile` (a loop; `reelflow dev` starts one) or `--once` from cron.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel

from db import repository as repo
from db.engine import get_engine
from db.records import RunRecord, StepRecord
from db.states import RunStatus, StepStatus
from reelflow.celery_app import QUEUES, app
from workflows import operations
from workflows.canvas import task_id
from workflows.registry import get_workflow

log = structlog.get_logger("reelflow.reconciler")


class Report(BaseModel):
    requeued: list[uuid.UUID] = []
    settled: dict[str, str] = {}
    waiting: list[uuid.UUID] = []


def broker_task_ids() -> set[str]:
    """Ids of every message that can still advance a run: waiting in a queue, or held by a
    *live* worker (reserved, running, or an ETA retry it is sitting on).

    Redis's `unacked` hash is not evidence: a worker killed with messages prefetched leaves
    them there until the visibility timeout, hours away. Live workers are asked instead.
    """
    ids: set[str] = set()
    with app.connection_for_write() as connection:
        client: Any = connection.default_channel.client  # type: ignore[attr-defined]
        for queue in QUEUES:
            for item in client.lrange(queue, 0, -1):
                try:
                    ids.add(str(json.loads(item)["headers"]["id"]))
                except (ValueError, KeyError, TypeError):
                    continue
    inspect = app.control.inspect(timeout=1.0)
    replies: list[Any] = [
        inspect.reserved(),
        inspect.active(),
        inspect.scheduled(),
    ]
    for held in replies:
        for tasks in (held or {}).values():
            for task in tasks:
                request = task.get("request", task)  # scheduled entries wrap the request
                if request.get("id"):
                    ids.add(str(request["id"]))
    return ids


def expected_ids(run: RunRecord, steps: Iterable[StepRecord]) -> set[str]:
    """Message ids the run's current generation may have out for its unfinished steps."""
    ids = set()
    for step in steps:
        if step.status in (StepStatus.PENDING, StepStatus.QUEUED, StepStatus.RETRYING):
            ids.add(task_id(run.id, step.key, run.resume_count))
            if step.celery_task_id:
                ids.add(step.celery_task_id)
    for mapped in get_workflow(run.workflow).mapped_steps:
        ids.add(task_id(run.id, f"expand:{mapped}", run.resume_count))
    return ids


async def reconcile_once(stall_after_s: float) -> Report:
    report = Report()
    async with get_engine().connect() as conn:
        unsettled = await repo.unsettled_runs(conn)
        stalled = await repo.stalled_runs(conn, stall_after_s=stall_after_s)
    for run, statuses in unsettled:
        report.settled[str(run.id)] = await _settle(run, statuses)
    if not stalled:
        return report
    in_broker = await asyncio.to_thread(broker_task_ids)
    for run in stalled:
        if str(run.id) in report.settled:
            continue
        async with get_engine().connect() as conn:
            steps = await repo.get_steps(conn, run_id=run.id)
        if expected_ids(run, steps) & in_broker:
            report.waiting.append(run.id)  # a message for it is still out there
            continue
        await _requeue(run.id)
        report.requeued.append(run.id)
    return report


async def _settle(run: RunRecord, statuses: list[str]) -> str:
    if all(s == StepStatus.SUCCEEDED for s in statuses):
        final = RunStatus.SUCCEEDED
    elif StepStatus.FAILED in statuses:
        final = RunStatus.FAILED
    else:
        final = RunStatus.CANCELLED
    async with get_engine().begin() as conn:
        locked = await repo.get_run(conn, run_id=run.id, for_update=True)
        if locked is None or locked.status is not RunStatus.RUNNING:
            return "unchanged"
        await repo.set_run_status(conn, run_id=run.id, status=final, finished=True)
        await repo.add_event(
            conn,
            run_id=run.id,
            kind="reconciled",
            actor="reconciler",
            detail={"action": "settled", "status": final.value},
        )
    log.info("run_settled", run_id=str(run.id), status=final.value)
    return final.value


async def _requeue(run_id: uuid.UUID) -> None:
    async with get_engine().begin() as conn:
        run = await repo.get_run(conn, run_id=run_id, for_update=True)
        if run is None or run.status is not RunStatus.RUNNING:
            return
        lost = await repo.lose_expired_attempts(conn, run_id=run_id)
        steps = await repo.get_steps(conn, run_id=run_id)
        stale = [s.key for s in steps if s.status in (StepStatus.QUEUED, StepStatus.RETRYING)]
        await repo.set_steps_status(
            conn,
            run_id=run_id,
            keys=stale,
            status=StepStatus.PENDING,
            only_from={StepStatus.QUEUED, StepStatus.RETRYING},
        )
        await repo.set_run_status(
            conn, run_id=run_id, status=RunStatus.PENDING, bump_generation=True
        )
        await repo.add_event(
            conn,
            run_id=run_id,
            kind="reconciled",
            actor="reconciler",
            detail={"action": "requeued", "lost_attempts": lost, "requeued": stale},
        )
    log.warning("run_requeued", run_id=str(run_id), lost=lost)
    await operations.dispatch(run_id)


async def run_forever(interval_s: float, stall_after_s: float, alive: Path | None = None) -> None:
    """Reconcile every `interval_s`; touch `alive` after each pass (for health checks)."""
    while True:
        try:
            report = await reconcile_once(stall_after_s)
            if report.requeued or report.settled:
                log.info("reconciled", **report.model_dump(mode="json"))
            if alive is not None:
                alive.touch()
        except Exception as exc:  # a database or broker outage: try again next round
            log.warning("reconcile_failed", error=repr(exc))
        await asyncio.sleep(interval_s)
