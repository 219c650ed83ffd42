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
from db.states import RUN_CLAIMABLE, RunStatus, StepStatus, run_sources
from reelflow.celery_app import app
from reelflow.errors import ReelflowError, StaleDelivery, UnknownWorkflow
from steps.engine import bridge
from steps.engine.monitor import announce
from steps.engine.spec import check_message_args
from workflows.definition.canvas import EXPAND_TASK, expander_key
from workflows.definition.compiler import compile_node
from workflows.definition.registry import get_workflow
from workflows.definition.spec import Chain, Map, Node, walk
from workflows.definition.workflow import Workflow

log = structlog.get_logger("reelflow.expander")


class MapNotReady(ReelflowError):
    """An expander message for a map the run cannot expand now: the workflow has no such
    map, or its source has not succeeded. It changes nothing; the run's own expander
    (sent after the source succeeds) expands it."""

    code = "map_not_ready"


class MapSourceInvalid(ReelflowError):
    """The map's source succeeded, but its output has no list at the map's path: the run
    fails, as it would for a failure of that step."""

    code = "map_source_invalid"


def top_level_unit(workflow: Workflow, mapped_step: str) -> Node:
    """The element in chain position that holds the map: what the expander becomes."""
    canvas = workflow.canvas
    units = canvas.nodes if isinstance(canvas, Chain) else (canvas,)
    for unit in units:
        if any(isinstance(n, Map) and n.step == mapped_step for n in walk(unit)):
            return unit
    raise MapNotReady(f"workflow {workflow.name} has no map of {mapped_step!r}")


def pluck(output: Any, path: tuple[str, ...]) -> list[Any]:
    value = output
    try:
        for part in path:
            value = value[part]
    except (KeyError, IndexError, TypeError):
        raise MapSourceInvalid(f"map source has no field {'.'.join(path)}") from None
    if not isinstance(value, list):
        raise MapSourceInvalid(f"map source field {'.'.join(path)} is not a list")
    return value


class RunStopped(ReelflowError):
    """The run was cancelled (or removed) before its map expanded."""

    code = "run_stopped"


_IGNORED: dict[type[Exception], str] = {
    RunStopped: "not_runnable", StaleDelivery: "stale", MapNotReady: "not_ready",
}  # fmt: skip


async def expand(run_id: uuid.UUID, mapped_step: str, generation: int) -> Signature | None:
    """Expand the unit's maps not expanded for their source's current output, and compile
    the unit (None: nothing left to run). A map expanding again (its source reran) takes
    back the superseded rows of the indices it still has; the rest stay superseded."""
    async with get_engine().begin() as conn:
        run = await repo.get_run(conn, run_id=run_id, for_update=True)
        if run is not None and run.generation != generation:
            raise StaleDelivery(f"expander of generation {generation}; run is at {run.generation}")
        if run is None or run.status not in RUN_CLAIMABLE:
            raise RunStopped()
        workflow = get_workflow(run.workflow)
        unit = top_level_unit(workflow, mapped_step)
        expanded = dict(run.maps)
        widths: dict[str, int] = {}
        for node in walk(unit):
            if not isinstance(node, Map) or node.step in expanded:
                continue
            found = await repo.get_step_output(conn, run_id=run_id, key=node.source)
            if found is None or found[0] is not StepStatus.SUCCEEDED:
                raise MapNotReady(f"{node.source} has not succeeded; cannot map {node.step}")
            items = pluck(found[1], node.path)
            await repo.attach_items(
                conn,
                run_id=run_id,
                items=[
                    workflow.new_step(node.step, run.params, index=i, item=item)
                    for i, item in enumerate(items)
                ],
            )
            widths[node.step] = len(items)
        if widths:
            await repo.set_maps(conn, run_id=run_id, expanded=widths, removed=())
        rows = await repo.open_steps(conn, run_id=run_id)
        compiled = compile_node(workflow, unit, run_id, rows, expanded | widths, generation)
        await repo.mark_queued(conn, run_id=run_id, keys=compiled.heads)
        log.info("map_expanded", mapped_step=mapped_step, widths=widths, steps=len(compiled.keys))
        return compiled.canvas


class ExpanderTask(Task):  # type: ignore[type-arg]
    """Tells monitors how each delivery ended: a replaced or ignored task sends no
    `task-succeeded`, so Flower would show it STARTED for ever."""

    #: The worker's consumer refuses a message whose arguments this rejects.
    check_message = staticmethod(check_message_args)

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
