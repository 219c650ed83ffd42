"""No secret reaches a log, even when everything fails at once: through a PostgreSQL
restart, with a password in DATABASE_URL and a bearer token in use, the API answers 503
with Retry-After (never 500), and neither the API's nor the worker's log holds the
password or the token."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.chaos.conftest import Chaos
from tests.support import ApiProcess

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

PASSWORD = "pw-Zq8rT2vLx9-secret"
TOKEN = "tok-Mn4Ks7Wd2Qp-secret"


def _wait(client: httpx.Client, run_id: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(f"/runs/{run_id}")
        if answer.status_code == 200 and answer.json()["status"] == status:
            return
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)


def test_no_secret_reaches_a_log_through_a_postgres_restart(chaos: Chaos, tmp_path: Path) -> None:
    url = make_url(chaos.env["DATABASE_URL"]).set(password=PASSWORD)
    chaos.env["DATABASE_URL"] = url.render_as_string(hide_password=False)
    chaos.env["API_TOKEN"] = TOKEN
    worker = chaos.worker("secretive")
    api = ApiProcess(chaos.env, tmp_path / "api.log")
    api.start()
    probe = {"workflow": "probe", "params": {"width": 2}}
    try:
        with api.client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            first = str(client.post("/runs", json=probe).json()["id"])
            _wait(client, first, "succeeded")

            chaos.stop_postgres()
            answers: list[httpx.Response] = []
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                answers += [
                    client.get("/runs"),
                    client.get(f"/runs/{first}"),
                    client.post("/runs", json=probe),
                    client.post(f"/runs/{first}/steps/e/retry"),
                    client.get("/metrics"),
                ]
                time.sleep(0.3)
            chaos.start_postgres()

            again = client.post("/runs", json=probe)
            for _ in range(50):
                if again.status_code == 201:
                    break
                time.sleep(0.5)
                again = client.post("/runs", json=probe)
            assert again.status_code == 201, again.text
            _wait(client, str(again.json()["id"]), "succeeded", timeout=90)
    finally:
        api.stop()

    codes = [a.status_code for a in answers]
    assert 500 not in codes, [a.text for a in answers if a.status_code == 500][:3]
    outages = [a for a in answers if a.status_code == 503]
    assert outages, codes
    for answer in outages:
        assert int(answer.headers["Retry-After"]) > 0
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] in ("database_unavailable", "broker_unavailable")

    logs = {"api": api.log.read_text(), "worker": worker.log.read_text()}
    assert "api_dependency_unavailable" in logs["api"]  # the outage was logged ...
    for name, text in logs.items():
        assert PASSWORD not in text, f"the database password is in the {name} log"
        assert TOKEN not in text, f"the API token is in the {name} log"
        assert '"locals"' not in text, f"frame locals in the {name} log"
