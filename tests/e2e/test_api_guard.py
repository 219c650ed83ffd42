"""With API_TOKEN set, every mutating endpoint needs the bearer token (reads too: see
test_read_guard)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ApiProcess, WorkerProcess

TOKEN = "s3cret-token"
RUN = "00000000-0000-0000-0000-000000000000"
MUTATING = [
    ("POST", "/runs", {"workflow": "probe", "params": {}}),
    ("POST", f"/runs/{RUN}/resume", None),
    ("POST", f"/runs/{RUN}/steps/a/retry", None),
    ("POST", f"/runs/{RUN}/cancel", None),
]


@pytest.fixture(scope="module")
def guarded(
    env: dict[str, str], worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    proc = ApiProcess({**env, "API_TOKEN": TOKEN}, Path(tmp_path_factory.mktemp("api")) / "log")
    proc.start()
    try:
        yield proc.client(timeout=15)
    finally:
        proc.stop()


@pytest.mark.parametrize(("method", "path", "body"), MUTATING)
@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic czNjcmV0", f"Bearer {TOKEN}x"])
def test_mutations_without_the_token_get_401(
    guarded: httpx.Client, method: str, path: str, body: dict | None, auth: str | None
) -> None:
    headers = {"Authorization": auth} if auth else {}
    response = guarded.request(method, path, json=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"


def test_the_token_lets_mutations_and_reads_through(guarded: httpx.Client) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    created = guarded.post(
        "/runs", json={"workflow": "probe", "params": {"width": 1}}, headers=auth
    )
    assert created.status_code == 201
    assert guarded.get(f"/runs/{created.json()['id']}").status_code == 401  # reads too
    assert guarded.get(f"/runs/{created.json()['id']}", headers=auth).status_code == 200
    assert guarded.post(f"/runs/{RUN}/cancel", headers=auth).status_code == 404


def test_the_schema_declares_bearer_security_when_a_token_is_set(guarded: httpx.Client) -> None:
    doc = guarded.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    create = doc["paths"]["/runs"]["post"]
    assert create["security"] and "401" in create["responses"]
