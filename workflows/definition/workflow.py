"""A workflow: a named, versioned canvas over steps, with a typed params model.

Building one checks it: every step exists, every step's inputs come from steps upstream of
it, and every map's source runs before the map.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from db.records import NewStep
from reelflow.errors import InvalidParams, field_errors, summarise
from steps.engine import keys
from steps.engine.spec import StepSpec, item_key, read_params
from steps.engine.task import STEPS
from workflows.definition.headline import Headline
from workflows.definition.spec import Chain, Chord, Group, Map, Node, StepRef, walk


@dataclass(frozen=True)
class Workflow:
    name: str
    version: int
    canvas: Node
    params_model: type[BaseModel]
    description: str = ""
    headline: Headline = field(default_factory=Headline)  # what the runs list says a run is
    #: Checks of valid params against the world, when a run starts or is revised (a trend
    #: id its source offers): the errors, as fields and messages; none when it passes.
    check: Callable[[BaseModel], list[dict[str, str]]] | None = None
    upstream: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "upstream", _upstream(self.canvas))
        for name in self.step_names:
            if name not in STEPS:
                raise ValueError(f"workflow {self.name}: unknown step {name}")
            missing = set(STEPS[name].dep_names) - self.upstream[name]
            if missing:
                raise ValueError(
                    f"workflow {self.name}: step {name} reads {sorted(missing)}, "
                    "which do not run before it"
                )
        mapped = {n.step for n in walk(self.canvas) if isinstance(n, Map)}
        for node in walk(self.canvas):
            if isinstance(node, Map) and node.source not in self.upstream[node.step]:
                raise ValueError(f"workflow {self.name}: map source {node.source} runs too late")
            if isinstance(node, Map) and not any(
                node.step in STEPS[n].dep_names for n in self.step_names if n not in mapped
            ):
                # Its items exist only once it expands: with no step waiting for them, the
                # run would count as finished (succeeded) as soon as the source did.
                raise ValueError(
                    f"workflow {self.name}: nothing reads the results of map {node.step}; make"
                    f" it a chord header whose body reads them: chord([map(...)], body)"
                )

    @property
    def step_names(self) -> list[str]:
        names: list[str] = []
        for node in walk(self.canvas):
            if isinstance(node, StepRef):
                names.append(node.name)
            elif isinstance(node, Map):
                names.append(node.step)
        return names

    @property
    def mapped_steps(self) -> dict[str, Map]:
        return {n.step: n for n in walk(self.canvas) if isinstance(n, Map)}

    def spec(self, name: str) -> StepSpec:
        return STEPS[name]

    def validate_params(self, params: Mapping[str, Any]) -> BaseModel:
        """Params as JSON, strictly: `"3"` or `true` is not an integer, as the OpenAPI schema
        says, so what the schema calls invalid is refused and never coerced."""
        try:
            raw = json.dumps(_integral(dict(params)))
            model = self.params_model.model_validate_json(raw, strict=True)
        except (TypeError, ValueError) as exc:
            if not isinstance(exc, ValidationError):  # not JSON at all (a set, bytes...)
                errors = [{"field": "", "message": "must be JSON"}]
                raise InvalidParams(f"invalid params for {self.name}: {exc}", errors) from None
            errors = field_errors(exc.errors())
            summary = summarise(errors, whole="params")
            raise InvalidParams(f"invalid params for {self.name}: {summary}", errors) from None
        found = self.check(model) if self.check is not None else []
        if found:
            summary = summarise(found, whole="params")
            raise InvalidParams(f"invalid params for {self.name}: {summary}", found)
        return model

    def max_attempts(self, name: str, params: Mapping[str, Any]) -> int:
        override = params.get("max_attempts")
        return int(override) if override else STEPS[name].retry.max_attempts

    def new_step(
        self, name: str, params: Mapping[str, Any], *, index: int | None = None, item: Any = None
    ) -> NewStep:
        spec = STEPS[name]
        return NewStep(
            key=name if index is None else item_key(name, index),
            step=name,
            queue=spec.queue,
            max_attempts=self.max_attempts(name, params),
            item_index=index,
            item=item,
            item_digest=keys.digest(item) if index is not None else None,
        )

    def param_digests(self, params: Mapping[str, Any]) -> dict[str, str]:
        """Per step, the digest of the params fields it reads (a part of its input key):
        a patch of a field only `publish` reads changes only `publish`'s."""
        return {n: keys.digest(read_params(STEPS[n], dict(params))) for n in self.step_names}

    def initial_steps(self, params: Mapping[str, Any]) -> list[NewStep]:
        """Rows for every step known before the run starts (map items come at expansion)."""
        mapped = self.mapped_steps
        return [self.new_step(n, params) for n in self.step_names if n not in mapped]

    def downstream(self, name: str) -> set[str]:
        """Step names that run after `name` and read it, directly or transitively."""
        readers: dict[str, set[str]] = {n: set() for n in self.step_names}
        for n in self.step_names:
            for dep in STEPS[n].dep_names:
                readers[dep].add(n)
        for m in self.mapped_steps.values():
            readers[m.source].add(m.step)
        out: set[str] = set()
        todo = [name]
        while todo:
            for r in readers.get(todo.pop(), ()):
                if r not in out:
                    out.add(r)
                    todo.append(r)
        return out

    def columns(self) -> list[list[str]]:
        """The steps in columns, left to right, for drawing: one past the columns of the
        steps each waits for (those it reads, a map's source)."""
        mapped = self.mapped_steps
        depth: dict[str, int] = {}

        def level(name: str) -> int:
            if name not in depth:
                after = [*STEPS[name].dep_names]
                if name in mapped:
                    after.append(mapped[name].source)
                known = [a for a in after if a in self.upstream]
                depth[name] = 1 + max((level(a) for a in known), default=-1)
            return depth[name]

        columns: list[list[str]] = []
        for name in self.step_names:
            at = level(name)
            while len(columns) <= at:
                columns.append([])
            columns[at].append(name)
        return columns

    def graph(self) -> dict[str, Any]:
        """The canvas as a tree of plain data (for the API and the UI)."""
        return _tree(self.canvas)


