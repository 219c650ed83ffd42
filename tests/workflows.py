"""Workflows only the tests run (WORKFLOW_MODULES=tests.workflows in the test stacks):
knobs a production workflow must not carry.

`growing_probe` is `probe` whose b is a live feed: each rerun of a changes b's width by
`grow`, so a map's source can widen or narrow between dispatches.

`slot_probe` is `a` then `hold`, a step on the `gpu` queue that holds its slot (POOLS) for
`hold_ms`, reporting progress and stopping when cancelled as a render does.
"""

from __future__ import annotations

import os
import time

from pydantic import BaseModel, Field

from steps import StepContext, step
from steps.probe import PROBE_RETRY, AOut, BOut, ProbeParams, a, c, d, e
from workflows.definition.registry import register
from workflows.definition.spec import chain, chord, map
from workflows.definition.workflow import Workflow


class GrowParams(ProbeParams):
    grow: int = Field(0, ge=-1000, le=1000, description="each rerun of a changes the width")


@step(retry=PROBE_RETRY, cache=False)
def grow_b(ctx: StepContext, params: GrowParams, a: AOut) -> BOut:
    width = max(0, params.width + params.grow * (a.attempt - 1))
    return BOut(
        key=ctx.key,
        attempt=ctx.attempt,
        pid=0,
        items=[a.seed * a.attempt + i for i in range(width)],
    )


growing_probe = register(
    Workflow(
        name="growing_probe",
        version=1,
        canvas=chain(a, grow_b, chord([map(c, over="grow_b.items")], d), e),
        params_model=GrowParams,
        description="probe whose map source changes width on every rerun (tests only)",
    )
)


class SlotParams(ProbeParams):
    hold_ms: int = Field(500, ge=0, le=120_000, description="how long `hold` runs")


class HoldOut(BaseModel):
    key: str
    attempt: int
    pid: int
    ticks: int


@step(queue="gpu", retry=PROBE_RETRY, cache=False)
def hold(ctx: StepContext, params: SlotParams, a: AOut) -> HoldOut:
    ticks = max(1, params.hold_ms // 20)
    for tick in range(ticks):
        ctx.check_cancelled()
        ctx.progress(tick, ticks)
        time.sleep(0.02)
    return HoldOut(key=ctx.key, attempt=ctx.attempt, pid=os.getpid(), ticks=ticks)


slot_probe = register(
    Workflow(
        name="slot_probe",
        version=1,
        canvas=chain(a, hold),
        params_model=SlotParams,
        description="a, then a gpu step holding its pool slot for hold_ms (tests only)",
    )
)
