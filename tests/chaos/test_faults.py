"""Faults a production pipeline meets: dead workers, a Redis that forgot everything, a
PostgreSQL outage, a step outliving its lease. Each test breaks a stack of its own."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
from pathlib import Path

import pytest
import redis

from db.states import RunStatus, StepStatus
from tests.chaos.conftest import Chaos
from tests.support import attempt_rows, step_rows, wait_run, wait_step

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

VIDEO = {"length_seconds": 15, "width": 360, "height": 640, "fps": 24, "topic": "bees"}


@pytest.mark.chaos_env(reconcile_interval_seconds=1)
@pytest.mark.parametrize("chaos", ["redis", "amqp"], indirect=True)
async def test_killed_worker_mid_render_is_recovered_by_another(chaos: Chaos) -> None:
    run_id = chaos.start_run("short_video", **VIDEO)
    # no reconciler process: the workers heal themselves. A slow encoder keeps the render
    # running long enough to be seen running on a loaded machine.
    first = chaos.worker("doomed", X264_PRESET="slow")
    victim = await wait_step(
        run_id, "render_scene[0]", lambda s: s.status is StepStatus.RUNNING, timeout=60
    )
    assert victim.status is StepStatus.RUNNING
    first.kill()  # SIGKILL to the whole worker: parent and pool processes
    chaos.worker("rescuer")

    run = await wait_run(run_id, timeout=120)
    assert run.status is RunStatus.SUCCEEDED, run.error
    steps = await step_rows(run_id)
    for key in (k for k in steps if k.startswith("render_scene[")):
        attempts = await attempt_rows(run_id, key)
        assert [a.status for a in attempts].count("succeeded") == 1, (key, attempts)
        output = steps[key].output["video"]
        assert hashlib.sha256(Path(output["path"]).read_bytes()).hexdigest() == output["sha256"]
    statuses = [a.status for a in await attempt_rows(run_id, "render_scene[0]")]
    assert statuses == ["lost", "succeeded"], statuses


async def test_redis_restart_loses_queued_messages_and_the_reconciler_requeues(
    chaos: Chaos,
) -> None:
    run_id = chaos.start_run("probe", width=2)  # no worker yet: the messages wait in Redis
    assert redis.Redis.from_url(chaos.redis.url).llen("default") == 1
    chaos.restart_redis()  # no persistence: the queue is gone
    assert redis.Redis.from_url(chaos.redis.url).llen("default") == 0
    chaos.worker("after-restart")  # it reconciles: no process of its own needed

    run = await wait_run(run_id, timeout=90)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert all(s.attempts == 1 for s in (await step_rows(run_id)).values())
    events = json.loads(chaos.cli("show", str(run_id), "--json"))
    assert events["generation"] == 1  # one new generation of messages, from the reconciler


@pytest.mark.chaos_env(step_lease_seconds=30)
async def test_postgres_outage_mid_step_loses_nothing_and_reruns_nothing(chaos: Chaos) -> None:
    chaos.worker("steady")
    chaos.start_reconciler()
    run_id = chaos.start_run("probe", width=2, sleep_ms=3000)
    await wait_step(run_id, "b", lambda s: s.status is StepStatus.RUNNING, timeout=30)

    chaos.stop_postgres()
    await asyncio.sleep(10)  # b finishes its work while the database is away
    chaos.start_postgres()

    run = await wait_run(run_id, timeout=120)
    assert run.status is RunStatus.SUCCEEDED, run.error
    steps = await step_rows(run_id)
    assert {k: s.attempts for k, s in steps.items()} == {k: 1 for k in steps}
    assert all(a.status == "succeeded" for a in await attempt_rows(run_id))


async def test_a_step_longer_than_its_lease_on_a_live_worker_is_not_stolen(
    chaos: Chaos,
) -> None:
    chaos.start_reconciler()
    run_id = chaos.start_run("probe", width=1, sleep_ms=10_000)  # lease is 5 s
    worker = chaos.worker("patient")  # after the run: the step cannot start unseen
    running = await wait_step(run_id, "a", lambda s: s.status is StepStatus.RUNNING)
    await asyncio.sleep(6.5)  # well past the lease: only the heartbeat keeps it

    client = redis.Redis.from_url(chaos.redis.url)
    for raw in client.hvals("unacked"):
        payload = json.loads(raw)[0]
        if payload["headers"]["id"] == running.celery_task_id:
            client.rpush("default", json.dumps(payload))  # a redelivery, as after a timeout
    run = await wait_run(run_id, timeout=120)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert [a.status for a in await attempt_rows(run_id, "a")] == ["succeeded"]
    assert '"outcome": "busy"' in worker.tail(400_000)


async def test_sigterm_lets_a_running_step_finish(chaos: Chaos) -> None:
    run_id = chaos.start_run("probe", width=1, sleep_ms=5000)
    worker = chaos.worker("graceful", concurrency=1)  # after the run: seen running
    await wait_step(run_id, "a", lambda s: s.status is StepStatus.RUNNING)
    assert worker.proc is not None
    os.kill(worker.proc.pid, signal.SIGTERM)  # warm shutdown: finish what is running
    worker.proc.wait(30)
    a = (await step_rows(run_id))["a"]
    assert a.status is StepStatus.SUCCEEDED and a.attempts == 1
    assert not any(s.status is StepStatus.RUNNING for s in (await step_rows(run_id)).values())
    chaos.worker("next")
    assert (await wait_run(run_id, timeout=60)).status is RunStatus.SUCCEEDED