def _tree(node: Node) -> dict[str, Any]:
    if isinstance(node, StepRef):
        return {"kind": "step", "step": node.name}
    if isinstance(node, Map):
        return {"kind": "map", "step": node.step, "over": node.over}
    if isinstance(node, Chain):
        return {"kind": "chain", "nodes": [_tree(n) for n in node.nodes]}
    if isinstance(node, Group):
        return {"kind": "group", "nodes": [_tree(n) for n in node.nodes]}
    return {"kind": "chord", "header": [_tree(n) for n in node.header], "body": _tree(node.body)}


def _upstream(canvas: Node) -> dict[str, frozenset[str]]:
    """For each step, the steps that have finished whenever it starts."""
    result: dict[str, frozenset[str]] = {}

    def visit(node: Node, before: frozenset[str]) -> frozenset[str]:
        """Record steps under `node`; return the steps finished once `node` is."""
        if isinstance(node, StepRef):
            result[node.name] = before
            return before | {node.name}
        if isinstance(node, Map):
            result[node.step] = before
            return before | {node.step}
        if isinstance(node, Chain):
            for child in node.nodes:
                before = visit(child, before)
            return before
        if isinstance(node, Group):
            done = before
            for child in node.nodes:
                done = done | visit(child, before)
            return done
        if isinstance(node, Chord):
            done = before
            for child in node.header:
                done = done | visit(child, before)
            return visit(node.body, done)
        raise TypeError(node)

    visit(canvas, frozenset())
    return result


def _integral(value: Any) -> Any:
    """JSON has one number type: 3.0 is the integer 3 (as JSON Schema counts it)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value
