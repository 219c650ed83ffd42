"""What a resume or retry would run and skip, in the order an operator reads it: the
answer of a dry run, and the list the operation then follows."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from db import repository as repo
from db.records import RunRecord
from db.states import StepStatus
from workflows.definition.registry import get_workflow


class Plan(BaseModel):
    """What a resume or retry would do, without doing it."""

    run_id: uuid.UUID
    operation: Literal["resume", "retry"]
    run: list[str]
    skip: dict[str, str]
    #: Steps still in flight from before the run stopped: the operation stops them and runs
    #: them again under its generation (also listed in `run`).
    stops: list[str] = []


async def plan(
    conn: AsyncConnection,
    run: RunRecord,
    operation: Literal["resume", "retry"],
    *,
    forced: set[str] | None = None,
    names: set[str] | None = None,
    remap: set[str] | None = None,
    stops: list[str] | None = None,
) -> Plan:
    forced, names, remap = forced or set(), names or set(), remap or set()
    workflow = get_workflow(run.workflow)
    order = {name: i for i, name in enumerate(workflow.step_names)}
    rows = sorted(  # in workflow order, a map's items by index: how an operator reads it
        await repo.get_steps(conn, run_id=run.id),
        key=lambda r: (order.get(r.step, len(order)), r.item_index or 0),
    )
    will, skip = [], {}
    for r in rows:
        if r.status is StepStatus.SUPERSEDED:
            continue
        if r.step in remap:
            continue  # listed once below, as the map expanding again
        if r.key in forced or r.step in names or r.status is not StepStatus.SUCCEEDED:
            will.append(r.key)
        else:
            skip[r.key] = "succeeded: its recorded output is reused"
    expanded = set(run.maps) - remap
    maps = [m for m in workflow.mapped_steps if m not in expanded]  # items not known yet
    for m in sorted(maps, key=lambda m: order[m], reverse=True):
        later = [i for i, key in enumerate(will) if order.get(key.split("[")[0], 0) > order[m]]
        will.insert(later[0] if later else len(will), f"{m}[*]")
    return Plan(run_id=run.id, operation=operation, run=will, skip=skip, stops=stops or [])
