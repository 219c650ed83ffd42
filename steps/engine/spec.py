"""What a step is, read off its function signature: inputs, params, item, output.

A step function's parameters name what it needs: `ctx` (StepContext), `params` (the run's
params model), `item` (its element of a map), and every other parameter is the name of an
upstream step whose recorded output it reads, typed as that step's output model (or a
list of them for a mapped step). So dependencies are declared once, by the signature.
"""

from __future__ import annotations

import inspect
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter

from steps.engine.keys import code_version
from steps.engine.retry import DEFAULT_POLICY, RetryPolicy

RESERVED = ("ctx", "params", "item")
STEP_TASK_PREFIX = "reelflow.step."


@dataclass(frozen=True)
class Dependency:
    step: str
    many: bool  # a mapped step: the input is the list of its item outputs, in item order
    adapter: TypeAdapter[Any]


@dataclass(frozen=True)
class StepSpec:
    name: str
    fn: Callable[..., BaseModel]
    queue: str = "default"
    retry: RetryPolicy = DEFAULT_POLICY
    soft_time_limit: int | None = None
    time_limit: int | None = None
    deps: tuple[Dependency, ...] = ()
    params_adapter: TypeAdapter[Any] | None = None
    item_adapter: TypeAdapter[Any] | None = None
    wants_ctx: bool = False
    output_type: type[BaseModel] | None = None
    dep_names: tuple[str, ...] = field(default=())
    #: The params fields the step reads (its params model's), or None: all of them.
    params_fields: frozenset[str] | None = None
    #: What its results depend on besides inputs and params (`steps.engine.keys`).
    code_version: str = ""
    #: Whether a result with the same input key may stand in for running it (a step with
    #: side effects, like publishing, says no).
    cache: bool = True
    #: More that the result depends on, read when a key is made (a data file's digest);
    #: None from it means "not cacheable now" (a live feed).
    key_extra: Callable[[], str | None] | None = None
    #: The slot pool it holds a slot of while it runs (None: its queue's, if POOLS has one).
    pool: str | None = None

    def version_now(self) -> str | None:
        """The code version with `key_extra`'s part; None when no result can be reused."""
        if not self.cache:
            return None
        if self.key_extra is None:
            return self.code_version
        extra = self.key_extra()
        return None if extra is None else f"{self.code_version}+{extra}"

    @property
    def single_deps(self) -> list[str]:
        """Upstream steps read whole: their key is their name."""
        return [d.step for d in self.deps if not d.many]

    @property
    def mapped_deps(self) -> list[str]:
        """Upstream mapped steps, read as the list of their items' outputs."""
        return [d.step for d in self.deps if d.many]

    @property
    def task_name(self) -> str:
        return f"{STEP_TASK_PREFIX}{self.name}"


def read_signature(
    fn: Callable[..., BaseModel],
    *,
    name: str,
    queue: str,
    retry: RetryPolicy,
    soft_time_limit: int | None,
    time_limit: int | None,
    version: str | None = None,
    cache: bool = True,
    key_extra: Callable[[], str | None] | None = None,
    pool: str | None = None,
) -> StepSpec:
    hints = typing.get_type_hints(fn)
    output = hints.get("return")
    if not (isinstance(output, type) and issubclass(output, BaseModel)):
        raise TypeError(f"step {name} must be annotated to return a pydantic model")
    deps: list[Dependency] = []
    for pname in inspect.signature(fn).parameters:
        if pname in RESERVED:
            continue
        if pname not in hints:
            raise TypeError(f"step {name}: parameter {pname} needs a type annotation")
        annotation = hints[pname]
        many = typing.get_origin(annotation) is list
        deps.append(Dependency(step=pname, many=many, adapter=TypeAdapter(annotation)))
    params = inspect.signature(fn).parameters
    params_type = hints.get("params")
    fields = None
    if isinstance(params_type, type) and issubclass(params_type, BaseModel):
        fields = frozenset(params_type.model_fields)
    return StepSpec(
        name=name,
        fn=fn,
        queue=queue,
        retry=retry,
        soft_time_limit=soft_time_limit,
        time_limit=time_limit,
        deps=tuple(deps),
        params_adapter=TypeAdapter(hints["params"]) if "params" in params else None,
        item_adapter=TypeAdapter(hints["item"]) if "item" in params else None,
        wants_ctx="ctx" in params,
        output_type=output,
        dep_names=tuple(d.step for d in deps),
        params_fields=fields,
        code_version=code_version(fn, version),
        cache=cache,
        key_extra=key_extra,
        pool=pool,
    )


def read_params(spec: StepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The part of the run's params the step reads: the fields of its params model. The
    workflow validated the whole at start; a step sees only what it declares."""
    if spec.params_fields is None:
        return params
    return {k: v for k, v in params.items() if k in spec.params_fields}


def build_kwargs(
    spec: StepSpec,
    *,
    ctx: Any,
    params: dict[str, Any],
    item: Any,
    inputs: dict[str, list[tuple[int | None, Any]]],
) -> dict[str, Any]:
    """Validate the recorded inputs into the function's typed keyword arguments."""
    kwargs: dict[str, Any] = {}
    if spec.wants_ctx:
        kwargs["ctx"] = ctx
    if spec.params_adapter is not None:
        kwargs["params"] = spec.params_adapter.validate_python(read_params(spec, params))
    if spec.item_adapter is not None:
        kwargs["item"] = spec.item_adapter.validate_python(item)
    for dep in spec.deps:
        rows = inputs.get(dep.step, [])
        if dep.many:
            value: Any = [output for _, output in sorted(rows, key=lambda r: r[0] or 0)]
            if any(output is None for output in value):
                raise LookupError(f"step {spec.name}: not every {dep.step} item has an output")
        else:
            if len(rows) != 1 or rows[0][1] is None:
                raise LookupError(f"step {spec.name}: no recorded output of {dep.step}")
            value = rows[0][1]
        kwargs[dep.step] = dep.adapter.validate_python(value)
    return kwargs


# Step keys: a single step's key is its name; a map item's is `name[index]`.

KEY_MAX = 200


def check_message_args(args: list[Any], kwargs: dict[str, Any]) -> str | None:
    """Why a step's (or an expander's) message arguments are not `(run_id, key,
    generation)`, or None: a malformed message is refused before it reaches the engine."""
    if kwargs:
        return "takes no keyword arguments"
    if not 2 <= len(args) <= 3:
        return f"takes (run_id, key, generation), got {len(args)} arguments"
    run_id, key = args[0], args[1]
    generation = args[2] if len(args) == 3 else -1
    if not isinstance(run_id, str):
        return "run_id is not a string"
    try:
        uuid.UUID(run_id)
    except ValueError:
        return "run_id is not a UUID"
    if not isinstance(key, str) or not 0 < len(key) <= KEY_MAX or "\x00" in key:
        return "the step key is not a short string"
    if isinstance(generation, bool) or not isinstance(generation, int):
        return "the generation is not an integer"
    if not -1 <= generation < 2**31:
        return "the generation is out of range"
    return None


def item_key(step: str, index: int) -> str:
    return f"{step}[{index}]"


def step_of_key(key: str) -> str:
    """The step name of a key: `render_scene[3]` -> `render_scene`."""
    return key[: key.index("[")] if key.endswith("]") and "[" in key else key


def index_of_key(key: str) -> int | None:
    """The item index of a key: `render_scene[3]` -> 3; None for a single step."""
    if key.endswith("]") and "[" in key:
        index = key[key.rindex("[") + 1 : -1]
        return int(index) if index.isdigit() else None
    return None
