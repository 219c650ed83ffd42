"""The map expander: creates a map's item rows, then becomes the canvas element holding it.

It stands in a chain position (never in a chord header, where Celery refuses
`Task.replace`), and replaces itself with the compiled element, so the chain's remaining
tasks follow that element as Celery's `replace` arranges. Like a step's claim, it runs
only for the run's current generation.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from celery import Signature, Task
from celery.exceptions import Ignore
from structlog.contextvars import bound_contextvars

from db import repository as repo
from db.engine import get_engine
from db.errors import db_retry
from db.states import RUN_CLAIMABLE, RunStatus, run_sources
from reelflow.celery_app import app
from reelflow.errors import ReelflowError, StaleDelivery, UnknownWorkflow
from steps.engine import bridge
from steps.engine.monitor import announce
from steps.engine.spec import check_message_args
from workflows.definition.canvas import EXPAND_TASK, expander_key
from workflows.definition.compiler import compile_node
from workflows.definition.expansion import (
    MapNotReady,
    MapSourceInvalid,
    expand_items,
    top_level_unit,
)
from workflows.definition.registry import get_workflow
from workflows.definition.spec import Map, walk
from workflows.runs.reuse import finish_if_done, reuse_known

log = structlog.get_logger("reelflow.expander")


class RunStopped(ReelflowError):
    """The run was cancelled (or removed) before its map expanded."""

    code = "run_stopped"


_IGNORED: dict[type[Exception], str] = {
    RunStopped: "not_runnable", StaleDelivery: "stale", MapNotReady: "not_ready",
}  # fmt: skip


async def expand(run_id: uuid.UUID, mapped_step: str, generation: int) -> Signature | None:
    """Expand the unit's maps not expanded for their source's current output, reuse what
    can be reused, and compile the unit (None: nothing left to run). A map expanding again
    (its source reran) takes back the superseded rows of the indices it still has; the rest
    stay superseded."""
    async with get_engine().begin() as conn:
        run = await repo.get_run(conn, run_id=run_id, for_update=True)
        if run is not None and run.generation != generation:
            raise StaleDelivery(f"expander of generation {generation}; run is at {run.generation}")
        if run is None or run.status not in RUN_CLAIMABLE:
            raise RunStopped()
        workflow = get_workflow(run.workflow)
        unit = top_level_unit(workflow, mapped_step)
        widths: dict[str, int] = {}
        for node in walk(unit):
            if isinstance(node, Map) and node.step not in run.maps:
                widths[node.step] = await expand_items(conn, workflow, run, node)
        fresh = await repo.get_run(conn, run_id=run_id)
        assert fresh is not None
        reused = await reuse_known(conn, workflow, fresh)  # unchanged items do not run
        rows = await repo.open_steps(conn, run_id=run_id)
        compiled = compile_node(workflow, unit, run_id, rows, fresh.maps, generation)
        await repo.mark_queued(conn, run_id=run_id, keys=compiled.heads)
        if compiled.canvas is None and fresh.status is RunStatus.RUNNING:
            await finish_if_done(conn, run_id)
        log.info("map_expanded", mapped_step=mapped_step, widths=widths,
                 steps=len(compiled.keys), reused=len(reused))  # fmt: skip
        return compiled.canvas


class ExpanderTask(Task):  # type: ignore[type-arg]
    """Tells monitors how each delivery ended: a replaced or ignored task sends no
    `task-succeeded`, so Flower would show it STARTED for ever."""

    #: The worker's consumer refuses a message whose arguments this rejects.
    check_message = staticmethod(check_message_args)

    def log_fields(self, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """What every line about a delivery carries, Celery's own too: its run and map."""
        if check_message_args(args, kwargs) is not None:
            return {}
        return {"run_id": args[0], "step": expander_key(args[1]), "step_key": expander_key(args[1])}

    def on_replace(self, sig: Signature) -> Any:
        announce(self, "replaced", by=str(sig.task if hasattr(sig, "task") else sig)[:200])
        return super().on_replace(sig)


@app.task(
    bind=True, base=ExpanderTask, name=EXPAND_TASK, acks_late=True, reject_on_worker_lost=True,
    typing=False,
)  # fmt: skip
def expand_map(self: Task[Any, Any], run_id: str, mapped_step: str, generation: int = -1) -> Any:
    with bound_contextvars(run_id=run_id, step_key=expander_key(mapped_step)):
        try:
            sig = _expand_retrying(uuid.UUID(run_id), mapped_step, generation)
        except (RunStopped, StaleDelivery, MapNotReady) as exc:
            reason = _IGNORED[type(exc)]
            log.info("map_expand_ignored", outcome=reason, generation=generation,
                     detail=str(exc))  # fmt: skip
            bridge.count_ignored(reason)
            announce(self, "ignored", reason=reason)
            raise Ignore() from None
        except (MapSourceInvalid, UnknownWorkflow) as exc:
            # The run's own data cannot be mapped: no step row owns this, so the run does.
            log.warning("map_expand_failed", error=f"{type(exc).__name__}: {exc}")
            bridge.run(_fail_run(uuid.UUID(run_id), mapped_step, exc))
            announce(self, "ignored", reason="run_failed")
            raise Ignore() from None
        # Anything else (the database away past its retries) fails this delivery only:
        # the run stalls, and the reconciler dispatches it again.
        if sig is None:
            return None  # every element already succeeded: the chain moves on
        return self.replace(sig)


@db_retry
def _expand_retrying(run_id: uuid.UUID, mapped_step: str, generation: int) -> Signature | None:
    """Expansion is idempotent, so a database outage is ridden out by trying again."""
    return bridge.run(expand(run_id, mapped_step, generation))


async def _fail_run(run_id: uuid.UUID, mapped_step: str, exc: Exception) -> None:
    async with get_engine().begin() as conn:
        await repo.fail_run(
            conn,
            run_id=run_id,
            error={"type": type(exc).__name__, "message": str(exc), "step": mapped_step},
            only_from=run_sources(RunStatus.FAILED),
        )
