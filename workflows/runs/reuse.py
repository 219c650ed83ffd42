"""Reuse before dispatch: a step whose inputs are all known when its run is dispatched
(start, resume, retry, revise, a requeue, a map expanding) and whose input key has a
succeeded result succeeds at once with it: no message, no worker, no attempt. The steps
are walked in workflow order, so a reused step's output makes its dependents' keys known
in turn, and a map whose source succeeded is expanded on the way (its items reused one by
one). What is left is what the compiler dispatches; steps whose inputs come from a step
that still has to run are keyed when a worker claims them (`db.claims`).

The same walk, read-only, is a revision's plan (`workflows.runs.revise`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from db import repository as repo
from db.records import RunRecord
from db.repository.cache import KeyRow
from db.states import STEP_REUSABLE, RunStatus, StepStatus
from steps.engine import keys
from workflows.definition.expansion import expand_items
from workflows.definition.spec import Map
from workflows.definition.workflow import Workflow

log = structlog.get_logger("reelflow.reuse")


@dataclass
class Known:
    """What the walk knows of each step: succeeded rows' output digests, by step name."""

    digests: dict[str, str | None] = field(default_factory=dict)  # single step -> digest
    items: dict[str, list[str | None]] = field(default_factory=dict)  # mapped -> in order


def step_inputs(workflow: Workflow, name: str, known: Known) -> dict[str, str] | None:
    """The output digests of what `name` reads, or None if one is not known yet."""
    spec = workflow.spec(name)
    inputs: dict[str, str] = {}
    for dep in spec.deps:
        if dep.many:
            found = known.items.get(dep.step)
            if found is None or any(d is None for d in found):
                return None
            inputs[dep.step] = keys.mapped_digest(d for d in found if d is not None)
        else:
            digest = known.digests.get(dep.step)
            if digest is None:
                return None
            inputs[dep.step] = digest
    return inputs


def key_of(
    workflow: Workflow, run: RunRecord, row: KeyRow, known: Known
) -> tuple[str, dict[str, Any]] | None:
    """(input key, its parts) of a step row, if the step may reuse and every part is known."""
    spec = workflow.spec(row.step)
    version = spec.version_now()
    params_digest = run.param_digests.get(row.step)
    if version is None or params_digest is None:
        return None
    if row.item_index is not None and row.item_digest is None:
        return None
    inputs = step_inputs(workflow, row.step, known)
    if inputs is None:
        return None
    key = keys.input_key(
        step=row.step, code_version=version, params_digest=params_digest,
        item_digest=row.item_digest, inputs=inputs,
    )  # fmt: skip
    parts = keys.key_parts(
        code_version=version, params_digest=params_digest, item_digest=row.item_digest,
        inputs=inputs,
    )  # fmt: skip
    return key, parts


def _learn(known: Known, row: KeyRow, digest: str | None) -> None:
    if row.item_index is None:
        known.digests[row.step] = digest
    else:
        items = known.items.setdefault(row.step, [])
        while len(items) <= row.item_index:
            items.append(None)
        items[row.item_index] = digest


def learn_succeeded(rows: list[KeyRow]) -> Known:
    """The digests of the rows that succeeded (and so may feed their dependents' keys)."""
    known = Known()
    for row in rows:
        if row.item_index is not None:
            known.items.setdefault(row.step, [])
        if row.status is StepStatus.SUCCEEDED:
            _learn(known, row, row.output_digest)
    return known


async def reuse_known(conn: AsyncConnection, workflow: Workflow, run: RunRecord) -> list[str]:
    """Reuse every result that can be known now (see the module); returns the keys reused.
    In the caller's transaction, with the run's row locked."""
    if not run.cache:
        return []
    rows = await repo.key_rows(conn, run_id=run.id)
    known = learn_succeeded(rows)
    by_step: dict[str, list[KeyRow]] = {}
    for row in rows:
        by_step.setdefault(row.step, []).append(row)
    reused: list[str] = []
    expanded = dict(run.maps)
    for name in workflow.step_names:
        node = workflow.mapped_steps.get(name)
        if isinstance(node, Map) and name not in expanded and node.source in known.digests:
            if known.digests[node.source] is None:
                continue
            width = await expand_items(conn, workflow, run, node)
            expanded[name] = width
            by_step[name] = await repo.key_rows(conn, run_id=run.id, names=[name])
            known.items[name] = [None] * width
        for row in by_step.get(name, []):
            if row.status not in STEP_REUSABLE - {StepStatus.RUNNING} or row.force_rerun:
                continue
            keyed = key_of(workflow, run, row, known)
            if keyed is None:
                continue
            found = await repo.find_result(
                conn, workflow=workflow.name, step=name, input_key=keyed[0]
            )
            if found is None:
                continue
            if await repo.reuse(conn, run_id=run.id, step_id=row.id, input_key=keyed[0],
                                result=found):  # fmt: skip
                _learn(known, row, found.output_digest)
                reused.append(row.key)
    if reused:
        log.info("steps_reused_at_dispatch", run_id=str(run.id), steps=reused)
    return reused


async def finish_if_done(conn: AsyncConnection, run_id: uuid.UUID) -> bool:
    """A run whose every step succeeded (all reused at dispatch) is finished now."""
    if await repo.open_steps(conn, run_id=run_id):
        return False
    await repo.set_run_status(conn, run_id=run_id, status=RunStatus.RUNNING, started=True)
    await repo.set_run_status(conn, run_id=run_id, status=RunStatus.SUCCEEDED, finished=True)
    return True
