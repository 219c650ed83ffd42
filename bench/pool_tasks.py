"""The workflow of bench/pools.py: `backlog` lists N items, and `render` (queue `gpu`)
stands in for a render of each, fanned out one task per item: it holds the GPU for
`render_ms` and reports progress as a render does.

Imported by the benchmark and by its workers (`-I bench.pool_tasks`).
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict

from steps import StepContext, step
from workflows.definition.registry import register
from workflows.definition.spec import chain, chord, map
from workflows.definition.workflow import Workflow


class PoolBenchParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    renders: int = 200
    render_ms: int = 500
    nonce: str = ""


class Backlog(BaseModel):
    items: list[int]


class Rendered(BaseModel):
    index: int


@step(cache=False)
def backlog(params: PoolBenchParams) -> Backlog:
    return Backlog(items=list(range(params.renders)))


@step(queue="gpu", cache=False)
def render(ctx: StepContext, params: PoolBenchParams, item: int) -> Rendered:
    deadline = time.perf_counter() + params.render_ms / 1000
    while (left := deadline - time.perf_counter()) > 0:
        ctx.check_cancelled()
        time.sleep(min(left, 0.05))
    return Rendered(index=item)


@step(cache=False)
def collected(render: list[Rendered]) -> Backlog:
    return Backlog(items=[r.index for r in render])


register(
    Workflow(
        name="pool_bench",
        version=1,
        canvas=chain(backlog, chord([map(render, over="backlog.items")], collected)),
        params_model=PoolBenchParams,
        description="a backlog of synthetic gpu renders (bench/pools.py)",
    )
)
