"""A page on another site cannot change anything here, with or without API_TOKEN: a
cross-origin "simple" POST to every state-changing endpoint is refused and changes
nothing; so is a form-shaped POST with no Origin at all, and a request to another host
name (DNS rebinding). CORS stays closed. The UI is served with a strict CSP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ApiProcess, WorkerProcess

pytestmark = pytest.mark.slow
TOKEN = "guard-token-0f3c9"
EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def failed_run(api: ApiProcess) -> str:
    """A failed run every write below would change if it were let through."""
    with api.client() as client:
        body = {"workflow": "probe", "params": {"width": 1, "max_attempts": 1}, "faults": {"e": 1}}
        run_id = str(client.post("/runs", json=body).json()["id"])
        deadline = time.monotonic() + 60
        while client.get(f"/runs/{run_id}").json()["status"] != "failed":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        return run_id


def _writes(run_id: str) -> list[tuple[str, bytes]]:
    return [
        ("/runs", b'{"workflow": "probe", "params": {}}'),
        (f"/runs/{run_id}/resume", b""),
        (f"/runs/{run_id}/steps/e/retry", b""),
        (f"/runs/{run_id}/cancel", b""),
        ("/admin/prune?older_than=0s&dry_run=false", b""),
    ]


#: What a browser sends for a cross-origin "simple" request (no preflight).
SIMPLE = [
    {"Origin": EVIL, "Content-Type": "text/plain"},
    {"Origin": EVIL, "Content-Type": "application/x-www-form-urlencoded"},
    {"Origin": EVIL},
    {"Origin": "null", "Content-Type": "text/plain"},  # a sandboxed frame, a file: page
    {"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},  # Origin stripped
    {"Content-Type": "text/plain"},  # no Origin, no JSON: what only a form can send
    {},  # nothing at all
]


def _state(client: httpx.Client, run_id: str) -> tuple[str, int, int]:
    run = client.get(f"/runs/{run_id}").json()
    return run["status"], run["generation"], len(client.get("/runs").json()["items"])


@pytest.mark.parametrize("headers", SIMPLE)
def test_cross_origin_simple_posts_are_refused_and_change_nothing(
    api: ApiProcess, failed_run: str, headers: dict[str, str]
) -> None:
    with httpx.Client(base_url=api.url, timeout=30) as browser, api.client() as client:
        before = _state(client, failed_run)
        for path, body in _writes(failed_run):
            answer = browser.post(path, content=body, headers=headers)
            assert answer.status_code in (403, 415), (path, headers, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            code = answer.json()["code"]
            assert code == ("json_required" if answer.status_code == 415 else
                            "cross_origin_refused")  # fmt: skip
        assert _state(client, failed_run) == before


def test_same_origin_json_and_scripts_are_let_through(api: ApiProcess, failed_run: str) -> None:
    with httpx.Client(base_url=api.url, timeout=30) as browser:
        page = {"Origin": api.url, "Sec-Fetch-Site": "same-origin"}
        plan = browser.post(
            f"/runs/{failed_run}/resume?dry_run=true",
            headers={**page, "Content-Type": "application/json"},
        )
        assert plan.status_code == 200, plan.text
        created = browser.post(
            "/runs", json={"workflow": "probe", "params": {"width": 1}}, headers=page
        )
        assert created.status_code == 201, created.text
        # A script (no browser headers) with JSON, or with X-Requested-With, is not a form.
        assert (
            browser.post(
                f"/runs/{failed_run}/resume?dry_run=true",
                headers={"Content-Type": "application/json"},
            ).status_code
            == 200
        )
        assert browser.post(f"/runs/{failed_run}/resume?dry_run=true",
                            headers={"X-Requested-With": "x"}).status_code == 200  # fmt: skip


def test_another_host_name_is_refused_and_cors_stays_closed(api: ApiProcess) -> None:
    with httpx.Client(base_url=api.url, timeout=30) as browser:
        # DNS rebinding: evil.example resolves to this machine; the page is same-origin.
        rebound = {"Host": "evil.example:8000", "Origin": "http://evil.example:8000"}
        answer = browser.post("/runs", json={"workflow": "probe", "params": {}}, headers=rebound)
        assert answer.status_code == 400 and answer.json()["code"] == "invalid_host"
        page = {"Host": "evil.example", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
        assert browser.get("/runs", headers=page).status_code == 400
        assert browser.get("/livez", headers=page).status_code == 200
        # A script or test client with another Host (no browser marks) is no rebinding.
        assert browser.get("/runs", headers={"Host": "testserver"}).status_code == 200
        preflight = browser.options(
            "/runs",
            headers={"Origin": EVIL, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "content-type"},
        )  # fmt: skip
        assert "access-control-allow-origin" not in preflight.headers
        assert (
            "access-control-allow-origin"
            not in browser.get("/runs", headers={"Origin": EVIL}).headers
        )


def test_the_ui_is_served_with_a_strict_content_security_policy(api: ApiProcess) -> None:
    with httpx.Client(base_url=api.url, timeout=30) as browser:
        for path in ("/ui", "/ui/runs/x", "/ui/assets/app.js"):
            answer = browser.get(path)
            assert answer.status_code == 200
            csp = answer.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp, csp
            assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["referrer-policy"]
        assert browser.get("/runs").headers["x-content-type-options"] == "nosniff"


@pytest.fixture(scope="module")
def guarded(
    env: dict[str, str], worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    proc = ApiProcess({**env, "API_TOKEN": TOKEN}, Path(tmp_path_factory.mktemp("api")) / "log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def test_a_token_does_not_make_a_cross_origin_write_acceptable(
    guarded: ApiProcess, failed_run: str
) -> None:
    """A page that got hold of the token (or a browser that sends it) is still refused."""
    with httpx.Client(base_url=guarded.url, timeout=30) as browser:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for path, body in _writes(failed_run):
            for headers in ({"Origin": EVIL, "Content-Type": "text/plain"}, {}):
                answer = browser.post(path, content=body, headers={**auth, **headers})
                assert answer.status_code in (403, 415), (path, answer.text)
        ok = browser.post(f"/runs/{failed_run}/resume?dry_run=true",
                          headers={**auth, "Content-Type": "application/json"})  # fmt: skip
        assert ok.status_code == 200, ok.text
