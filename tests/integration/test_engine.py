"""The durable step engine against real PostgreSQL, a real worker process, and each broker:
Redis, and RabbitMQ when one answers."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import uuid
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Producer, Queue

from db.states import STEP_IN_FLIGHT, RunStatus, StepStatus
from reelflow.errors import RunBusy, RunStateConflict
from tests.support import (
    WorkerProcess,
    attempt_rows,
    on_both_brokers,
    run_row,
    step_rows,
    wait_run,
    wait_step,
)
from workflows.runs.operations import cancel_run, resume_run, retry_step, start_run

pytestmark = [pytest.mark.usefixtures("worker"), on_both_brokers]


async def _start(faults: dict[str, int] | None = None, **params: object) -> uuid.UUID:
    result = await start_run("probe", params, faults=faults)
    return result.run.id


async def _settled(run_id: uuid.UUID, timeout: float = 30) -> None:
    """Wait until no step of the run is in flight (siblings of a failed step finish)."""
    for _ in range(int(timeout * 10)):
        if not any(s.status in STEP_IN_FLIGHT for s in (await step_rows(run_id)).values()):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("steps still in flight")


async def test_probe_run_succeeds_once_per_step(worker: WorkerProcess) -> None:
    run_id = await _start(width=5)
    run = await wait_run(run_id, worker=worker)
    assert run.status is RunStatus.SUCCEEDED, run.error
    steps = await step_rows(run_id)
    assert sorted(steps) == sorted(["a", "b", "c[0]", "c[1]", "c[2]", "c[3]", "c[4]", "d", "e"])
    assert {k: (s.status, s.attempts) for k, s in steps.items()} == {
        k: (StepStatus.SUCCEEDED, 1) for k in steps
    }
    assert steps["d"].output["seen"] == [f"c[{i}]" for i in range(5)]
    assert steps["d"].output["total"] == sum(2 * (7 + i) for i in range(5))
    attempts = await attempt_rows(run_id)
    assert sorted(a.step_key for a in attempts) == sorted(steps)
    assert all(a.status == "succeeded" and a.worker_hostname for a in attempts)
    assert all(a.duration_ms is not None and a.celery_task_id for a in attempts)


async def test_failed_map_item_resumes_without_rerunning_upstream(worker: WorkerProcess) -> None:
    run_id = await _start(width=5, faults={"c[2]": 1}, max_attempts=1)
    run = await wait_run(run_id, worker=worker)
    assert run.status is RunStatus.FAILED
    assert run.error and run.error["step"] == "c[2]"
    await _settled(run_id)
    steps = await step_rows(run_id)
    assert steps["c[2]"].status is StepStatus.FAILED
    assert steps["c[2]"].error and steps["c[2]"].error["type"] == "InjectedFailure"
    assert (steps["d"].status, steps["d"].attempts) == (StepStatus.PENDING, 0)
    assert (steps["e"].status, steps["e"].attempts) == (StepStatus.PENDING, 0)
    [failed] = await attempt_rows(run_id, "c[2]")
    assert failed.status == "failed" and failed.error_type == "InjectedFailure"
    assert failed.traceback and "InjectedFailure" in failed.traceback

    await resume_run(run_id, actor="test")
    run = await wait_run(run_id, worker=worker)
    assert run.status is RunStatus.SUCCEEDED, run.error
    attempts = {k: s.attempts for k, s in (await step_rows(run_id)).items()}
    assert attempts == {
        "a": 1, "b": 1, "c[0]": 1, "c[1]": 1, "c[3]": 1, "c[4]": 1, "c[2]": 2, "d": 1, "e": 1,
    }  # fmt: skip


async def test_transient_failures_retry_with_backoff(worker: WorkerProcess) -> None:
    run_id = await _start(width=2, faults={"b": 2}, max_attempts=3)
    run = await wait_run(run_id, worker=worker)
    assert run.status is RunStatus.SUCCEEDED, run.error
    b = await attempt_rows(run_id, "b")
    assert [a.status for a in b] == ["retrying", "retrying", "succeeded"]
    gaps = [
        (nxt.started_at - prev.finished_at).total_seconds()
        for prev, nxt in itertools.pairwise(b)
        if prev.finished_at
    ]
    # Probe policy: base 0.2 s doubling, at least half of it always waited.
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19, gaps


async def test_retry_step_reruns_it_and_downstream_only(worker: WorkerProcess) -> None:
    run_id = await _start(width=3)
    assert (await wait_run(run_id, worker=worker)).status is RunStatus.SUCCEEDED
    await retry_step(run_id, "c[1]", actor="test")
    run = await wait_run(run_id, worker=worker)
    assert run.status is RunStatus.SUCCEEDED, run.error
    attempts = {k: s.attempts for k, s in (await step_rows(run_id)).items()}
    assert attempts == {"a": 1, "b": 1, "c[0]": 1, "c[1]": 2, "c[2]": 1, "d": 2, "e": 2}


class Duplicator:
    """Delivers a task's message again, headers (chord membership) and all, on either
    broker: from Redis's unacked hash, or from a tap queue bound beside RabbitMQ's
    `default` queue (a copy of every message routed there)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.broker = env.get("CELERY_BROKER_URL", env["REDIS_URL"])
        self.amqp = self.broker.startswith("amqp")
        self.message: Any = None
        if self.amqp:
            self.conn = Connection(self.broker)
            exchange = Exchange("default", type="topic")
            self.tap = Queue(f"tap-{uuid.uuid4().hex[:6]}", exchange, "default", auto_delete=True)
            self.tap = self.tap(self.conn.default_channel)
            self.tap.declare()

    def capture(self, task_id: str) -> None:
        if not self.amqp:
            client = redis.Redis.from_url(self.broker)
            for raw in client.hvals("unacked"):
                payload, _exchange, _routing_key = json.loads(raw)
                if payload["headers"]["id"] == task_id:
                    self.message = json.dumps(payload).encode()
                    return
            raise AssertionError(f"no unacked message for {task_id}")
        while (message := self.tap.get(no_ack=True)) is not None:
            if message.headers.get("id") == task_id:
                self.message = message
                return
        raise AssertionError(f"the tap saw no message for {task_id}")

    def deliver_again(self) -> None:
        if not self.amqp:
            redis.Redis.from_url(self.broker).rpush("default", self.message)
            return
        m = self.message
        producer = Producer(self.conn.default_channel, exchange=Exchange("default", type="topic"))
        producer.publish(
            m.body, routing_key="default", headers=m.headers,
            content_type=m.content_type, content_encoding=m.content_encoding,
            correlation_id=m.properties.get("correlation_id"),
            reply_to=m.properties.get("reply_to"),
        )  # fmt: skip

    def close(self) -> None:
        if self.amqp:
            self.tap.delete()
            self.conn.release()


