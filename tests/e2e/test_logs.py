"""Every line a worker and the API write is one JSON object: reelflow's, Celery's (task
outcomes), uvicorn's; API lines carry a request id, step lines the run id, step key and
attempt. (A traceback is one `exception` field: tests/unit/test_redaction.py; a failure
the run records logs none: tests/e2e/test_log_context.py.)"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.support import ApiProcess, WorkerProcess

pytestmark = pytest.mark.slow


def _lines(text: str) -> list[dict[str, Any]]:
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"line {number} is not JSON: {line[:300]!r}") from None
    return out


def test_every_line_is_structured_and_carries_its_context(
    api: ApiProcess, worker: WorkerProcess
) -> None:
    with api.client(timeout=30) as client:
        created = client.post(
            "/runs",
            json={"workflow": "probe", "params": {"width": 2, "max_attempts": 1},
                  "faults": {"c[1]": 1}},
            headers={"X-Request-ID": "req-from-the-client"},
        )  # fmt: skip
        assert created.status_code == 201, created.text
        assert created.headers["X-Request-ID"] == "req-from-the-client"
        assert client.get("/livez").headers["X-Request-ID"]  # one is made when none is sent
        run_id = created.json()["id"]
        deadline = time.monotonic() + 60
        while client.get(f"/runs/{run_id}").json()["status"] != "failed":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(1)  # the failure's traceback reaches the log

    worker_lines = _lines(worker.log.read_text())
    ours = [r for r in worker_lines if r.get("run_id") == run_id]
    for line in ours:
        if str(line.get("event", "")).startswith("step_"):
            assert line.get("step_key") and line.get("attempt"), line
    failed = [r for r in ours if r.get("event") == "step_failed"]
    assert failed and failed[0]["step_key"] == "c[1]"
    celery_lines = [r for r in worker_lines if str(r.get("logger", "")).startswith("celery")]
    assert celery_lines, "Celery's own lines go through the same formatter"

    api_lines = _lines(api.log.read_text())
    requests = [r for r in api_lines if r.get("event") == "http_request"]
    assert any(r.get("request_id") == "req-from-the-client" for r in requests)
    assert all(r.get("request_id") for r in requests)
    assert any(r.get("event") == "run_created" and r.get("request_id") for r in api_lines)
