"""Generations fence every message: a delivery of an earlier dispatch changes nothing, a
reset step forgets its output, and a map follows its source when the source reruns."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text

from db.engine import get_engine
from db.states import RunStatus, StepStatus
from reelflow.celery_app import app
from tests.support import (
    WorkerProcess,
    attempt_rows,
    on_both_brokers,
    run_row,
    step_rows,
    wait_run,
    wait_step,
)
from workflows.definition.canvas import task_id
from workflows.runs.operations import cancel_run, retry_step, start_run

pytestmark = [pytest.mark.usefixtures("worker"), on_both_brokers]


async def _counter(name: str, label: str) -> int:
    async with get_engine().connect() as conn:
        found = await conn.execute(
            text("SELECT value FROM engine_counters WHERE name = :n AND label = :l"),
            {"n": name, "l": label},
        )
        return int(found.scalar() or 0)


async def _metrics() -> str:
    """The API's /metrics, served in-process (the numbers come from the database)."""
    import httpx

    from api.app import create_app

    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return (await client.get("/metrics")).text


def _deliver_by_hand(step: str, run_id: uuid.UUID, key: str, generation: int) -> None:
    """A message as a dispatch of `generation` sent it (a late publish, a redelivery)."""
    app.signature(
        f"reelflow.step.{step}",
        args=(str(run_id), key, generation),
        immutable=True,
        task_id=task_id(run_id, key, generation),
        ignore_result=True,
    ).apply_async()


async def test_a_message_of_an_older_generation_never_executes(worker: WorkerProcess) -> None:
    run_id = (await start_run("probe", {"width": 1, "sleep_ms": 1500})).run.id
    assert (await wait_run(run_id, worker=worker, timeout=60)).status is RunStatus.SUCCEEDED
    stale_before = await _counter("deliveries_ignored", "stale")

    await retry_step(run_id, "d", actor="test")  # generation 1: d and e rerun
    reset = await step_rows(run_id)
    assert reset["e"].output is None and reset["d"].output is None  # a reset forgets outputs
    await wait_step(run_id, "d", lambda s: s.status is StepStatus.RUNNING)
    # Generation 0's message for e, delivered while d's new attempt still runs: on a claim
    # that looked only at the step's status it would run e on d's old output.
    _deliver_by_hand("e", run_id, "e", 0)

    run = await wait_run(run_id, worker=worker, timeout=60)
    assert run.status is RunStatus.SUCCEEDED, run.error
    e = await attempt_rows(run_id, "e")
    d = await attempt_rows(run_id, "d")
    assert [a.celery_task_id for a in e] == [task_id(run_id, "e", 0), task_id(run_id, "e", 1)]
    assert e[1].started_at >= (d[1].finished_at or e[1].started_at)
    assert await _counter("deliveries_ignored", "stale") == stale_before + 1
    assert '"outcome": "stale"' in worker.tail(400_000)
    scrape = await _metrics()
    assert f'reelflow_deliveries_ignored_total{{reason="stale"}} {stale_before + 1}.0' in scrape


async def test_a_message_whose_inputs_are_not_ready_is_refused(worker: WorkerProcess) -> None:
    run_id = (await start_run("probe", {"width": 1, "sleep_ms": 1500})).run.id
    await wait_step(run_id, "a", lambda s: s.status is StepStatus.RUNNING)
    not_ready = await _counter("deliveries_ignored", "not_ready")
    _deliver_by_hand("e", run_id, "e", 0)  # current generation, but d has not run
    await asyncio.sleep(1)
    assert (await step_rows(run_id))["e"].attempts == 0
    assert await _counter("deliveries_ignored", "not_ready") == not_ready + 1
    run = await wait_run(run_id, worker=worker, timeout=60)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert [a.status for a in await attempt_rows(run_id, "e")] == ["succeeded"]


async def test_a_map_grows_with_its_source(worker: WorkerProcess) -> None:
    run_id = (await start_run("growing_probe", {"width": 3, "grow": 2})).run.id
    assert (await wait_run(run_id, worker=worker)).status is RunStatus.SUCCEEDED
    await retry_step(run_id, "a", actor="test")  # a's second attempt: b gives 5 new items
    run = await wait_run(run_id, worker=worker)
    assert run.status is RunStatus.SUCCEEDED, run.error
    steps = await step_rows(run_id)
    items = [f"c[{i}]" for i in range(5)]
    assert [k for k in steps if k.startswith("c[")] == items
    assert [steps[k].output["value"] for k in items] == [2 * (14 + i) for i in range(5)]
    assert steps["d"].output["seen"] == items
    assert steps["e"].output["total"] == sum(2 * (14 + i) for i in range(5))
    assert run.maps == {"c": 5}


async def test_a_map_shrinks_with_its_source_and_keeps_the_history(worker: WorkerProcess) -> None:
    run_id = (await start_run("growing_probe", {"width": 3, "grow": -2})).run.id
    assert (await wait_run(run_id, worker=worker)).status is RunStatus.SUCCEEDED
    await retry_step(run_id, "a", actor="test")  # b now gives one item
    run = await wait_run(run_id, worker=worker)
    assert run.status is RunStatus.SUCCEEDED, run.error
    steps = await step_rows(run_id)
    assert steps["c[0]"].status is StepStatus.SUCCEEDED and steps["c[0]"].attempts == 2
    assert steps["c[0]"].output["value"] == 2 * 14
    for gone in ("c[1]", "c[2]"):
        assert steps[gone].status is StepStatus.SUPERSEDED
        assert [a.status for a in await attempt_rows(run_id, gone)] == ["succeeded"]
    assert steps["d"].output["seen"] == ["c[0]"]
    assert steps["e"].output["total"] == 28

    await retry_step(run_id, "a", actor="test")  # a's third attempt: width 3 - 4 -> none
    run = await wait_run(run_id, worker=worker)
    assert run.status is RunStatus.SUCCEEDED, run.error
    steps = await step_rows(run_id)
    assert all(steps[k].status is StepStatus.SUPERSEDED for k in ("c[0]", "c[1]", "c[2]"))
    assert steps["d"].output["seen"] == [] and steps["e"].output["total"] == 0
    assert (await run_row(run_id)).maps == {"c": 0}


async def test_cancelled_items_are_superseded_when_their_source_reruns(
    worker: WorkerProcess,
) -> None:
    run_id = (await start_run("probe", {"width": 2, "sleep_ms": 1500})).run.id
    await wait_step(run_id, "c[0]", lambda s: s.status is StepStatus.RUNNING, timeout=30)
    await cancel_run(run_id, actor="test")
    assert (await step_rows(run_id))["c[1]"].status is StepStatus.CANCELLED
    await retry_step(run_id, "a", actor="test")
    steps = await step_rows(run_id)
    assert {steps[k].status for k in ("c[0]", "c[1]")} == {StepStatus.SUPERSEDED}
    run = await wait_run(run_id, worker=worker, timeout=60)
    assert run.status is RunStatus.SUCCEEDED, run.error
    steps = await step_rows(run_id)
    assert steps["d"].output["seen"] == ["c[0]", "c[1]"]
    assert [a.status for a in await attempt_rows(run_id, "c[0]")] == ["cancelled", "succeeded"]
