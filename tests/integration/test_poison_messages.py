"""Messages nobody should have sent: a worker refuses them (rejected without requeueing,
dead-lettered on RabbitMQ, kept in a list on Redis, counted, logged once) and keeps
serving, whether Celery or kombu's Redis transport could not parse them; messages that
parse but name an unknown run, key, map or generation change nothing; a run fails only
for a failure of one of its own steps. On Redis and on RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from kombu import Connection, Producer

from db.states import RunStatus
from tests.support import (
    WorkerProcess,
    attempt_rows,
    counter_values,
    on_both_brokers,
    run_row,
    step_rows,
    wait_run,
)
from workflows.runs.operations import start_run

pytestmark = [pytest.mark.usefixtures("worker"), on_both_brokers]

STEP = "reelflow.step.a"
EXPAND = "reelflow.expand_map"


def _publish(broker: str, body: Any, headers: dict[str, Any], **options: Any) -> None:
    """Put one message on the `default` step queue, as any client of the broker could
    (straight to the queue, as Celery sends on Redis)."""
    from reelflow.celery_app import app

    queue = app.amqp.queues["default"]
    with Connection(broker) as conn:
        Producer(conn.default_channel).publish(
            body, exchange="", routing_key=queue.name, declare=[queue],
            headers=headers, retry=True, **options,
        )  # fmt: skip


def _headers(task: str = STEP) -> dict[str, Any]:
    return {"task": task, "id": str(uuid.uuid4()), "lang": "py"}


#: (what, body, headers, publish options): each is refused before it reaches a step.
POISON: list[tuple[str, Any, dict[str, Any], dict[str, Any]]] = [
    ("a JSON object body", {"not": "celery"}, _headers(), {"serializer": "json"}),
    ("a pickle", ("a", 1), _headers(), {"serializer": "pickle"}),
    ("bytes that are not JSON", b"\x00{not json", _headers(),
     {"content_type": "application/json", "content_encoding": "utf-8"}),
    ("no task id", [[str(uuid.uuid4()), "a", 0], {}, {}], {"task": STEP}, {}),
    ("protocol 1", {"task": STEP, "id": "x", "args": 1}, {}, {}),
    ("an unknown task", [[], {}, {}], _headers("reelflow.step.nope"), {}),
    ("a run id that is no UUID", [["../../etc", "a", 0], {}, {}], _headers(), {}),
    ("a key that is no string", [[str(uuid.uuid4()), 5, 0], {}, {}], _headers(), {}),
    ("a generation that is a string", [[str(uuid.uuid4()), "a", "0"], {}, {}], _headers(), {}),
    ("keyword arguments", [[str(uuid.uuid4()), "a", 0], {"x": 1}, {}], _headers(), {}),
    ("the key of another step", [[str(uuid.uuid4()), "e", 0], {}, {}], _headers(), {}),
    ("a broken time limit", [[str(uuid.uuid4()), "a", 0], {}, {}],
     {**_headers(), "timelimit": "soon"}, {}),
    ("a chain that is no list", [[str(uuid.uuid4()), "a", 0], {}, {"chain": "x"}], _headers(), {}),
    ("an expander without a map name", [[str(uuid.uuid4()), None, 0], {}, {}],
     _headers(EXPAND), {}),
]  # fmt: skip


def _dead_letters(broker: str) -> int:
    from reelflow import broker as probe
    from reelflow.messages import DEAD_LETTER

    return probe.queue_depths((DEAD_LETTER,))[DEAD_LETTER]


async def test_poison_messages_are_refused_and_the_worker_keeps_serving(
    worker: WorkerProcess, broker_url: str
) -> None:
    dead_before = _dead_letters(broker_url)
    rejected_before = sum((await counter_values("messages_rejected")).values())
    for _what, body, headers, options in POISON:
        _publish(broker_url, body, headers, **options)
    # The same worker, still serving: a run started after the poison succeeds.
    run_id = (await start_run("probe", {"width": 2})).run.id
    run = await wait_run(run_id, worker=worker, timeout=60)
    assert run.status is RunStatus.SUCCEEDED, (run.error, worker.tail())
    assert worker.proc is not None and worker.proc.poll() is None, worker.tail()

    # Each one counted (the worker records its count with its next heartbeat) ...
    for _ in range(100):
        rejected = await counter_values("messages_rejected")
        if sum(rejected.values()) - rejected_before >= len(POISON):
            break
        await asyncio.sleep(0.1)
    assert sum(rejected.values()) - rejected_before == len(POISON), (rejected, worker.tail())
    assert {"malformed", "disallowed_content", "undecodable", "unknown_task",
            "invalid_args"} <= set(rejected)  # fmt: skip
    # ... logged once, as one line, never as a crash ...
    lines = [json.loads(line) for line in worker.log.read_text().splitlines() if line.strip()]
    refusals = [line for line in lines if line.get("event") == "message_rejected"]
    assert len(refusals) >= len(POISON)
    assert not [line for line in lines if line.get("level") == "critical"], worker.tail()
    # ... and kept for an operator to read: dead-lettered on RabbitMQ, listed on Redis.
    assert _dead_letters(broker_url) - dead_before == len(POISON)


def _envelope(headers: Any = None, **changes: Any) -> str:
    """A Redis queue entry as kombu writes one, with `changes` made to it."""
    entry: dict[str, Any] = {
        "body": json.dumps([[str(uuid.uuid4()), "a", 0], {}, {}]),
        "content-encoding": "utf-8", "content-type": "application/json",
        "headers": _headers() if headers is None else headers,
        "properties": {"delivery_tag": str(uuid.uuid4()), "body_encoding": "utf-8",
                       "delivery_info": {"exchange": "", "routing_key": "default"},
                       "priority": 0},
    }  # fmt: skip
    entry.update(changes)
    return json.dumps(entry)


#: Queue entries kombu's Redis transport itself could not make a message of.
RAW_POISON = [
    "not json",
    b"\xff\xfe not utf-8",
    json.dumps([1, 2]),
    _envelope(headers=[1, 2]),
    _envelope(headers="a string"),
    _envelope(properties=None),
    _envelope(properties={"body_encoding": "utf-8"}),
    _envelope(properties={"delivery_tag": ["x"], "body_encoding": "utf-8"}),
    _envelope(body="%%% not base64", properties={"delivery_tag": "t", "body_encoding": "base64"}),
]


async def test_redis_entries_that_are_no_message_are_refused_and_kept(
    worker: WorkerProcess, broker_url: str
) -> None:
    if broker_url.startswith("amqp"):
        pytest.skip("entries of a Redis list: RabbitMQ's client parses its own frames")
    import redis

    from reelflow.celery_app import app

    client = redis.Redis.from_url(broker_url)
    dead_before = _dead_letters(broker_url)
    rejected_before = sum((await counter_values("messages_rejected")).values())
    for entry in RAW_POISON:
        client.lpush(app.amqp.queues["default"].name, entry)
    run_id = (await start_run("probe", {"width": 2})).run.id
    run = await wait_run(run_id, worker=worker, timeout=60)
    assert run.status is RunStatus.SUCCEEDED, (run.error, worker.tail())
    assert worker.proc is not None and worker.proc.poll() is None, worker.tail()
    for _ in range(100):
        rejected = sum((await counter_values("messages_rejected")).values())
        if rejected - rejected_before >= len(RAW_POISON):
            break
        await asyncio.sleep(0.1)
    assert rejected - rejected_before == len(RAW_POISON), worker.tail()
    assert _dead_letters(broker_url) - dead_before == len(RAW_POISON)
    lines = [json.loads(line) for line in worker.log.read_text().splitlines() if line.strip()]
    assert not [line for line in lines if line.get("level") in ("critical", "error")], [
        line for line in lines if line.get("level") in ("critical", "error")
    ]


async def test_wellformed_messages_that_name_nothing_change_nothing(
    worker: WorkerProcess, broker_url: str
) -> None:
    run_id = (await start_run("probe", {"width": 2, "sleep_ms": 1500})).run.id
    generation = (await run_row(run_id)).generation
    live = str(run_id)
    for task, args in (
        ("a", [str(uuid.uuid4()), "a", 0]),  # an unknown run
        ("c", [live, "c[99]", generation]),  # an item that does not exist
        ("a", [live, "a", generation + 7]),  # a generation not sent yet
        ("e", [live, "e", generation]),  # a step whose inputs are not ready
    ):
        _publish(broker_url, [args, {}, {}], _headers(f"reelflow.step.{task}"))
    # Expander messages of the current generation that cannot expand: an unknown map, and
    # the real map before its source (b) has succeeded. Neither fails the run.
    for mapped in ("nope", "c"):
        body = [[live, mapped, generation], {}, {}]
        _publish(broker_url, body, _headers(EXPAND))

    run = await wait_run(run_id, worker=worker, timeout=60)
    assert run.status is RunStatus.SUCCEEDED, (run.error, worker.tail())
    steps = await step_rows(run_id)
    assert sorted(steps) == ["a", "b", "c[0]", "c[1]", "d", "e"]
    assert all(s.attempts == 1 for s in steps.values()), steps
    assert all(a.status == "succeeded" for a in await attempt_rows(run_id))
