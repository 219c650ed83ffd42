"""Run operations: start, resume, retry, cancel. The only place that sends messages.

Each changes rows in one transaction (under a row lock on the run, so two operations on
one run serialise), then talks to the broker off the event loop with a timeout. A broker
that does not answer leaves the run pending in the database, ready for a later resume.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any, Literal

import structlog
from celery import Signature
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from db import repository as repo
from db.engine import get_engine
from db.records import RunRecord, StepRecord
from db.states import (
    RUN_RESUMABLE,
    RUN_RETRYABLE,
    STEP_CANCELLABLE,
    STEP_IN_FLIGHT,
    STEP_RESETTABLE,
    STEP_RESUMABLE,
    RunStatus,
    StepStatus,
)
from reelflow.celery_app import app
from reelflow.errors import (
    DispatchFailed,
    RunBusy,
    RunNotFound,
    RunStateConflict,
    StepNotFound,
)
from reelflow.settings import get_settings
from workflows.canvas import task_id
from workflows.compiler import compile_run
from workflows.registry import get_workflow

log = structlog.get_logger("reelflow.operations")


class StartResult(BaseModel):
    run: RunRecord
    created: bool


class Plan(BaseModel):
    """What a resume or retry would do, without doing it."""

    run_id: uuid.UUID
    operation: Literal["resume", "retry"]
    run: list[str]
    skip: dict[str, str]


async def start_run(
    workflow_name: str,
    params: Mapping[str, Any],
    *,
    idempotency_key: str | None = None,
    actor: str = "api",
) -> StartResult:
    workflow = get_workflow(workflow_name)
    clean = workflow.validate_params(params).model_dump(mode="json")
    async with get_engine().begin() as conn:
        run, created = await repo.create_run(
            conn,
            run_id=uuid.uuid4(),
            workflow=workflow.name,
            workflow_version=workflow.version,
            params=clean,
            idempotency_key=idempotency_key,
            steps=workflow.initial_steps(clean),
            actor=actor,
        )
    if not created:
        return StartResult(run=run, created=False)
    log.info("run_created", run_id=str(run.id), workflow=workflow.name)
    return StartResult(run=await dispatch(run.id), created=True)


async def resume_run(
    run_id: uuid.UUID, *, actor: str = "api", dry_run: bool = False
) -> RunRecord | Plan:
    """Run every step that has not succeeded; the rest keep their recorded outputs."""
    async with get_engine().begin() as conn:
        run, rows = await _load_idle(conn, run_id, allowed=RUN_RESUMABLE, verb="resume")
        reset = [r.key for r in rows if r.status in STEP_RESUMABLE]
        if dry_run:
            return _plan(run, rows, "resume")
        await _reset(conn, run, rows, reset, STEP_RESUMABLE)
        await repo.add_event(
            conn, run_id=run_id, kind="resumed", actor=actor, detail={"reset": reset}
        )
    return await dispatch(run_id)


async def retry_step(
    run_id: uuid.UUID, key: str, *, actor: str = "api", dry_run: bool = False
) -> RunRecord | Plan:
    """Rerun one step and every step downstream of it, whatever their state."""
    async with get_engine().begin() as conn:
        run, rows = await _load_idle(conn, run_id, allowed=RUN_RETRYABLE, verb="retry")
        target = next((r for r in rows if r.key == key), None)
        if target is None:
            raise StepNotFound(f"run {run_id} has no step {key!r}")
        workflow = get_workflow(run.workflow)
        below = workflow.downstream(target.step)
        reset = [r.key for r in rows if r.key == key or r.step in below]
        if dry_run:
            return _plan(run, rows, "retry", forced=set(reset))
        await _reset(conn, run, rows, reset, STEP_RESETTABLE)
        await repo.add_event(
            conn,
            run_id=run_id,
            kind="step_retried",
            actor=actor,
            detail={"step": key, "reset": reset},
        )
    return await dispatch(run_id)


async def cancel_run(run_id: uuid.UUID, *, actor: str = "api") -> RunRecord:
    """Stop the run: revoke its messages, cancel every step not finished."""
    async with get_engine().begin() as conn:
        run = await repo.get_run(conn, run_id=run_id, for_update=True)
        if run is None:
            raise RunNotFound(f"no run {run_id}")
        if run.status in {RunStatus.SUCCEEDED, RunStatus.CANCELLED}:
            raise RunStateConflict(
                f"run {run_id} is {run.status}: nothing to cancel", status=run.status
            )
        rows = await repo.get_steps(conn, run_id=run_id)
        live = [r for r in rows if r.status in STEP_CANCELLABLE]
        revoke = {task_id(run_id, r.key, run.resume_count) for r in live}
        revoke |= {r.celery_task_id for r in live if r.celery_task_id}
        await repo.set_steps_status(
            conn,
            run_id=run_id,
            keys=[r.key for r in live],
            status=StepStatus.CANCELLED,
            only_from=STEP_CANCELLABLE,
        )
        await repo.close_running_attempts(
            conn, run_id=run_id, status="cancelled", message="run cancelled"
        )
        await repo.set_run_status(conn, run_id=run_id, status=RunStatus.CANCELLED, finished=True)
        await repo.add_event(
            conn,
            run_id=run_id,
            kind="cancelled",
            actor=actor,
            detail={"steps": [r.key for r in live]},
        )
    try:
        await _off_loop(lambda: app.control.revoke(sorted(revoke), terminate=True))
    except Exception as exc:  # claims refuse a cancelled run's steps anyway
        log.warning("revoke_failed", run_id=str(run_id), error=repr(exc))
    return await get_run(run_id)


async def get_run(run_id: uuid.UUID) -> RunRecord:
    async with get_engine().connect() as conn:
        run = await repo.get_run(conn, run_id=run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id}")
    return run


async def _load_idle(
    conn: AsyncConnection, run_id: uuid.UUID, *, allowed: frozenset[RunStatus], verb: str
) -> tuple[RunRecord, list[StepRecord]]:
    """The run and its steps, locked, provided nothing of it is in flight."""
    run = await repo.get_run(conn, run_id=run_id, for_update=True)
    if run is None:
        raise RunNotFound(f"no run {run_id}")
    if run.status is RunStatus.RUNNING:
        raise RunBusy(f"run {run_id} is running: cannot {verb} it", status=run.status)
    if run.status not in allowed:
        raise RunStateConflict(f"run {run_id} is {run.status}: cannot {verb} it", status=run.status)
    rows = await repo.get_steps(conn, run_id=run_id)
    busy = [r.key for r in rows if r.status in STEP_IN_FLIGHT]
    if busy:
        raise RunBusy(
            f"run {run_id} still has steps in flight ({', '.join(busy)}): cannot {verb} it",
            status=run.status,
        )
    return run, rows


async def _reset(
    conn: AsyncConnection,
    run: RunRecord,
    rows: list[StepRecord],
    keys: list[str],
    from_states: frozenset[StepStatus],
) -> None:
    """Steps back to pending with a fresh attempt budget; the run to pending, next generation
    (new task ids, so no message of an earlier dispatch can be mistaken for this one's)."""
    await repo.set_steps_status(
        conn, run_id=run.id, keys=keys, status=StepStatus.PENDING, only_from=from_states
    )
    await repo.renew_budgets(conn, run_id=run.id, budgets=_budgets(run, rows, keys))
    await repo.set_run_status(
        conn, run_id=run.id, status=RunStatus.PENDING, bump_generation=True, clear_error=True
    )


def _budgets(run: RunRecord, rows: list[StepRecord], keys: list[str]) -> dict[str, int]:
    """Each reset step's attempt budget for the new dispatch (`max_attempts` counts from
    the attempts already made, so lost and failed attempts of earlier ones don't eat it)."""
    workflow = get_workflow(run.workflow)
    steps = {r.key: r.step for r in rows}
    return {key: workflow.max_attempts(steps[key], run.params) for key in keys}


def _plan(
    run: RunRecord,
    rows: list[StepRecord],
    operation: Literal["resume", "retry"],
    forced: set[str] | None = None,
) -> Plan:
    forced = forced or set()
    will = [r.key for r in rows if r.key in forced or r.status is not StepStatus.SUCCEEDED]
    skip = {
        r.key: "succeeded: its recorded output is reused"
        for r in rows
        if r.key not in forced and r.status is StepStatus.SUCCEEDED
    }
    workflow = get_workflow(run.workflow)
    for name in workflow.mapped_steps:
        if not any(r.step == name for r in rows):
            will.append(f"{name}[*]")
    return Plan(run_id=run.id, operation=operation, run=will, skip=skip)


async def dispatch(run_id: uuid.UUID) -> RunRecord:
    """Compile the unfinished steps and send them; on a broker failure, roll back to pending."""
    async with get_engine().begin() as conn:
        run = await repo.get_run(conn, run_id=run_id, for_update=True)
        assert run is not None
        workflow = get_workflow(run.workflow)
        rows = await repo.get_steps(conn, run_id=run_id)
        compiled = compile_run(workflow, run_id, rows, run.resume_count)
        if compiled.canvas is None:
            await repo.set_run_status(
                conn, run_id=run_id, status=RunStatus.SUCCEEDED, finished=True
            )
            return await _reload(conn, run_id)
        await repo.mark_queued(conn, run_id=run_id, keys=compiled.heads)
        await repo.set_run_status(conn, run_id=run_id, status=RunStatus.RUNNING, started=True)
    try:
        await _send(compiled.canvas)
    except Exception as exc:
        log.error("dispatch_failed", run_id=str(run_id), error=repr(exc))
        async with get_engine().begin() as conn:
            await repo.unmark_queued(conn, run_id=run_id, keys=compiled.heads)
            await repo.set_run_status(conn, run_id=run_id, status=RunStatus.PENDING)
            await repo.add_event(
                conn,
                run_id=run_id,
                kind="dispatch_failed",
                actor="system",
                detail={"error": repr(exc)},
            )
        raise DispatchFailed(
            f"the broker did not accept run {run_id}; it is kept as pending: resume it later"
        ) from exc
    log.info(
        "run_dispatched", run_id=str(run_id), steps=compiled.keys, expanders=compiled.expanders
    )
    return await get_run(run_id)


async def _reload(conn: AsyncConnection, run_id: uuid.UUID) -> RunRecord:
    run = await repo.get_run(conn, run_id=run_id)
    assert run is not None
    return run


async def _send(canvas: Signature) -> None:
    await _off_loop(
        lambda: canvas.apply_async(
            retry=True,
            retry_policy={
                "max_retries": 2,
                "interval_start": 0.1,
                "interval_step": 0.3,
                "interval_max": 0.5,
            },
        )
    )


async def _off_loop(fn: Any) -> Any:
    """Broker calls block; run them in a thread and give up after the dispatch timeout."""
    timeout = get_settings().dispatch_timeout_seconds
    return await asyncio.wait_for(asyncio.to_thread(fn), timeout=timeout)


__all__ = [
    "Plan",
    "StartResult",
    "cancel_run",
    "get_run",
    "resume_run",
    "retry_step",
    "start_run",
]
