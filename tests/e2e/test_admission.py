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
        with proc.client(timeout=30) as client:
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


@pytest.fixture(scope="module")
def capped(
    env: dict[str, str], worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    limits = {"MAX_ACTIVE_RUNS": "1", "RATE_LIMIT": ""}
    proc = ApiProcess({**env, **limits}, Path(tmp_path_factory.mktemp("api")) / "api.log")
    proc.start()
    try:
        with proc.client(timeout=30) as client:
            yield client
    finally:
        proc.stop()


def _wait_for(client: httpx.Client, run_id: str, *statuses: str) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while (run := client.get(f"/runs/{run_id}").json())["status"] not in statuses:
        assert time.monotonic() < deadline, run
        time.sleep(0.2)
    return dict(run)


def test_resume_and_retry_count_against_the_cap(capped: httpx.Client) -> None:
    for item in capped.get("/runs", params={"limit": 200}).json()["items"]:
        _wait_for(capped, item["id"], "succeeded", "failed", "cancelled")  # earlier tests'
    failing = {"workflow": "probe", "params": {"width": 1, "max_attempts": 1}, "faults": {"e": 1}}
    failed = str(capped.post("/runs", json=failing).json()["id"])
    before = _wait_for(capped, failed, "failed")
    slow = capped.post("/runs", json={"workflow": "probe", "params": {"sleep_ms": 1500}})
    assert slow.status_code == 201  # the one active run the cap allows

    for path in (f"/runs/{failed}/resume", f"/runs/{failed}/steps/e/retry"):
        refused = capped.post(path)
        assert refused.status_code == 429, refused.text
        assert refused.json()["code"] == "too_many_active_runs"
        assert int(refused.headers["Retry-After"]) > 0
        after = capped.get(f"/runs/{failed}").json()
        assert (after["status"], after["generation"]) == ("failed", before["generation"])
    assert capped.post(f"/runs/{failed}/resume?dry_run=true").status_code == 200  # no change

    _wait_for(capped, str(slow.json()["id"]), "succeeded")
    assert capped.post(f"/runs/{failed}/resume").status_code == 202


@pytest.fixture(scope="module")
def limited_api(
    env: dict[str, str], worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    proc = ApiProcess({**env, "RATE_LIMIT": "3/minute"},
                      Path(tmp_path_factory.mktemp("api")) / "api.log")  # fmt: skip
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.mark.parametrize("rotate", ["Authorization", "X-Forwarded-For", "Forwarded"])
def test_rotating_unverified_headers_buys_no_budget(limited_api: ApiProcess, rotate: str) -> None:
    """Without API_TOKEN, a made-up bearer is nobody: the client's address is counted (and
    forwarding headers are believed only from TRUSTED_PROXIES)."""
    values = {
        "Authorization": lambda i: f"Bearer made-up-{rotate}-{i}",
        "X-Forwarded-For": lambda i: f"203.0.113.{i}",
        "Forwarded": lambda i: f"for=198.51.100.{i}",
    }[rotate]
    answers = []
    with limited_api.client() as client:
        for i in range(8):
            missing = f"/runs/00000000-0000-0000-0000-{i:012d}/cancel"
            answers.append(client.post(missing, headers={rotate: values(i)}).status_code)
    assert 429 in answers, answers
    assert answers.count(404) <= 3, answers
