"""The reconciler: finds runs the message flow lost track of, and puts them back on track.

Every worker runs it (one at a time, under a PostgreSQL advisory lock held by a
transaction for the length of a pass), and so does `reelflow reconcile` for deployments
that prefer a process of its own. Each pass:

- *dead attempts*: a running step whose worker stopped beating (or whose lease expired)
  and which no live worker holds (asked with `inspect`) is lost. Once no step of its run
  is alive, the run is requeued under a new generation: its dead steps back to pending,
  the unfinished steps compiled and dispatched. A worker that is alive keeps its step,
  even when the lease lapsed during a database outage.
- *stalled runs*: a running run where nothing moved for STALL_AFTER_SECONDS, no step runs,
  no live worker holds a message for it and the step queues are empty (a broker that
  forgot its queues) is requeued the same way. Queues are judged by depth, never read, so
  this works on Redis and RabbitMQ alike.
- *unsettled runs*: a run whose steps all finished but whose status did not follow.
- *orphans*: a pending run with no dispatch intent gets one.

Each run is handled on its own: a run the reconciler cannot handle (its workflow was
removed, its params no longer validate) is failed with the reason recorded, and the others
go on. Every action is written to run_events.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import structlog
from pydantic import BaseModel

from db import repository as repo
from db.engine import get_engine
from db.records import RunRecord
from db.repository.reconcile import RunningStep
from db.states import RunStatus, StepStatus, run_sources
from reelflow.errors import InvalidParams, UnknownWorkflow
from reelflow.settings import get_settings
from workflows.definition.compiler import NotDispatchable, StepsRunning
from workflows.definition.registry import get_workflow
from workflows.recovery.whereabouts import OutThere, expected_ids, held_tasks, is_dead, out_there
from workflows.runs import dispatch, relay

log = structlog.get_logger("reelflow.reconciler")
ACTOR = "reconciler"


class Report(BaseModel):
    requeued: list[uuid.UUID] = []
    settled: dict[str, str] = {}
    waiting: list[uuid.UUID] = []
    failed: dict[str, str] = {}
    relayed: dict[str, int] = {}
    skipped: bool = False  # another process holds the reconciler's lock


async def reconcile_once(stall_after_s: float | None = None) -> Report:
    """One pass, if no other process is reconciling right now."""
    settings = get_settings()
    stall = settings.stall_after_seconds if stall_after_s is None else stall_after_s
    report = Report()
    report.relayed = await relay.publish_due()
    # The lock is the transaction's: held while the pass runs (its work on connections of
    # its own, each run in its own transaction), released when this one ends however it
    # ends, and on one server connection even behind a transaction-mode pooler. It writes
    # nothing and lasts a pass (seconds), so vacuum is held back no longer than that.
    async with get_engine().begin() as lock_conn:
        if not await repo.try_reconciler_lock(lock_conn):
            report.skipped = True
            return report
        await _pass(report, stall, settings.worker_dead_after_seconds)
    return report


async def _pass(report: Report, stall_after_s: float, dead_after_s: float) -> None:
    async with get_engine().connect() as conn:
        unsettled = await repo.unsettled_runs(conn)
        suspects, alive = await repo.dead_running_steps(conn, dead_after_s=dead_after_s)
        stalled = await repo.stalled_runs(conn, stall_after_s=stall_after_s)
        orphans = await repo.orphan_pending_runs(conn, older_than_s=stall_after_s)
    for run, statuses in unsettled:
        await _isolated(report, run.id, partial(_settle, report, run, statuses))
    if suspects:
        held = await asyncio.to_thread(held_tasks)
        if held is not None:
            dead = [s for s in suspects if is_dead(s, held)]
            alive += [s for s in suspects if not is_dead(s, held)]
            await _requeue_dead(report, dead, alive)
    if stalled:
        try:  # inspect and the broker each have their own timeout; this bounds both
            out = await asyncio.wait_for(asyncio.to_thread(out_there), timeout=15)
        except TimeoutError:
            out = None
        for run in stalled:
            if str(run.id) in report.settled or run.id in report.requeued:
                continue
            requeue = partial(_requeue_stalled, report, run, out, stall_after_s)
            await _isolated(report, run.id, requeue)
    for run_id in orphans:
        await _isolated(report, run_id, partial(_redispatch, run_id))


async def _requeue_dead(report: Report, dead: list[RunningStep], alive: list[RunningStep]) -> None:
    """Requeue each run all of whose running steps are dead; others wait for their live
    steps to finish (the new generation must not race an attempt of the old one)."""
    busy = {s.run_id for s in alive}
    by_run: dict[uuid.UUID, list[str]] = {}
    for step in dead:
        by_run.setdefault(step.run_id, []).append(step.key)
    for run_id, keys in by_run.items():
        if run_id in busy:
            report.waiting.append(run_id)
            continue
        await _isolated(report, run_id, partial(_requeue, report, run_id, keys, "dead"))


#: A stalled run whose queues never drain is requeued anyway after this many stall windows:
#: its message, if it still exists, turns stale under the new generation and is ignored.
STALL_ESCALATION = 5


async def _requeue_stalled(
    report: Report, run: RunRecord, out: OutThere | None, stall_after_s: float
) -> None:
    """Requeue a stalled run when no worker holds a message for it and the queues its open
    steps use are empty: a message waiting behind others is not doubled (a requeue would
    send the run to the back of the line each time it stalled). A run stalled for
    STALL_ESCALATION windows is requeued even behind a backlog."""
    if out is None:
        return  # the broker cannot be asked: never requeue blind
    async with get_engine().connect() as conn:
        rows = await repo.open_steps(conn, run_id=run.id)
        now = await repo.database_now(conn)
    workflow = get_workflow(run.workflow)
    queues = {workflow.spec(r.step).queue for r in rows if r.step in workflow.step_names}
    if workflow.mapped_steps:
        queues.add("default")  # expanders run there
    backlog = sum(out.depths.get(q, 0) for q in queues)
    overdue = (now - run.updated_at).total_seconds() > STALL_ESCALATION * stall_after_s
    if expected_ids(run, rows) & out.held or (backlog and not overdue):
        report.waiting.append(run.id)  # its message may still be out there
        return
    await _requeue(report, run.id, [], "stalled" if not backlog else "stalled_behind_backlog")


async def _requeue(report: Report, run_id: uuid.UUID, lost: list[str], reason: str) -> None:
    try:
        await _requeue_locked(report, run_id, lost, reason)
    except StepsRunning as exc:  # it moved between the scan and the lock: look again later
        log.info("requeue_not_needed", run_id=str(run_id), reason=reason, detail=str(exc))
        report.waiting.append(run_id)


async def _requeue_locked(report: Report, run_id: uuid.UUID, lost: list[str], reason: str) -> None:
    async with get_engine().begin() as conn:
        run = await repo.get_run(conn, run_id=run_id, for_update=True)
        if run is None or run.status is not RunStatus.RUNNING:
            if run is not None and lost:  # a failed run's dead straggler: just release it
                await repo.lose_attempts(conn, run_id=run_id, keys=lost)
            return
        intent = await dispatch.requeue(conn, run, lost=lost, reason=reason, actor=ACTOR)
        await repo.bump_counter(conn, name="runs_requeued", label=reason)
    if intent is not None:
        report.requeued.append(run_id)
        log.warning("run_requeued", run_id=str(run_id), reason=reason, lost=lost)
        await relay.publish(intent)


async def _redispatch(run_id: uuid.UUID) -> None:
    async with get_engine().begin() as conn:
        run = await repo.get_run(conn, run_id=run_id, for_update=True)
        if run is None or run.status is not RunStatus.PENDING:
            return
        if await repo.intent_of(conn, run_id=run_id, generation=run.generation) is not None:
            return
        intent = await dispatch.redispatch(conn, run, actor=ACTOR)
    if intent is not None:
        await relay.publish(intent)


async def _settle(report: Report, run: RunRecord, statuses: list[StepStatus]) -> None:
    if all(s in (StepStatus.SUCCEEDED, StepStatus.SUPERSEDED) for s in statuses):
        final = RunStatus.SUCCEEDED
    elif StepStatus.FAILED in statuses:
        final = RunStatus.FAILED
    else:
        final = RunStatus.CANCELLED
    async with get_engine().begin() as conn:
        moved = await repo.set_run_status(
            conn, run_id=run.id, status=final, only_from={RunStatus.RUNNING}, finished=True
        )
        if moved is None:
            report.settled[str(run.id)] = "unchanged"
            return
        await repo.add_event(
            conn, run_id=run.id, kind="reconciled", actor=ACTOR,
            detail={"action": "settled", "status": final.value},
        )  # fmt: skip
    log.info("run_settled", run_id=str(run.id), status=final.value)
    report.settled[str(run.id)] = final.value


#: Errors provably the run's own, that no later pass can fix: the run is failed with the
#: reason recorded. Anything else (a bug, an outage) is logged and tried again next pass.
UNHANDLEABLE = (UnknownWorkflow, InvalidParams, NotDispatchable)


async def _isolated(
    report: Report, run_id: uuid.UUID, handle: Callable[[], Awaitable[None]]
) -> None:
    """Handle one run; whatever it raises stays with it."""
    try:
        await handle()
    except StepsRunning as exc:  # a step started meanwhile: nothing is lost, look again later
        log.info("run_reconcile_waiting", run_id=str(run_id), detail=str(exc))
        report.waiting.append(run_id)
    except UNHANDLEABLE as exc:
        reason = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
        log.error("run_unreconcilable", run_id=str(run_id), error=reason)
        async with get_engine().begin() as conn:
            failed = await repo.fail_run(
                conn,
                run_id=run_id,
                error={"type": type(exc).__name__, "message": reason, "step": None},
                only_from=run_sources(RunStatus.FAILED),
            )
            if failed:
                await repo.add_event(
                    conn, run_id=run_id, kind="reconciled", actor=ACTOR,
                    detail={"action": "failed", "reason": reason},
                )  # fmt: skip
        report.failed[str(run_id)] = reason
    except Exception as exc:  # a database or broker blip: the next pass tries again
        log.warning("run_reconcile_deferred", run_id=str(run_id), error=repr(exc))


async def run_forever(interval_s: float, stall_after_s: float, alive: Path | None = None) -> None:
    """Reconcile every `interval_s`; touch `alive` after each pass (for health checks)."""
    while True:
        try:
            report = await reconcile_once(stall_after_s)
            if report.requeued or report.settled or report.failed:
                log.info("reconciled", **report.model_dump(mode="json"))
            if alive is not None:
                alive.touch()
        except Exception as exc:  # a database or broker outage: try again next round
            log.warning("reconcile_failed", error=repr(exc))
        await asyncio.sleep(interval_s)
