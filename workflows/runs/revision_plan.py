"""A revision's plan: which steps a change to a run touches, and why.

It walks the steps in workflow order with the digests the change leaves: an edited output
is known at once; a succeeded step whose input key comes out the same keeps its result; one
whose key changed reuses a result of the new key if any run has one, or reruns, with the
reason in words (which param, which input, its code, its item); a step that reads a step
that reruns, reruns. A map whose source's output was replaced expands at once over the new
items (an item whose scene did not change keeps its result); a map whose source reruns
expands again after it. Read-only: `workflows.runs.revise` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from db import repository as repo
from db.records import RunRecord
from db.repository.cache import KeyRow
from db.states import StepStatus
from reelflow.errors import InvalidParams
from steps.engine import keys
from steps.engine.spec import read_params
from workflows.definition.expansion import MapSourceInvalid, pluck
from workflows.definition.spec import Map
from workflows.definition.workflow import Workflow
from workflows.runs.reuse import Known, key_of


class InvalidRevision(InvalidParams):
    """The revision is invalid."""

    code = "invalid_revision"


@dataclass
class Walk:
    """The plan being made, and what applying it needs."""

    workflow: Workflow
    run: RunRecord
    params_before: dict[str, Any]
    params_after: dict[str, Any]
    outputs: dict[str, Any]
    patch: dict[str, Any] = field(default_factory=dict)
    known: Known = field(default_factory=Known)
    rerun: dict[str, str] = field(default_factory=dict)
    reuse: list[str] = field(default_factory=list)
    reset: list[str] = field(default_factory=list)  # rerun, or reused under a new key
    items: dict[str, list[Any]] = field(default_factory=dict)  # map -> new items (edited)
    superseded: list[str] = field(default_factory=list)
    remap: set[str] = field(default_factory=set)  # maps that expand after their source


async def plan(conn: AsyncConnection, walk: Walk, rows: list[KeyRow]) -> None:
    """Fill `walk` with the plan (rerun, reuse, reset, map changes)."""
    workflow, run = walk.workflow, walk.run
    digests = workflow.param_digests(walk.params_after)
    revised = run.model_copy(update={"param_digests": digests})
    walk.known = Known()
    by_step: dict[str, list[KeyRow]] = {}
    for row in rows:
        by_step.setdefault(row.step, []).append(row)
        if row.item_index is not None:
            walk.known.items.setdefault(row.step, [])
    for name in workflow.step_names:
        node = workflow.mapped_steps.get(name)
        mine = sorted(by_step.get(name, []), key=lambda r: r.item_index or 0)
        if isinstance(node, Map):
            if node.source in walk.outputs:
                mine = _remap_now(walk, node, mine)
            elif node.source in walk.rerun:
                walk.remap.add(name)
                walk.rerun[f"{name}[*]"] = f"its source {node.source} reruns: it expands again"
                walk.superseded += [r.key for r in mine]
                walk.known.items[name] = [None]
                continue
        for row in mine:
            await _judge(conn, walk, revised, row)


def _remap_now(walk: Walk, node: Map, mine: list[KeyRow]) -> list[KeyRow]:
    """The map over a replaced output: its items as that output has them."""
    try:
        items = pluck(walk.outputs[node.source], node.path)
    except MapSourceInvalid as exc:
        raise InvalidRevision(str(exc), [{"field": f"outputs.{node.source}",
                                          "message": str(exc)}]) from None  # fmt: skip
    walk.items[node.step] = items
    old = {r.item_index: r for r in mine}
    out: list[KeyRow] = []
    for index, item in enumerate(items):
        digest = keys.digest(item)
        row = old.get(index)
        if row is None or row.item_digest != digest:
            key = f"{node.step}[{index}]"
            walk.rerun[key] = "a new item" if row is None else "its item changed"
            walk.reset.append(key)
            _known_item(walk.known, node.step, index, None)
            continue
        out.append(row)
    walk.superseded += [r.key for i, r in old.items() if i is not None and i >= len(items)]
    walk.known.items[node.step] = (walk.known.items.get(node.step) or [])[: len(items)]
    while len(walk.known.items[node.step]) < len(items):
        walk.known.items[node.step].append(None)
    return out


def _known_item(known: Known, step: str, index: int, digest: str | None) -> None:
    items = known.items.setdefault(step, [])
    while len(items) <= index:
        items.append(None)
    items[index] = digest


def _learn(walk: Walk, row: KeyRow, digest: str | None) -> None:
    if row.item_index is None:
        walk.known.digests[row.step] = digest
    else:
        _known_item(walk.known, row.step, row.item_index, digest)


async def _judge(conn: AsyncConnection, walk: Walk, run: RunRecord, row: KeyRow) -> None:
    """Whether one step keeps its result, reuses another's, or reruns (and why)."""
    if row.key in walk.outputs:
        _learn(walk, row, keys.digest(walk.outputs[row.key]))
        return
    if row.status is not StepStatus.SUCCEEDED:
        walk.rerun[row.key] = f"it has not succeeded ({row.status.value})"
        walk.reset.append(row.key)
        _learn(walk, row, None)
        return
    unknown = _unknown_inputs(walk, row)
    if unknown:
        walk.rerun[row.key] = f"input {', '.join(unknown)} reruns"
        walk.reset.append(row.key)
        _learn(walk, row, None)
        return
    keyed = key_of(walk.workflow, run, row, walk.known)
    if keyed is None or row.input_key is None:
        # A result keyed by nothing (an edited output, an older run): it stands unless
        # what it reads or the params it reads changed.
        changed = _changed_without_key(walk, run, row)
        if not changed:
            walk.reuse.append(row.key)
            _learn(walk, row, row.output_digest)
            return
        walk.rerun[row.key] = changed
        walk.reset.append(row.key)
        _learn(walk, row, None)
        return
    key, parts = keyed
    if key == row.input_key:
        walk.reuse.append(row.key)
        _learn(walk, row, row.output_digest)
        return
    found = await repo.find_result(conn, workflow=walk.workflow.name, step=row.step, input_key=key)
    if found is not None and walk.run.cache:
        walk.reuse.append(row.key)  # reset now, reused at dispatch: no worker runs it
        walk.reset.append(row.key)
        _learn(walk, row, found.output_digest)
        return
    walk.rerun[row.key] = _why(walk, row, parts)
    walk.reset.append(row.key)
    _learn(walk, row, None)


