"""What a worker logs while it runs steps, read from a real worker's JSON lines: every line
written for a delivery (Celery's own `received` and `succeeded` too) names its run, step
and attempt, and the outcomes a run records (a cancel, a step that fails for good) read as
at most one WARNING, never an ERROR with a traceback that would page someone."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import ApiProcess, WorkerProcess

pytestmark = pytest.mark.slow

#: Lines a worker writes outside any delivery: its start, heartbeats, its relay and
#: reconciler (the maintenance thread).
_OUTSIDE = (
    "celery.apps.worker", "celery.worker.consumer", "reelflow.worker", "reelflow.maintenance",
    "reelflow.relay", "reelflow.reconciler", "py.warnings",
)  # fmt: skip


@pytest.fixture(scope="module")
def client(api: ApiProcess) -> Iterator[httpx.Client]:
    with api.client(timeout=30) as client:
        yield client


def _lines_since(worker: WorkerProcess, offset: int) -> list[dict[str, Any]]:
    text = worker.log.read_bytes()[offset:].decode(errors="replace")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _settled(client: httpx.Client, run_id: str, *statuses: str) -> dict[str, Any]:
    """The run once it reached one of `statuses` and none of its steps runs any more."""
    deadline = time.monotonic() + 60
    while True:
        run = client.get(f"/runs/{run_id}").json()
        busy = any(s["status"] in ("queued", "running", "retrying") for s in run["steps"])
        if run["status"] in statuses and not busy:
            time.sleep(1.5)  # the deliveries' last lines (chord joins, trace) reach the log
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.2)


def _start(
    client: httpx.Client, params: dict[str, Any], faults: dict[str, int] | None = None
) -> str:
    body: dict[str, Any] = {"workflow": "probe", "params": params}
    if faults:
        body["faults"] = faults
    created = client.post("/runs", json=body)
    assert created.status_code in (201, 202), created.text
    return str(created.json()["id"])


def _in_deliveries(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in lines if not str(r.get("logger", "")).startswith(_OUTSIDE)]


def test_lines_of_a_run_name_its_run_step_and_attempt(
    client: httpx.Client, worker: WorkerProcess
) -> None:
    offset = worker.log.stat().st_size
    run_id = _start(client, {"width": 4})
    _settled(client, run_id, "succeeded")
    lines = _in_deliveries(_lines_since(worker, offset))
    celery = [r for r in lines if str(r.get("logger")).startswith("celery")]
    assert any("received" in r["event"] for r in celery), celery
    assert any("succeeded in" in r["event"] for r in celery), celery
    named = [r for r in lines if r.get("run_id") == run_id and r.get("step")]
    assert len(named) / len(lines) > 0.95, [r for r in lines if r not in named]
    # Once the attempt is known (claimed), every line carries it: Celery's trace lines too.
    traced = [
        r for r in lines if r.get("logger") == "celery.app.trace" and r.get("step") != "expand:c"
    ]
    assert traced and all(r.get("attempt") == 1 for r in traced), traced
    assert {r["step"] for r in named} >= {"a", "b", "c", "d", "e"}
    assert not [r for r in lines if r["level"] in ("warning", "error", "critical")]


def test_a_step_that_fails_for_good_logs_one_warning_and_no_error(
    client: httpx.Client, worker: WorkerProcess
) -> None:
    offset = worker.log.stat().st_size
    # c[1] fails on its only attempt while its siblings succeed: the chord's join fails too.
    run_id = _start(client, {"width": 3, "max_attempts": 1}, faults={"c[1]": 1})
    run = _settled(client, run_id, "failed")
    assert {s["key"]: s["status"] for s in run["steps"]}["c[1]"] == "failed"
    lines = _in_deliveries(_lines_since(worker, offset))
    loud = [r for r in lines if r["level"] not in ("debug", "info")]
    assert [(r["level"], r["event"]) for r in loud] == [("warning", "step_failed")], loud
    assert loud[0]["run_id"] == run_id and loud[0]["step"] == "c" and loud[0]["attempt"] == 1
    assert not [r for r in lines if "exception" in r], "no traceback for an expected outcome"
    # Celery still records the delivery as failed (monitors see it), in one quiet line.
    raised = [r for r in lines if "raised expected" in str(r.get("event"))]
    assert raised and raised[0]["step_key"] == "c[1]", lines


def test_a_cancelled_run_logs_no_error(client: httpx.Client, worker: WorkerProcess) -> None:
    offset = worker.log.stat().st_size
    run_id = _start(client, {"width": 4, "sleep_ms": 3000})
    deadline = time.monotonic() + 60
    while not any(
        s["status"] == "running" and s["key"].startswith("c[")
        for s in client.get(f"/runs/{run_id}").json()["steps"]
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert client.post(f"/runs/{run_id}/cancel").status_code == 202
    _settled(client, run_id, "cancelled")
    time.sleep(3)  # the cancelled renders' own sleeps end
    lines = _lines_since(worker, offset)
    errors = [r for r in lines if r["level"] in ("error", "critical")]
    assert not errors, errors
    assert len([r for r in lines if r["level"] == "warning"]) <= 1, lines
