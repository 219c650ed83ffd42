"""Time waited in the queue is recorded per attempt (`enqueued_at` beside `started_at`), so
it stays right after a resume or a retry, and /metrics says it per workflow, step and
queue, with every step-level family labelled the same way and promtool satisfied."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.support import ApiProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(api: ApiProcess) -> Iterator[httpx.Client]:
    with api.client(timeout=30) as client:
        yield client


def _settled(client: httpx.Client, run_id: str, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        run = client.get(f"/runs/{run_id}").json()
        busy = any(s["status"] in ("queued", "running", "retrying") for s in run["steps"])
        if run["status"] in statuses and not busy:
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.1)


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def test_waited_is_recorded_and_a_resume_does_not_stretch_it(client: httpx.Client) -> None:
    created = client.post(
        "/runs",
        json={"workflow": "probe", "params": {"width": 2, "max_attempts": 1},
              "faults": {"c[1]": 1}},
    )  # fmt: skip
    run_id = created.json()["id"]
    _settled(client, run_id, "failed")
    time.sleep(3)  # the run sits failed: none of this is time spent in a queue
    assert client.post(f"/runs/{run_id}/resume").status_code == 202
    _settled(client, run_id, "succeeded")

    timeline = client.get(f"/runs/{run_id}/attempts").json()
    assert timeline and all(a["enqueued_at"] and a["waited_ms"] is not None for a in timeline)
    for a in timeline:
        recorded = (_at(a["started_at"]) - _at(a["enqueued_at"])).total_seconds() * 1000
        assert a["waited_ms"] == pytest.approx(max(0.0, recorded), abs=1)
    again = [a for a in timeline if a["step_key"] == "c[1]" and a["attempt"] == 2]
    assert again and again[0]["waited_ms"] < 2500, again  # the 3 s it sat failed are not in it
    first = next(a for a in timeline if a["step_key"] == "c[1]" and a["attempt"] == 1)
    assert _at(again[0]["enqueued_at"]) > _at(first["finished_at"])  # sent by the resume

    attempts = client.get(f"/runs/{run_id}/steps/c[1]/attempts").json()
    assert [a["enqueued_at"] is not None for a in attempts] == [True, True]


def test_a_retry_waits_from_the_end_of_its_countdown(client: httpx.Client) -> None:
    created = client.post(
        "/runs",
        json={"workflow": "probe", "params": {"width": 1, "max_attempts": 3},
              "faults": {"a": 1}},
    )  # fmt: skip
    run_id = created.json()["id"]
    _settled(client, run_id, "succeeded")
    first, second = client.get(f"/runs/{run_id}/steps/a/attempts").json()
    assert first["status"] == "retrying" and second["status"] == "succeeded"
    # The retry's message could be taken only once its countdown (0.1 s at least) was over.
    assert (_at(second["enqueued_at"]) - _at(first["finished_at"])).total_seconds() >= 0.09


def _samples(scrape: str, family: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in scrape.splitlines()
        if line.startswith(family + "{")
    }


def test_metrics_are_labelled_by_workflow_step_and_queue(client: httpx.Client) -> None:
    run_id = client.post("/runs", json={"workflow": "probe", "params": {"width": 3}}).json()["id"]
    _settled(client, run_id, "succeeded")
    scrape = client.get("/metrics").text
    probe_c = 'queue="default",step="c",workflow="probe"'
    waits = _samples(scrape, "reelflow_step_queue_wait_seconds_count")
    assert waits[f"reelflow_step_queue_wait_seconds_count{{{probe_c}}}"] >= 3
    assert not [k for k in waits if "c[" in k], "map items fold into their step"
    assert f'reelflow_step_queue_wait_seconds_bucket{{le="+Inf",{probe_c}}}' in scrape
    assert f'reelflow_step_duration_seconds_bucket{{le="+Inf",{probe_c}}}' in scrape
    assert f'reelflow_step_attempts_total{{outcome="succeeded",{probe_c}}}' in scrape
    assert 'reelflow_runs_finished_total{status="succeeded",workflow="probe"}' in scrape
    assert 'reelflow_runs_active{status="pending",workflow="short_video"} 0.0' in scrape
    assert (
        'reelflow_steps_in_flight{queue="gpu",status="running",step="render_scene",'
        'workflow="short_video"} 0.0'
    ) in scrape
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's prometheus package): not linted")
    linted = subprocess.run(
        [promtool, "check", "metrics"], input=scrape, capture_output=True, text=True
    )
    assert linted.returncode == 0 and not linted.stdout.strip(), linted.stdout + linted.stderr
