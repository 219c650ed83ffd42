"""The map expander: creates a map's item rows, then becomes the canvas element holding it.

It stands in a chain position (never in a chord header, where Celery refuses
`Task.replace`), and replaces itself with the compiled element, so the chain's remaining
tasks follow that element as Celery's `replace` arranges.
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
from db.states import RUN_CLAIMABLE, StepStatus
from reelflow.celery_app import app
from reelflow.errors import ReelflowError
from steps import runtime
from steps.retry import db_retry
from workflows.canvas import EXPAND_TASK
from workflows.compiler import compile_node
from workflows.definition import Workflow
from workflows.registry import get_workflow
from workflows.spec import Chain, Map, Node, walk

log = structlog.get_logger("reelflow.expander")


class MapSourceMissing(ReelflowError):
    """The step a map reads its items from has no recorded output."""

    code = "map_source_missing"


def top_level_unit(workflow: Workflow, mapped_step: str) -> Node:
    """The element in chain position that holds the map: what the expander becomes."""
    canvas = workflow.canvas
    units = canvas.nodes if isinstance(canvas, Chain) else (canvas,)
    for unit in units:
        if any(isinstance(n, Map) and n.step == mapped_step for n in walk(unit)):
            return unit
    raise LookupError(f"workflow {workflow.name} has no map of {mapped_step}")


def pluck(output: Any, path: tuple[str, ...]) -> list[Any]:
    value = output
    for part in path:
        value = value[part]
    if not isinstance(value, list):
        raise TypeError(f"map source field {'.'.join(path)} is not a list")
    return value


class RunStopped(Exception):
    """The run was cancelled (or removed) before its map expanded."""


async def expand(run_id: uuid.UUID, mapped_step: str) -> Signature | None:
    """Create the item rows (idempotently) and compile the unit (None: nothing left to run)."""
    async with get_engine().begin() as conn:
        run = await repo.get_run(conn, run_id=run_id, for_update=True)
        if run is None or run.status not in RUN_CLAIMABLE:
            raise RunStopped()
        workflow = get_workflow(run.workflow)
        unit = top_level_unit(workflow, mapped_step)
        for node in walk(unit):
            if not isinstance(node, Map):
                continue
            found = await repo.get_step_output(conn, run_id=run_id, key=node.source)
            if found is None or found[0] is not StepStatus.SUCCEEDED:
                raise MapSourceMissing(f"{node.source} has not succeeded; cannot map {node.step}")
            items = pluck(found[1], node.path)
            await repo.add_steps(
                conn,
                run_id=run_id,
                steps=[
                    workflow.new_step(node.step, run.params, index=i, item=item)
                    for i, item in enumerate(items)
                ],
            )
        rows = await repo.get_steps(conn, run_id=run_id)
        compiled = compile_node(workflow, unit, run_id, rows, run.resume_count)
        await repo.mark_queued(conn, run_id=run_id, keys=compiled.heads)
        log.info("map_expanded", mapped_step=mapped_step, steps=len(compiled.keys))
        return compiled.canvas


@app.task(bind=True, name=EXPAND_TASK, acks_late=True, reject_on_worker_lost=True, typing=False)
def expand_map(self: Task[Any, Any], run_id: str, mapped_step: str) -> Any:
    with bound_contextvars(run_id=run_id, step_key=f"expand:{mapped_step}"):
        try:
            sig = _expand_retrying(uuid.UUID(run_id), mapped_step)
        except RunStopped:
            log.info("map_expand_skipped")
            raise Ignore() from None
        except Exception as exc:
            # No step row owns this failure, so the run itself records it.
            log.exception("map_expand_failed")
            runtime.run(_fail_run(uuid.UUID(run_id), mapped_step, exc))
            raise
        if sig is None:
            return None  # every element already succeeded: the chain moves on
        return self.replace(sig)


@db_retry
def _expand_retrying(run_id: uuid.UUID, mapped_step: str) -> Signature | None:
    """Expansion is idempotent, so a database outage is ridden out by trying again."""
    return runtime.run(expand(run_id, mapped_step))


async def _fail_run(run_id: uuid.UUID, mapped_step: str, exc: Exception) -> None:
    async with get_engine().begin() as conn:
        await repo.fail_run(
            conn,
            run_id=run_id,
            error={"type": type(exc).__name__, "message": str(exc), "step": mapped_step},
        )
