"""A real Flower watching a real worker: once runs end, no task shows STARTED (expanders
that replace themselves, duplicate and stale deliveries, cancelled steps included)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from cli.embedded import free_port
from cli.processes import stop_groups
from db.states import RunStatus, StepStatus
from reelflow.celery_app import app
from tests.support import ROOT, WorkerProcess, wait_run, wait_step
from workflows.runs.operations import cancel_run, retry_step, start_run

pytestmark = pytest.mark.slow
flower = pytest.importorskip("flower", reason="Flower is installed with the test extra")

AUTH = ("ops", "s3cret-for-tests")


@pytest.fixture(scope="module")
def flower_url(
    env: dict[str, str], worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = free_port()
    log = Path(tmp_path_factory.mktemp("flower")) / "flower.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "reelflow", "flower",
             f"--port={port}", "--address=127.0.0.1"],
            # As compose's flower profile configures it: basic auth from the environment.
            env={**os.environ, **env, "FLOWER_BASIC_AUTH": ":".join(AUTH)},
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/workers", auth=AUTH, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        time.sleep(2)  # Flower has subscribed to the worker's events
        yield url
    finally:
        stop_groups([proc], 10)


def _tasks(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/api/tasks", auth=AUTH, timeout=10).json()  # type: ignore[no-any-return]


def test_the_rest_api_answers_with_basic_auth_and_refuses_without(flower_url: str) -> None:
    assert httpx.get(f"{flower_url}/api/workers", timeout=10).status_code == 401
    assert (
        httpx.get(f"{flower_url}/api/workers", auth=("ops", "wrong"), timeout=10).status_code == 401
    )
    workers = httpx.get(f"{flower_url}/api/workers", auth=AUTH, timeout=10)
    assert workers.status_code == 200 and workers.json(), workers.text


async def test_no_task_stays_started_after_its_run_ends(
    flower_url: str, worker: WorkerProcess, env: dict[str, str]
) -> None:
    # An ordinary run: an expander replaces itself with the chord.
    plain = (await start_run("probe", {"width": 2})).run.id
    # A duplicate delivery of a running step, and a stale message after a retry.
    dup = (await start_run("probe", {"width": 1, "sleep_ms": 1500})).run.id
    running = await wait_step(dup, "a", lambda s: s.status is StepStatus.RUNNING)
    client = redis.Redis.from_url(env["REDIS_URL"])
    for raw in client.hvals("unacked"):
        payload = json.loads(raw)[0]
        if payload["headers"]["id"] == running.celery_task_id:
            client.rpush("default", json.dumps(payload))
    assert (await wait_run(dup, worker=worker, timeout=60)).status is RunStatus.SUCCEEDED
    await retry_step(dup, "e", actor="test")
    app.signature(
        "reelflow.step.e",
        args=(str(dup), "e", 0),
        immutable=True,
        task_id=str(uuid.uuid4()),
        ignore_result=True,
    ).apply_async()  # fmt: skip  (an id of its own: no later success of e can mask it)
    # A cancelled run whose running step stops early.
    stopped = (await start_run("probe", {"width": 1, "sleep_ms": 3000})).run.id
    await wait_step(stopped, "a", lambda s: s.status is StepStatus.RUNNING)
    await cancel_run(stopped, actor="test")
    for run_id in (plain, dup):
        assert (await wait_run(run_id, worker=worker, timeout=60)).status is RunStatus.SUCCEEDED

    deadline = time.monotonic() + 20
    while True:  # events arrive asynchronously: give Flower a moment
        tasks = _tasks(flower_url)
        ours = {
            t: v for t, v in tasks.items() if _run_of(v) in {str(plain), str(dup), str(stopped)}
        }
        started = {t: (v.get("name"), v.get("args")) for t, v in ours.items()
                   if v.get("state") in ("STARTED", "RECEIVED")}  # fmt: skip
        if not started or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert ours, f"Flower saw none of our tasks: {list(tasks)[:5]}"
    assert not started, f"Flower shows tasks of finished runs as running: {started}"
    states = {v.get("state") for v in ours.values()}
    assert {"SUCCESS", "IGNORED", "REPLACED"} <= states, states  # REVOKED: the cancelled step


def _run_of(task: dict[str, Any]) -> str | None:
    args = str(task.get("args") or "")
    for char in "()',=":
        args = args.replace(char, " ")
    for part in args.split():
        try:
            return str(uuid.UUID(part))
        except ValueError:
            continue
    return None