async def test_killed_worker_process_is_redelivered_and_completes_once(
    worker: WorkerProcess,
) -> None:
    run_id = await _start(width=1, sleep_ms=1500)
    running = await wait_step(run_id, "b", lambda s: s.status is StepStatus.RUNNING)
    assert running.lease_owner
    pid = int(running.lease_owner.rsplit("/", 1)[1])
    os.kill(pid, signal.SIGKILL)

    run = await wait_run(run_id, worker=worker, timeout=60)
    assert run.status is RunStatus.SUCCEEDED, run.error
    b = await attempt_rows(run_id, "b")
    assert [a.status for a in b] == ["lost", "succeeded"]
    steps = await step_rows(run_id)
    assert steps["b"].output["pid"] != pid
    assert steps["b"].output["attempt"] == 2


async def test_resume_and_retry_refused_while_running_and_cancel_stops(
    worker: WorkerProcess,
) -> None:
    run_id = await _start(width=2, sleep_ms=1000)
    await wait_step(run_id, "a", lambda s: s.status is StepStatus.RUNNING)
    with pytest.raises(RunBusy):
        await resume_run(run_id)
    with pytest.raises(RunBusy):
        await retry_step(run_id, "a")

    await cancel_run(run_id, actor="test")
    run = await run_row(run_id)
    assert run.status is RunStatus.CANCELLED
    await asyncio.sleep(2.5)  # long enough for b, c and d to have run had they not stopped
    steps = await step_rows(run_id)
    assert steps["b"].attempts == 0 and steps["e"].attempts == 0
    assert all(s.status is StepStatus.CANCELLED for s in steps.values())
    assert all(a.status != "running" for a in await attempt_rows(run_id))
    with pytest.raises(RunStateConflict):
        await cancel_run(run_id)

    # A cancelled run resumes from where it stopped.
    await resume_run(run_id, actor="test")
    run = await wait_run(run_id, worker=worker, timeout=60)
    assert run.status is RunStatus.SUCCEEDED, run.error


async def test_a_step_that_keeps_losing_its_worker_is_not_run_forever(
    worker: WorkerProcess,
) -> None:
    run_id = await _start(width=1, sleep_ms=1500, max_attempts=1)
    running = await wait_step(run_id, "a", lambda s: s.status is StepStatus.RUNNING)
    assert running.lease_owner
    os.kill(int(running.lease_owner.rsplit("/", 1)[1]), signal.SIGKILL)

    run = await wait_run(run_id, worker=worker, timeout=60)
    assert run.status is RunStatus.FAILED
    attempts = await attempt_rows(run_id, "a")
    assert [a.status for a in attempts] == ["lost", "failed"]
    assert attempts[1].error_type == "PermanentStepError"
    assert (await step_rows(run_id))["b"].attempts == 0


async def test_cancel_reaches_a_step_waiting_to_retry(worker: WorkerProcess) -> None:
    run_id = await _start(width=1, faults={"a": 4}, max_attempts=5)
    await wait_step(run_id, "a", lambda s: s.status is StepStatus.RETRYING)
    await cancel_run(run_id, actor="test")
    before = (await step_rows(run_id))["a"]
    assert before.status is StepStatus.CANCELLED
    await asyncio.sleep(2)  # past the countdown: the retry delivery changes nothing
    after = (await step_rows(run_id))["a"]
    assert (after.status, after.attempts) == (StepStatus.CANCELLED, before.attempts)