def _unknown_inputs(walk: Walk, row: KeyRow) -> list[str]:
    spec = walk.workflow.spec(row.step)
    unknown = []
    for dep in spec.deps:
        if dep.many:
            found = walk.known.items.get(dep.step)
            if found is None or any(d is None for d in found):
                unknown.append(dep.step)
        elif walk.known.digests.get(dep.step) is None:
            unknown.append(dep.step)
    return unknown


def _changed_params(walk: Walk, step: str) -> list[str]:
    spec = walk.workflow.spec(step)
    before = read_params(spec, walk.params_before)
    after = read_params(spec, walk.params_after)
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def _why(walk: Walk, row: KeyRow, parts: dict[str, Any]) -> str:
    reasons: list[str] = []
    for part in keys.changed_parts(row.key_parts, parts):
        if part == "params":
            changed = _changed_params(walk, row.step)
            reasons.append(f"param {', '.join(changed)} changed" if changed else "params changed")
        elif part == "code":
            reasons.append("its code version changed")
        elif part == "item":
            reasons.append("its item changed")
        elif part.startswith("input "):
            reasons.append(f"input {part.removeprefix('input ')} changed")
        else:
            reasons.append(part)
    return "; ".join(reasons) or "its input key changed"


def _changed_without_key(walk: Walk, run: RunRecord, row: KeyRow) -> str:
    changed = _changed_params(walk, row.step)
    if changed:
        return f"param {', '.join(changed)} changed"
    spec = walk.workflow.spec(row.step)
    touched = [d.step for d in spec.deps if d.step in walk.outputs or d.step in walk.items]
    return f"input {', '.join(touched)} changed" if touched else ""
