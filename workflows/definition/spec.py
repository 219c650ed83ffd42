"""The vocabulary workflows are written in: Celery's canvas words over step references.

`chain`, `group` and `chord` mean what they mean in Celery; `map(step, over="src.field")`
is a fan-out whose width is known only when `src` has run: one `step` per element of
`src`'s output field. These are plain data; `workflows.definition.compiler` turns them
into a canvas.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Union


@dataclass(frozen=True)
class StepRef:
    name: str


@dataclass(frozen=True)
class Chain:
    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class Group:
    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class Chord:
    header: tuple[Node, ...]
    body: Node


@dataclass(frozen=True)
class Map:
    step: str
    source: str  # the upstream step whose output holds the items
    path: tuple[str, ...]  # the field path inside that output

    @property
    def over(self) -> str:
        return ".".join((self.source, *self.path))


Node = Union[StepRef, Chain, Group, Chord, Map]  # noqa: UP007  (used at runtime)
Ref = Union[str, Callable[..., Any], Node]  # noqa: UP007


def ref(node: Ref) -> Node:
    """A step name, a decorated step function, or a node, as a node."""
    if isinstance(node, (StepRef, Chain, Group, Chord, Map)):
        return node
    if isinstance(node, str):
        return StepRef(node)
    name = getattr(node, "step_name", None)
    if name is None:
        raise TypeError(f"{node!r} is not a step (decorate it with @step)")
    return StepRef(name)


def chain(*nodes: Ref) -> Chain:
    return Chain(tuple(ref(n) for n in nodes))


def group(*nodes: Ref) -> Group:
    return Group(tuple(ref(n) for n in nodes))


def chord(header: builtins.list[Ref] | tuple[Ref, ...], body: Ref) -> Chord:
    return Chord(tuple(ref(n) for n in header), ref(body))


def map(step: Ref, *, over: str) -> Map:
    source, *path = over.split(".")
    node = ref(step)
    if not isinstance(node, StepRef) or not path:
        raise ValueError("map(step, over='source_step.field') needs a step and a field path")
    return Map(step=node.name, source=source, path=tuple(path))


def walk(node: Node) -> Iterator[Node]:
    """Every node, depth first, in canvas order."""
    yield node
    children: tuple[Node, ...] = ()
    if isinstance(node, (Chain, Group)):
        children = node.nodes
    elif isinstance(node, Chord):
        children = (*node.header, node.body)
    for child in children:
        yield from walk(child)
