"""Expanding a map: its item rows, created from its source's recorded output. Used by the
expander task, and by a dispatch or revision that finds the source already succeeded."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from db import repository as repo
from db.records import RunRecord
from db.states import StepStatus
from reelflow.errors import ReelflowError
from workflows.definition.spec import Chain, Map, Node, walk
from workflows.definition.workflow import Workflow


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


async def expand_items(conn: AsyncConnection, workflow: Workflow, run: RunRecord, node: Map) -> int:
    """Create the map's item rows from its source's recorded output (each with its item's
    digest, a part of its key); a superseded row of an index it still has comes back as
    pending. Returns the width. The run's row is locked by the caller."""
    found = await repo.get_step_output(conn, run_id=run.id, key=node.source)
    if found is None or found[0] is not StepStatus.SUCCEEDED:
        raise MapNotReady(f"{node.source} has not succeeded; cannot map {node.step}")
    items = pluck(found[1], node.path)
    await repo.attach_items(
        conn,
        run_id=run.id,
        items=[workflow.new_step(node.step, run.params, index=i, item=item)
               for i, item in enumerate(items)],
    )  # fmt: skip
    await repo.set_maps(conn, run_id=run.id, expanded={node.step: len(items)}, removed=())
    return len(items)
