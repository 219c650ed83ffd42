"""Cheap steps of the built-in `probe` workflow: a smoke test for a deployment.

`a -> b -> chord(map(c over b.items), d) -> e`. Each step can sleep (`sleep_ms`, at most
10 s) and records which process ran it, so a test can count executions. A smoke test must
execute: its steps never reuse a result (`cache=False`).
"""

from __future__ import annotations

import os
import time

from pydantic import BaseModel, ConfigDict, Field

from steps import RetryPolicy, StepContext, step

PROBE_RETRY = RetryPolicy(max_attempts=3, backoff_base=0.2, backoff_max=2.0)


class ProbeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: int = Field(3, ge=0, le=1000, description="number of c items")
    sleep_ms: int = Field(0, ge=0, le=10_000, description="each step sleeps this long")
    max_attempts: int | None = Field(None, ge=1, le=20, description="retry budget of every step")


class Trace(BaseModel):
    key: str
    attempt: int
    pid: int


class AOut(Trace):
    seed: int


class BOut(Trace):
    items: list[int]


class COut(Trace):
    value: int


class DOut(Trace):
    total: int
    seen: list[str]


class EOut(Trace):
    total: int


def _pause(params: ProbeParams) -> None:
    if params.sleep_ms:
        time.sleep(params.sleep_ms / 1000)


def _trace(ctx: StepContext) -> dict[str, object]:
    return {"key": ctx.key, "attempt": ctx.attempt, "pid": os.getpid()}


@step(retry=PROBE_RETRY, cache=False)
def a(ctx: StepContext, params: ProbeParams) -> AOut:
    _pause(params)
    return AOut(**_trace(ctx), seed=7)


@step(retry=PROBE_RETRY, cache=False)
def b(ctx: StepContext, params: ProbeParams, a: AOut) -> BOut:
    _pause(params)
    return BOut(**_trace(ctx), items=[a.seed * a.attempt + i for i in range(params.width)])


@step(retry=PROBE_RETRY, cache=False)
def c(ctx: StepContext, params: ProbeParams, item: int) -> COut:
    _pause(params)
    return COut(**_trace(ctx), value=item * 2)


@step(retry=PROBE_RETRY, cache=False)
def d(ctx: StepContext, params: ProbeParams, c: list[COut]) -> DOut:
    _pause(params)
    return DOut(**_trace(ctx), total=sum(x.value for x in c), seen=[x.key for x in c])


@step(retry=PROBE_RETRY, cache=False)
def e(ctx: StepContext, params: ProbeParams, d: DOut) -> EOut:
    _pause(params)
    return EOut(**_trace(ctx), total=d.total)
