"""Writing a run's next dispatch: steps reset, the generation bumped, the canvas of what is
left compiled into an outbox intent. Used by the run operations and by the reconciler,
always in the caller's transaction with the run's row locked; the relay publishes after.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from db import repository as repo
from db.records import RunRecord
from db.states import STEP_RESETTABLE, RunStatus, StepStatus
from reelflow import tracing
from reelflow.settings import get_settings
from steps.engine.spec import step_of_key
from workflows.definition.compiler import NotDispatchable, StepsRunning, compile_run
from workflows.definition.registry import get_workflow
from workflows.definition.workflow import Workflow
from workflows.runs import relay
from workflows.runs.reuse import finish_if_done, reuse_known


async def reset_steps(
    conn: AsyncConnection,
    workflow: Workflow,
    run: RunRecord,
    *,
    keys: list[str],
    names: set[str],
    remap: set[str],
    forced: list[str] | None = None,
) -> int:
    """Steps back to pending (output cleared) with a fresh attempt budget; items of maps
    whose source reruns superseded; the run pending under its next generation."""
    moved = await repo.set_steps_status(
        conn,
        run_id=run.id,
        keys=keys,
        names=names - remap,
        status=StepStatus.PENDING,
        only_from=STEP_RESETTABLE,
    )
    budgets = {n: workflow.max_attempts(n, run.params) for n in {step_of_key(k) for k in moved}}
    await repo.renew_budgets(conn, run_id=run.id, keys=moved, budgets=budgets)
    # Asked for by name: it runs again even with a result of its key (its dependents still
    # reuse theirs when its output comes out the same).
    await repo.force_rerun(conn, run_id=run.id, keys=forced or [])
    if remap:
        await repo.supersede_items(conn, run_id=run.id, mapped=remap)
        await repo.set_maps(conn, run_id=run.id, expanded={}, removed=remap)
    generation = await repo.set_run_status(
        conn, run_id=run.id, status=RunStatus.PENDING, only_from={run.status},
        bump_generation=True, clear_error=True,
    )  # fmt: skip
    assert generation is not None  # the row is locked and its status was just read
    return generation


async def write_intent(
    conn: AsyncConnection, workflow: Workflow, run: RunRecord, generation: int, *, reason: str
) -> int | None:
    """Reuse what can be reused now, compile what is left of the run and write the intent
    to publish it. None: every step it had left was reused, and the run has finished."""
    fresh = await repo.get_run(conn, run_id=run.id)
    assert fresh is not None
    reused = await reuse_known(conn, workflow, fresh)
    if reused:
        fresh = await repo.get_run(conn, run_id=run.id)
        assert fresh is not None
    rows = await repo.open_steps(conn, run_id=run.id)
    compiled = compile_run(workflow, run.id, rows, fresh.maps, generation)
    if compiled.canvas is None:
        if await finish_if_done(conn, run.id):
            return None  # every step it had left was reused (or replaced): it is done
        raise NotDispatchable(f"run {run.id} has nothing left to run")
    await repo.mark_queued(conn, run_id=run.id, keys=compiled.heads)
    return await repo.add_intent(
        conn,
        run_id=run.id,
        generation=generation,
        canvas=relay.canvas_to_json(compiled.canvas),
        reason=reason,
        grace_s=get_settings().relay_grace_seconds,
        trace=tracing.current_context(),
    )


async def requeue(
    conn: AsyncConnection, run: RunRecord, *, lost: list[str], reason: str, actor: str
) -> int | None:
    """The reconciler's repair, in the caller's transaction (the run row locked): dead
    attempts are lost, steps whose messages are gone go back to pending, and the run's
    next generation is dispatched. Returns the intent, or None if the run moved on."""
    workflow = get_workflow(run.workflow)
    released = await repo.lose_attempts(conn, run_id=run.id, keys=lost)
    rows = await repo.open_steps(conn, run_id=run.id)
    if any(r.status is StepStatus.RUNNING for r in rows):
        # A step started since the scan (its message was on its way): nothing is lost.
        raise StepsRunning(f"run {run.id}: {[r.key for r in rows if r.status.value == 'running']}")
    stale = [r.key for r in rows if r.status in (StepStatus.QUEUED, StepStatus.RETRYING)]
    await repo.set_steps_status(conn, run_id=run.id, keys=stale, status=StepStatus.PENDING)
    generation = await repo.set_run_status(
        conn, run_id=run.id, status=RunStatus.PENDING, only_from={RunStatus.RUNNING},
        bump_generation=True,
    )  # fmt: skip
    if generation is None:
        return None
    await repo.add_event(
        conn, run_id=run.id, kind="reconciled", actor=actor,
        detail={"action": "requeued", "reason": reason, "lost_attempts": released,
                "requeued": stale, "generation": generation},
    )  # fmt: skip
    return await write_intent(conn, workflow, run, generation, reason=reason)


async def redispatch(conn: AsyncConnection, run: RunRecord, *, actor: str) -> int | None:
    """A pending run without an intent (never expected): write one for its generation."""
    workflow = get_workflow(run.workflow)
    await repo.add_event(
        conn, run_id=run.id, kind="reconciled", actor=actor,
        detail={"action": "redispatched", "generation": run.generation},
    )  # fmt: skip
    return await write_intent(conn, workflow, run, run.generation, reason="orphaned")
