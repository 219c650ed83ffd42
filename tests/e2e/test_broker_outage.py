"""With the broker down the API accepts a run at once (202, pending) and keeps its dispatch
intent; once the broker returns, the workers' relays publish it and the run completes, with
nobody resuming it. Uses a Redis of its own, which it stops."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.embedded import EmbeddedRedis, start_redis
from tests.support import ApiProcess, WorkerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = start_redis(tmp_path_factory.mktemp("redis"), persist=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stack(
    env: dict[str, str], own_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[httpx.Client, EmbeddedRedis]]:
    local = {**env, "REDIS_URL": own_redis.url}
    logs = Path(tmp_path_factory.mktemp("outage"))
    worker = WorkerProcess(local, logs / "worker.log", name="outage", concurrency=1)
    api = ApiProcess(local, logs / "api.log")
    worker.start()
    api.start()
    try:
        yield api.client(timeout=30), own_redis
    finally:
        api.stop()
        worker.stop()


def test_broker_outage_accepts_the_run_and_dispatches_it_when_the_broker_returns(
    stack: tuple[httpx.Client, EmbeddedRedis],
) -> None:
    client, redis_server = stack
    redis_server.stop()

    started = time.monotonic()
    response = client.post("/runs", json={"workflow": "probe", "params": {"width": 2}})
    elapsed = time.monotonic() - started
    assert response.status_code == 202, response.text
    assert elapsed < 5, elapsed
    assert response.json()["status"] == "pending"

    health = client.get("/health")
    assert health.status_code == 503 and health.json()["broker"]["ok"] is False
    assert health.json()["status"] == "unhealthy" and health.json()["database"]["ok"] is True
    assert health.json()["workers"]["ok"] is True  # alive: they beat into PostgreSQL
    assert health.headers["Retry-After"] == "5"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"] == "5"
    assert client.get("/livez").status_code == 200

    kept = client.get("/runs", params={"status": "pending"}).json()["items"]
    assert len(kept) == 1
    run_id = kept[0]["id"]

    # A second accepted run, cancelled before the broker returns, is never dispatched.
    doomed = client.post("/runs", json={"workflow": "probe", "params": {"width": 1}}).json()
    assert doomed["status"] == "pending"
    cancelled = client.post(f"/runs/{doomed['id']}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"

    restarted = start_redis(redis_server.data_dir, port=redis_server.port, persist=False)
    redis_server.process = restarted.process
    deadline = time.monotonic() + 60
    while client.get("/health").json()["workers"]["ok"] is not True:
        assert time.monotonic() < deadline, "worker did not reconnect"
        time.sleep(0.5)

    # Nobody resumes it: the intent written with the run is published by a relay.
    assert client.post(f"/runs/{run_id}/resume").status_code == 409  # on its way already
    while (run := client.get(f"/runs/{run_id}").json())["status"] != "succeeded":
        assert run["status"] in ("running", "pending"), run
        assert time.monotonic() < deadline + 60
        time.sleep(0.2)
    assert all(s["attempts"] == 1 for s in run["steps"])
    still = client.get(f"/runs/{doomed['id']}").json()
    assert still["status"] == "cancelled"
    assert all(s["attempts"] == 0 for s in still["steps"])
