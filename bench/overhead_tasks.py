"""Tasks and workflows for bench/overhead.py: raw Celery no-ops and their durable twins.

Imported by the benchmark and by its worker (`-I bench.overhead_tasks`).
"""

from __future__ import annotations

import inspect

from pydantic import BaseModel, ConfigDict

from reelflow.celery_app import app
from steps.engine.task import step
from workflows.definition.registry import register
from workflows.definition.spec import chain, chord, map
from workflows.definition.workflow import Workflow

CHAIN_LENGTH = 200
FANOUT_WIDTH = 500


@app.task(name="bench.noop", acks_late=True, reject_on_worker_lost=True)
def noop() -> None:
    return None


class BenchParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: int = FANOUT_WIDTH
    max_attempts: int | None = None
    #: A fresh value per run: every step's input key is new, so the bench measures the
    #: miss path (key computed, nothing to reuse, the step runs), not reuse.
    nonce: str = ""


class Empty(BaseModel):
    pass


class Items(BaseModel):
    items: list[int]


def _link(index: int) -> None:
    """Step `bench_<i>` reads the output of `bench_<i-1>`, as a real chain of steps does."""

    def fn(**_: object) -> Empty:
        return Empty()

    params = [inspect.Parameter("params", inspect.Parameter.KEYWORD_ONLY)]
    fn.__annotations__ = {"params": BenchParams, "return": Empty}
    if index:
        prev = f"bench_{index - 1}"
        params.append(inspect.Parameter(prev, inspect.Parameter.KEYWORD_ONLY))
        fn.__annotations__[prev] = Empty
    fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    step(name=f"bench_{index}")(fn)


for _i in range(CHAIN_LENGTH):
    _link(_i)


@step()
def bench_source(params: BenchParams) -> Items:
    return Items(items=list(range(params.width)))


@step()
def bench_item(params: BenchParams, item: int) -> Empty:
    return Empty()


@step()
def bench_join(params: BenchParams, bench_item: list[Empty]) -> Empty:
    return Empty()


@step()
def bench_tail(params: BenchParams, bench_join: Empty) -> Empty:
    return Empty()


bench_chain = register(
    Workflow(
        name="bench_chain",
        version=1,
        canvas=chain(*[f"bench_{i}" for i in range(CHAIN_LENGTH)]),
        params_model=BenchParams,
    )
)
bench_fanout = register(
    Workflow(
        name="bench_fanout",
        version=1,
        canvas=chain(
            bench_source,
            chord([map(bench_item, over="bench_source.items")], bench_join),
            bench_tail,
        ),
        params_model=BenchParams,
    )
)
