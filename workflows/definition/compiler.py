"""Workflow + the run's open step rows -> a Celery canvas of only the steps not yet done.

Pure: the same rows always give the same canvas. It reads only the steps still open (not
succeeded, not superseded) and which maps are expanded, so compiling a resume of a run
with a thousand finished steps costs what it costs with twenty. A map whose items do not exist yet
compiles to an expander task standing in a chain position, in place of the whole top-level
element that holds the map (for short_video, the chord): Celery refuses `Task.replace`
inside a chord header, so the expander replaces itself with that element once the items
exist (see `workflows.definition.expander`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from celery import Signature, group
from celery import chord as _chord
from celery.canvas import _chain

from db.states import STEP_CLAIMABLE, StepStatus
from reelflow.errors import ReelflowError
from steps.engine.spec import STEP_TASK_PREFIX
from steps.engine.task import STEPS
from workflows.definition.canvas import expander_signature, step_signature
from workflows.definition.spec import Chain, Chord, Group, Map, Node, StepRef, walk
from workflows.definition.workflow import Workflow


class RowState(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def step(self) -> str: ...
    @property
    def status(self) -> StepStatus: ...
    @property
    def item_index(self) -> int | None: ...


@dataclass
class Compiled:
    canvas: Signature | None
    keys: list[str] = field(default_factory=list)  # step keys in the canvas, in order
    heads: list[str] = field(default_factory=list)  # step keys whose messages go out first
    expanders: list[str] = field(default_factory=list)  # maps that will expand


class NotDispatchable(ReelflowError):
    """An open step is in a state no message can claim: the operation must reset it first."""

    code = "not_dispatchable"


class StepsRunning(NotDispatchable):
    """The only obstacle is steps running right now: wait for them, never fail the run."""

    code = "steps_running"


@dataclass
class _Ctx:
    workflow: Workflow
    run_id: uuid.UUID
    generation: int
    open: set[str]  # keys of the steps still to run
    expanded: Mapping[str, int]  # mapped step -> width, for maps expanded for this source
    items: dict[str, list[str]]  # mapped step -> open item keys in index order
    out: Compiled


def compile_run(
    workflow: Workflow,
    run_id: uuid.UUID,
    rows: Iterable[RowState],
    expanded: Mapping[str, int],
    generation: int,
) -> Compiled:
    """`rows`: the run's open steps (`repository.open_steps`); `expanded`: the run's maps."""
    return compile_node(workflow, workflow.canvas, run_id, rows, expanded, generation, top=True)


def compile_node(
    workflow: Workflow,
    node: Node,
    run_id: uuid.UUID,
    rows: Iterable[RowState],
    expanded: Mapping[str, int],
    generation: int,
    *,
    top: bool = False,
) -> Compiled:
    rows = [r for r in rows if r.status not in (StepStatus.SUCCEEDED, StepStatus.SUPERSEDED)]
    blocked = [r for r in rows if r.status not in STEP_CLAIMABLE]
    if blocked:
        stuck = ", ".join(f"{r.key} is {r.status.value}" for r in blocked)
        running = all(r.status is StepStatus.RUNNING for r in blocked)
        raise (StepsRunning if running else NotDispatchable)(
            f"cannot dispatch run {run_id}: {stuck}"
        )
    items: dict[str, list[str]] = {}
    for r in sorted(rows, key=lambda r: r.item_index or 0):
        if r.item_index is not None:
            items.setdefault(r.step, []).append(r.key)
    keys = {r.key for r in rows}
    ctx = _Ctx(workflow, run_id, generation, keys, expanded, items, Compiled(None))
    if top and isinstance(node, Chain):
        sig = _chain_with_expanders(ctx, node)
    elif top and _unexpanded(ctx, node):
        sig = _expander(ctx, node)
    else:
        sig = _compile(ctx, node)
    ctx.out.canvas = sig
    ctx.out.heads = _heads(sig)
    return ctx.out


def _unexpanded(ctx: _Ctx, node: Node) -> list[Map]:
    return [n for n in walk(node) if isinstance(n, Map) and n.step not in ctx.expanded]


def _expander(ctx: _Ctx, node: Node) -> Signature:
    maps = _unexpanded(ctx, node)
    ctx.out.expanders.extend(m.step for m in maps)
    return expander_signature(ctx.run_id, maps[0].step, ctx.generation)


def _chain_with_expanders(ctx: _Ctx, node: Chain) -> Signature | None:
    sigs = []
    for child in node.nodes:
        sig = _expander(ctx, child) if _unexpanded(ctx, child) else _compile(ctx, child)
        if sig is not None:
            sigs.append(sig)
    return _join(sigs, _chain)


def _compile(ctx: _Ctx, node: Node, header: bool = False) -> Signature | None:
    """`header`: the node sits in a chord header, where Celery results must be kept."""
    if isinstance(node, StepRef):
        return _step(ctx, node.name, node.name, header)
    if isinstance(node, Map):
        keys = ctx.items.get(node.step, [])
        sigs = [s for k in keys if (s := _step(ctx, node.step, k, header)) is not None]
        return _join(sigs, group)
    if isinstance(node, Chain):
        sigs = [s for n in node.nodes if (s := _compile(ctx, n, header)) is not None]
        return _join(sigs, _chain)
    if isinstance(node, Group):
        sigs = [s for n in node.nodes if (s := _compile(ctx, n, header)) is not None]
        return _join(sigs, group)
    if isinstance(node, Chord):
        header_sigs = [s for n in node.header if (s := _compile(ctx, n, True)) is not None]
        flat: list[Signature] = []
        for sig in header_sigs:  # a chord header is one flat group of tasks
            flat.extend(sig.tasks if isinstance(sig, group) else [sig])
        body = _compile(ctx, node.body, header)
        if not flat:
            return body
        if body is None:
            return _join(flat, group)
        return _chord(group(flat), body)
    raise TypeError(node)


def _step(ctx: _Ctx, name: str, key: str, header: bool) -> Signature | None:
    if key not in ctx.open:
        return None
    ctx.out.keys.append(key)
    return step_signature(STEPS[name], ctx.run_id, key, ctx.generation, in_chord_header=header)


def _join(sigs: list[Signature], kind: type[_chain] | type[group]) -> Signature | None:
    if not sigs:
        return None
    if len(sigs) == 1:
        return sigs[0]
    return kind(*sigs)


def _heads(sig: Signature | None) -> list[str]:
    """Step keys whose messages apply_async publishes itself (the rest follow later)."""
    if sig is None:
        return []
    if isinstance(sig, (_chord, group)):
        return [k for t in sig.tasks for k in _heads(t)]
    if isinstance(sig, _chain):
        return _heads(sig.tasks[0]) if sig.tasks else []
    return [sig.args[1]] if str(sig.task).startswith(STEP_TASK_PREFIX) else []
