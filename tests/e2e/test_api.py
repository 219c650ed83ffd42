"""Every endpoint over real HTTP, against a real database, broker and worker."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from typing import Any

import httpx
import pytest

from tests.support import ApiProcess

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def client(api: ApiProcess) -> httpx.Client:
    return api.client(timeout=15)


def wait_status(client: httpx.Client, run_id: str, wanted: set[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = client.get(f"/runs/{run_id}").json()
        if run["status"] in wanted:
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.1)


def wait_idle(client: httpx.Client, run_id: str, timeout: float = 30) -> dict:
    """Until no step is in flight (siblings of a failed step finish first)."""
    deadline = time.monotonic() + timeout
    while True:
        run = client.get(f"/runs/{run_id}").json()
        if not any(s["status"] in ("queued", "running", "retrying") for s in run["steps"]):
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.1)


def attempts_of(run: dict[str, Any]) -> dict[str, int]:
    return {s["key"]: s["attempts"] for s in run["steps"]}


def test_probe_failed_inspected_resumed_and_retried_over_http(client: httpx.Client) -> None:
    created = client.post(
        "/runs",
        json={
            "workflow": "probe",
            "params": {"width": 5, "max_attempts": 1},
            "faults": {"c[2]": 1},
        },
    )
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]

    assert wait_status(client, run_id, {"failed"})["error"]["step"] == "c[2]"
    run = wait_idle(client, run_id)
    steps = {s["key"]: s for s in run["steps"]}
    assert steps["c[2]"]["status"] == "failed" and steps["d"]["status"] == "pending"

    history = client.get(f"/runs/{run_id}/steps/c[2]/attempts").json()
    assert len(history) == 1
    assert history[0]["error_type"] == "InjectedFailure"
    assert "Traceback" in history[0]["traceback"]
    assert history[0]["worker_hostname"]

    plan = client.post(f"/runs/{run_id}/resume", params={"dry_run": "true"})
    assert plan.status_code == 200
    assert sorted(plan.json()["run"]) == ["c[2]", "d", "e"]
    assert "succeeded" in plan.json()["skip"]["a"]

    resumed = client.post(f"/runs/{run_id}/resume")
    assert resumed.status_code == 202, resumed.text
    run = wait_status(client, run_id, {"succeeded"})
    assert attempts_of(run) == {
        "a": 1, "b": 1, "c[0]": 1, "c[1]": 1, "c[2]": 2, "c[3]": 1, "c[4]": 1, "d": 1, "e": 1,
    }  # fmt: skip

    retried = client.post(f"/runs/{run_id}/steps/c[1]/retry")
    assert retried.status_code == 202
    run = wait_status(client, run_id, {"succeeded"})
    counts = attempts_of(run)
    assert (counts["c[1]"], counts["d"], counts["e"], counts["a"], counts["c[0]"]) == (
        2,
        2,
        2,
        1,
        1,
    )

    events = [e for e in client.get(f"/runs/{run_id}/steps").json()]
    assert len(events) == 9


def test_idempotency_key_returns_the_same_run(client: httpx.Client) -> None:
    body = {"workflow": "probe", "params": {"width": 1}}
    first = client.post("/runs", json=body, headers={"Idempotency-Key": "same-key-1"})
    again = client.post("/runs", json=body, headers={"Idempotency-Key": "same-key-1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    wait_status(client, first.json()["id"], {"succeeded"})


def test_server_sent_events_follow_a_run_to_its_end(client: httpx.Client) -> None:
    run_id = client.post("/runs", json={"workflow": "probe", "params": {"width": 2}}).json()["id"]
    seen: list[tuple[str, dict[str, Any]]] = []
    with client.stream("GET", f"/runs/{run_id}/events", timeout=60) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                seen.append((kind, json.loads(line[6:])))
    assert seen[-1] == ("run", {"status": "succeeded"})
    assert ("step", {"key": "e", "status": "succeeded", "attempts": 1}) in seen


def test_state_conflicts_and_unknowns(client: httpx.Client) -> None:
    run_id = client.post(
        "/runs", json={"workflow": "probe", "params": {"width": 1, "sleep_ms": 800}}
    ).json()["id"]
    busy = client.post(f"/runs/{run_id}/resume")
    assert busy.status_code == 409
    assert busy.headers["content-type"] == PROBLEM
    assert busy.json()["run_status"] == "running" and busy.json()["code"] == "run_busy"
    assert client.post(f"/runs/{run_id}/steps/a/retry").status_code == 409

    cancelled = client.post(f"/runs/{run_id}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert client.post(f"/runs/{run_id}/cancel").status_code == 409

    missing = "00000000-0000-0000-0000-000000000000"
    for method, path in [
        ("GET", f"/runs/{missing}"),
        ("GET", f"/runs/{missing}/steps"),
        ("POST", f"/runs/{missing}/resume"),
        ("POST", f"/runs/{missing}/cancel"),
        ("GET", f"/runs/{run_id}/steps/nope/attempts"),
        ("POST", f"/runs/{run_id}/steps/nope/retry"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 404, (path, response.text)
        assert response.headers["content-type"] == PROBLEM


def test_bad_params_name_the_field(client: httpx.Client) -> None:
    bad = client.post("/runs", json={"workflow": "probe", "params": {"width": "wide"}})
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM
    assert bad.json()["errors"][0]["field"] == "width"
    unknown = client.post("/runs", json={"workflow": "nope", "params": {}})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "workflow"
    assert client.post("/runs", content=b"{not json").status_code == 422


def test_listing_filters_and_pages(client: httpx.Client) -> None:
    for _ in range(3):
        client.post("/runs", json={"workflow": "probe", "params": {"width": 1}})
    page = client.get("/runs", params={"workflow": "probe", "limit": 2}).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = client.get("/runs", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert not {r["id"] for r in rest["items"]} & {r["id"] for r in page["items"]}
    failed = client.get("/runs", params={"status": "cancelled"}).json()["items"]
    assert all(r["status"] == "cancelled" for r in failed)
    assert client.get("/runs", params={"status": "nope"}).status_code == 422


def test_workflows_health_and_metrics(client: httpx.Client) -> None:
    workflows = {w["name"]: w for w in client.get("/workflows").json()}
    probe = workflows["probe"]
    assert [s["name"] for s in probe["steps"]] == ["a", "b", "c", "d", "e"]
    assert probe["steps"][2]["mapped_over"] == "b.items"
    assert "width" in probe["params_schema"]["properties"]

    health = client.get("/health")
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] and body["broker"]["ok"] and body["workers"]["names"]
    assert all(body["workers"]["queues"][q] for q in ("default", "gpu"))

    assert client.get("/livez").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"

    wait_status(
        client, client.post("/runs", json={"workflow": "probe"}).json()["id"], {"succeeded"}
    )
    metrics = client.get("/metrics").text
    assert 'reelflow_runs_finished_total{status="succeeded",workflow="probe"}' in metrics
    assert 'reelflow_runs_active{status="pending",workflow="probe"}' in metrics  # zeros present
    a = 'queue="default",step="a",workflow="probe"'
    assert f'reelflow_step_attempts_total{{outcome="succeeded",{a}}}' in metrics
    assert f'reelflow_step_duration_seconds_bucket{{le="+Inf",{a}}}' in metrics
    assert 'reelflow_queue_depth{queue="gpu"}' in metrics
    assert 'reelflow_workers_online{queue="default"} 1.0' in metrics
    assert "http_requests_total" in metrics and "process_cpu_seconds_total" in metrics
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian's prometheus package): not linted")
    linted = subprocess.run(
        [promtool, "check", "metrics"], input=metrics, capture_output=True, text=True
    )
    assert linted.returncode == 0 and not linted.stdout.strip(), linted.stdout + linted.stderr


def test_artifacts_are_served_read_only_and_never_outside_the_run(
    client: httpx.Client, env: dict[str, str]
) -> None:
    from pathlib import Path

    run_id = client.post("/runs", json={"workflow": "probe", "params": {"width": 1}}).json()["id"]
    folder = Path(env["ARTIFACT_ROOT"]) / run_id / "b"
    folder.mkdir(parents=True)
    (folder / "note.txt").write_text("hello")
    secret = Path(env["ARTIFACT_ROOT"]) / "secret.txt"
    secret.write_text("not yours")
    (folder / "escape.txt").symlink_to(secret)

    ok = client.get(f"/runs/{run_id}/artifacts/b/note.txt")
    assert ok.status_code == 200 and ok.text == "hello"
    assert client.put(f"/runs/{run_id}/artifacts/b/note.txt").status_code == 405
    for path in [
        "../secret.txt",
        "b/../../secret.txt",
        "%2e%2e/secret.txt",
        "b/escape.txt",
        "/etc/passwd",
        "b",
        "nope.txt",
    ]:
        response = client.get(f"/runs/{run_id}/artifacts/{path}")
        assert response.status_code == 404, (path, response.text)
        assert response.headers["content-type"] == PROBLEM
