"""Run operations: start, resume, retry, cancel.

Each is one transaction under a row lock on the run: it checks the run's state, changes
the rows, bumps the generation, and writes a dispatch intent (the outbox) holding the
compiled canvas. Only after the commit does it publish, through the relay; if it cannot
(the process dies, the broker is away), the intent stays unsent and the relays publish it
later. So an accepted run is never lost, and two operations on one run never interleave:
of ten concurrent resumes one dispatches, the rest find the run pending and get 409.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import structlog
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from db import faults as fault_plans
from db import repository as repo
from db.engine import get_engine
from db.records import OpenStep, RunRecord
from db.states import (
    RUN_CANCELLABLE,
    RUN_RESUMABLE,
    RUN_RETRYABLE,
    STEP_CANCELLABLE,
    STEP_RESUMABLE,
    AttemptStatus,
    RunStatus,
    StepStatus,
)
from reelflow.celery_app import app
from reelflow.errors import (
    IdempotencyKeyReused,
    RunBusy,
    RunStateConflict,
    StepNotFound,
    UnknownWorkflow,
)
from steps.engine import slots
from steps.engine.spec import step_of_key
from workflows.definition.canvas import expander_key, task_id
from workflows.definition.registry import get_workflow
from workflows.runs import admission, dispatch, relay, stragglers
from workflows.runs.plans import Plan, plan

log = structlog.get_logger("reelflow.operations")


class StartResult(BaseModel):
    run: RunRecord
    created: bool


async def start_run(
    workflow_name: str,
    params: Mapping[str, Any],
    *,
    idempotency_key: str | None = None,
    faults: Mapping[str, int] | None = None,
    actor: str = "api",
    cache: bool = True,
    priority: int = 5,
    tenant: str = "default",
) -> StartResult:
    """Accept a run: the run, its steps and its dispatch intent commit together."""
    admission.check_size(params)
    workflow = get_workflow(workflow_name)
    model = workflow.validate_params(params)
    clean = model.model_dump(mode="json")
    wanted = admission.check_faults(faults)
    # A fault must meet an execution: a run with faults (a test) reuses no result.
    cache = cache and not wanted
    digest = admission.request_hash(workflow.name, clean, wanted, cache=cache,
                                    priority=priority, tenant=tenant)  # fmt: skip
    async with get_engine().begin() as conn:
        await admission.check_capacity(conn, idempotency_key=idempotency_key)
        assets = await admission.check_assets(conn, model)
        run, created = await repo.create_run(
            conn,
            run_id=uuid.uuid4(),
            workflow=workflow.name,
            workflow_version=workflow.version,
            params=clean,
            idempotency_key=idempotency_key,
            request_hash=digest,
            steps=workflow.initial_steps(clean),
            actor=actor,
            param_digests=workflow.param_digests(clean),
            cache=cache,
            priority=priority,
            tenant=tenant,
        )
        if not created:
            if run.request_hash is not None and run.request_hash != digest:
                raise IdempotencyKeyReused(
                    f"Idempotency-Key {idempotency_key!r} was used for a different request"
                    f" (run {run.id}); use a new key for a new run",
                    [{"field": "Idempotency-Key", "message": "reused with a different body"}],
                )
            intent = await repo.intent_of(conn, run_id=run.id, generation=run.generation)
        else:
            await fault_plans.plan(conn, run_id=run.id, faults=wanted)
            await repo.add_asset_refs(conn, run_id=run.id, asset_ids=assets)
            intent = await dispatch.write_intent(
                conn, workflow, run, run.generation, reason="created"
            )
    if created:
        log.info("run_created", run_id=str(run.id), workflow=workflow.name)
    if intent is not None and (created or run.status is RunStatus.PENDING):
        await relay.publish(intent)  # a replay nudges a run whose intent is still unsent
    return StartResult(run=await get_run(run.id), created=created)


async def resume_run(
    run_id: uuid.UUID, *, actor: str = "api", dry_run: bool = False
) -> RunRecord | Plan:
    """Run every step that has not succeeded; the rest keep their recorded outputs."""
    async with get_engine().begin() as conn:
        run, rows = await load_idle(conn, run_id, allowed=RUN_RESUMABLE, verb="resume")
        if dry_run:
            return await plan(conn, run, "resume", stops=stragglers.in_flight(rows))
        await admission.check_capacity(conn, idempotency_key=None)  # it becomes active again
        workflow = get_workflow(run.workflow)
        taken = await stragglers.take_over(conn, run, rows, verb="resume")
        reset = [r.key for r in rows if r.status in STEP_RESUMABLE] + taken.keys
        generation = await dispatch.reset_steps(
            conn, workflow, run, keys=reset, names=set(), remap=set()
        )
        await repo.add_event(
            conn, run_id=run_id, kind="resumed", actor=actor,
            detail={"reset": reset, "stopped": taken.keys},
        )  # fmt: skip
        intent = await dispatch.write_intent(conn, workflow, run, generation, reason="resumed")
    await stragglers.stop(run_id, taken)
    if intent is not None:
        await relay.publish(intent)
    return await get_run(run_id)


async def retry_step(
    run_id: uuid.UUID, key: str, *, actor: str = "api", dry_run: bool = False
) -> RunRecord | Plan:
    """Rerun one step and every step downstream of it, whatever their state (and anything
    else not succeeded, as a resume would). Maps whose source reruns expand again."""
    async with get_engine().begin() as conn:
        run, rows = await load_idle(conn, run_id, allowed=RUN_RETRYABLE, verb="retry")
        found = await repo.get_step_output(conn, run_id=run_id, key=key)
        if found is None or found[0] is StepStatus.SUPERSEDED:
            raise StepNotFound(f"run {run_id} has no step {key!r}")
        workflow = get_workflow(run.workflow)
        name = step_of_key(key)
        below = workflow.downstream(name)
        remap = {m for m, node in workflow.mapped_steps.items() if node.source in below | {name}}
        if dry_run:
            return await plan(conn, run, "retry", forced={key}, names=below, remap=remap,
                              stops=stragglers.in_flight(rows))  # fmt: skip
        await admission.check_capacity(conn, idempotency_key=None)  # it becomes active again
        taken = await stragglers.take_over(conn, run, rows, verb="retry")
        # As a resume would, every failed or cancelled step runs again, except the items of
        # the maps that expand again (they are superseded instead).
        keys = [key, *(r.key for r in rows if r.status in STEP_RESUMABLE and r.step not in remap)]
        keys += [k for k in taken.keys if k not in keys]
        generation = await dispatch.reset_steps(
            conn, workflow, run, keys=keys, names=below, remap=remap, forced=[key]
        )
        await repo.add_event(
            conn,
            run_id=run_id,
            kind="step_retried",
            actor=actor,
            detail={"step": key, "reset": sorted({*keys, *below}), "remapped": sorted(remap),
                    "stopped": taken.keys},
        )  # fmt: skip
        intent = await dispatch.write_intent(conn, workflow, run, generation, reason="retried")
    await stragglers.stop(run_id, taken)
    if intent is not None:
        await relay.publish(intent)
    return await get_run(run_id)


async def cancel_run(run_id: uuid.UUID, *, actor: str = "api") -> RunRecord:
    """Stop the run: cancel every step not finished, and revoke its messages. An intent not
    yet published is discarded by the relay, which publishes nothing for a cancelled run
    (touching it here could deadlock with a relay holding it)."""
    async with get_engine().begin() as conn:
        run = await locked(conn, run_id)
        if run.status not in RUN_CANCELLABLE:
            raise RunStateConflict(
                f"run {run_id} is {run.status}: nothing to cancel", status=run.status
            )
        rows = await repo.open_steps(conn, run_id=run_id)
        live = [r for r in rows if r.status in STEP_CANCELLABLE]
        revoke = {task_id(run_id, r.key, run.generation) for r in live}
        revoke |= {r.celery_task_id for r in live if r.celery_task_id}
        revoke |= {task_id(run_id, expander_key(m), run.generation) for m in _maps_of(run)}
        await repo.set_steps_status(
            conn,
            run_id=run_id,
            keys=[r.key for r in live],
            status=StepStatus.CANCELLED,
            only_from=STEP_CANCELLABLE,
        )
        await repo.close_running_attempts(
            conn, run_id=run_id, status=AttemptStatus.CANCELLED, message="run cancelled"
        )
        await repo.set_run_status(
            conn, run_id=run_id, status=RunStatus.CANCELLED, only_from=RUN_CANCELLABLE,
            finished=True,
        )  # fmt: skip
        await repo.add_event(
            conn, run_id=run_id, kind="cancelled", actor=actor,
            detail={"steps": [r.key for r in live]},
        )  # fmt: skip
    freed = await _release_slots(run_id)
    await slots.hand_over_from_loop(freed)  # ... to the steps waiting
    try:  # best effort: claims refuse a cancelled run's steps anyway
        await relay.off_loop(lambda: app.control.revoke(sorted(revoke), terminate=True))
    except Exception as exc:
        log.warning("revoke_failed", run_id=str(run_id), error=repr(exc))
    return await get_run(run_id)


async def _release_slots(run_id: uuid.UUID) -> list[str]:
    """The cancelled run's slots go back at once (tidying does it within seconds if this
    fails: its steps no longer run)."""
    try:
        async with get_engine().begin() as conn:
            return await repo.release_run(conn, run_id=run_id)
    except Exception as exc:
        log.warning("slot_release_failed", run_id=str(run_id), error=repr(exc))
        return []


async def get_run(run_id: uuid.UUID) -> RunRecord:
    async with get_engine().connect() as conn:
        return await repo.require_run(conn, run_id=run_id)


async def locked(conn: AsyncConnection, run_id: uuid.UUID) -> RunRecord:
    return await repo.require_run(conn, run_id=run_id, for_update=True)


async def load_idle(
    conn: AsyncConnection, run_id: uuid.UUID, *, allowed: frozenset[RunStatus], verb: str
) -> tuple[RunRecord, list[OpenStep]]:
    """The run (locked) and its open steps, provided it stopped."""
    run = await locked(conn, run_id)
    if run.status in (RunStatus.RUNNING, RunStatus.PENDING):
        doing = "running" if run.status is RunStatus.RUNNING else "already queued for dispatch"
        raise RunBusy(f"run {run_id} is {doing}: cannot {verb} it", status=run.status)
    if run.status not in allowed:
        raise RunStateConflict(f"run {run_id} is {run.status}: cannot {verb} it", status=run.status)
    # Steps still in flight from before it stopped are taken over (workflows.runs.stragglers).
    return run, await repo.open_steps(conn, run_id=run_id)


def _maps_of(run: RunRecord) -> list[str]:
    """The maps of the run's workflow (none, if a deploy removed the workflow)."""
    try:
        return list(get_workflow(run.workflow).mapped_steps)
    except UnknownWorkflow:
        return []


__all__ = [
    "Plan",
    "StartResult",
    "cancel_run",
    "get_run",
    "resume_run",
    "retry_step",
    "start_run",
]
