"""A run's history (GET /runs/{id}/history, `reelflow history RUN`) tells what happened to
it and who did it: operators' actions, steps that failed or will retry (by the worker that
ran them) and attempts lost with a dead worker (released by the reconciler, or taken over by
the worker that claimed the step next), oldest first, against real workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ROOT, ApiProcess, WorkerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(env: dict[str, str]) -> dict[str, str]:
    """A worker is dead 3 s after its last heartbeat, and reconciliation runs every second."""
    return {**env, "WORKER_DEAD_AFTER_SECONDS": "3", "RECONCILE_INTERVAL_SECONDS": "1"}


@pytest.fixture(scope="module")
def lone_api(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    """The API with no worker yet: each test starts the workers it needs."""
    proc = ApiProcess(env, Path(tmp_path_factory.mktemp("api")) / "api.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


class Workers:
    """Workers a test starts by name, each on both queues with one process."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.started: dict[str, WorkerProcess] = {}

    def start(self, name: str) -> WorkerProcess:
        unique = f"{name}-{uuid.uuid4().hex[:4]}"
        proc = WorkerProcess(self.env, self.logs / f"{unique}.log", name=unique, concurrency=1)
        proc.start()
        self.started[name] = proc
        return proc


@pytest.fixture(scope="module")
def workers(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    started = Workers(env, tmp_path_factory.mktemp("workers"))
    try:
        yield started
    finally:
        for proc in started.started.values():
            proc.stop()


def _wait(client: httpx.Client, run_id: str, done: Any, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not done(run := client.get(f"/runs/{run_id}").json()):
        assert time.monotonic() < deadline, run
        time.sleep(0.2)
    return run


def _history(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    found = client.get(f"/runs/{run_id}/history")
    assert found.status_code == 200, found.text
    entries: list[dict[str, Any]] = found.json()
    times = [datetime.fromisoformat(e["created_at"]) for e in entries]
    assert times == sorted(times), entries  # oldest first
    assert all({"kind", "actor", "detail", "created_at"} <= e.keys() for e in entries)
    return entries


def test_a_dead_workers_attempt_is_listed_as_lost_with_who_recovered_it(
    lone_api: ApiProcess, workers: Workers
) -> None:
    client = lone_api.client(timeout=30)
    body = {"workflow": "probe", "params": {"width": 1, "sleep_ms": 4000}}
    run_id = client.post("/runs", json=body).json()["id"]  # its message waits for a worker
    doomed = workers.start("doomed")
    _wait(client, run_id, lambda r: any(s["key"] == "a" and s["status"] == "running"
                                        for s in r["steps"]))  # fmt: skip
    doomed.kill()
    rescuer = workers.start("rescuer")
    run = _wait(client, run_id, lambda r: r["status"] in ("succeeded", "failed"), timeout=120)
    assert run["status"] == "succeeded", run["error"]

    entries = _history(client, run_id)
    kinds = [e["kind"] for e in entries]
    assert kinds[0] == "created" and entries[0]["actor"] == "api"
    [lost] = [e for e in entries if e["kind"] == "step_lost"]
    assert (lost["step"], lost["attempt"]) == ("a", 1), lost
    assert lost["detail"]["worker"] == doomed.name
    assert lost["detail"]["error_type"] == "WorkerLost"
    # Released by the reconciler (then a requeue), or taken over by the rescuer's claim.
    assert lost["actor"] in ("reconciler", f"worker:{rescuer.name}"), lost
    if lost["actor"] == "reconciler":
        after = entries[entries.index(lost) + 1]
        assert (after["kind"], after["actor"]) == ("reconciled", "reconciler"), entries
        assert after["detail"]["action"] == "requeued" and after["detail"]["lost_attempts"] == ["a"]
    assert not {"step_failed", "step_retrying"} & set(kinds), entries


def test_failures_retries_and_a_resume_are_listed_in_order_with_their_actors(
    lone_api: ApiProcess, env: dict[str, str], workers: Workers
) -> None:
    steady = workers.started.get("rescuer") or workers.start("rescuer")
    client = lone_api.client(timeout=30)
    body = {
        "workflow": "probe",
        "params": {"width": 1, "max_attempts": 2},
        "faults": {"a": 1, "c[0]": 2},  # a fails once then succeeds; c[0] fails twice
    }
    run_id = client.post("/runs", json=body).json()["id"]
    run = _wait(client, run_id, lambda r: r["status"] in ("succeeded", "failed"))
    assert run["status"] == "failed" and run["error"]["step"] == "c[0]", run
    resumed = client.post(f"/runs/{run_id}/resume")
    assert resumed.status_code == 202, resumed.text
    _wait(client, run_id, lambda r: r["status"] == "succeeded")

    entries = _history(client, run_id)
    summary = [(e["kind"], e["step"], e["attempt"], e["actor"]) for e in entries]
    by = f"worker:{steady.name}"
    assert summary == [
        ("created", None, None, "api"),
        ("step_retrying", "a", 1, by),
        ("step_retrying", "c[0]", 1, by),
        ("step_failed", "c[0]", 2, by),
        ("resumed", None, None, "api"),
    ], summary
    failed = entries[3]["detail"]
    assert failed["error_type"] == "InjectedFailure", failed
    assert "injected failure 2 of 2 for c[0]" in failed["message"]
    assert failed["queue"] == "default" and failed["duration_ms"] >= 0

    shown = subprocess.run(
        [sys.executable, "-m", "reelflow", "history", run_id, "--json"],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert [(e["kind"], e["step"]) for e in json.loads(shown.stdout)] == [
        (k, s) for k, s, _, _ in summary
    ]
    table = subprocess.run(
        [sys.executable, "-m", "reelflow", "history", run_id],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "step_failed" in table.stdout and "c[0] #2" in table.stdout
