"""Admission control: a cap on active runs, a per-client rate on mutating requests, a
params size cap, each answered 413/429 with problem+json (and Retry-After) and nothing
written; run lists carry no params."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ApiProcess, WorkerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def strict(
    env: dict[str, str], worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    limits = {"MAX_ACTIVE_RUNS": "2", "RATE_LIMIT": "5/minute", "MAX_PARAMS_BYTES": "2048"}
    proc = ApiProcess({**env, **limits}, Path(tmp_path_factory.mktemp("api")) / "api.log")
    proc.start()
    try:
        with httpx.Client(base_url=proc.url, timeout=30) as client:
            yield client
    finally:
        proc.stop()


def _count(client: httpx.Client) -> int:
    return len(client.get("/runs", params={"limit": 200}).json()["items"])


def test_limits_answer_429_and_413_and_write_nothing(strict: httpx.Client) -> None:
    slow = {"workflow": "probe", "params": {"width": 1, "sleep_ms": 2000}}
    first = strict.post("/runs", json=slow, headers={"Idempotency-Key": "adm-1"})
    assert strict.post("/runs", json=slow).status_code == 201
    assert first.status_code == 201
    before = _count(strict)

    full = strict.post("/runs", json=slow)
    assert full.status_code == 429, full.text
    assert full.json()["code"] == "too_many_active_runs" and int(full.headers["Retry-After"]) > 0
    assert full.headers["content-type"] == "application/problem+json"
    # A replay is not a new run: the cap does not apply to it.
    assert strict.post("/runs", json=slow, headers={"Idempotency-Key": "adm-1"}).status_code == 200

    huge = strict.post("/runs", json={"workflow": "probe", "params": {"topic": "x" * 4000}})
    assert huge.status_code == 413 and huge.json()["code"] == "params_too_large"
    assert _count(strict) == before

    # Five mutating requests a minute per client (those above included): the rest wait.
    limited = strict.post(f"/runs/{first.json()['id']}/cancel")
    assert limited.status_code == 429, limited.text
    assert limited.json()["code"] == "rate_limited" and int(limited.headers["Retry-After"]) >= 1
    assert strict.get(f"/runs/{first.json()['id']}").json()["status"] != "cancelled"


def test_run_lists_carry_no_params(strict: httpx.Client) -> None:
    deadline = time.monotonic() + 30
    while not (items := strict.get("/runs").json()["items"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert all("params" not in item for item in items)
    assert "params" in strict.get(f"/runs/{items[0]['id']}").json()
