"""Workflows only the tests run (WORKFLOW_MODULES=tests.workflows in the test stacks):
knobs a production workflow must not carry.

`growing_probe` is `probe` whose b is a live feed: each rerun of a changes b's width by
`grow`, so a map's source can widen or narrow between dispatches.
"""

from __future__ import annotations

from pydantic import Field

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
