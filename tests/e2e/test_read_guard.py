"""With a token set, reads need it too: every GET route of the app, enumerated from the app
itself so a route added later is checked as well, answers 401 without the token, except
the public ones (probes, docs, the UI's shell and assets). PUBLIC_READS=true opens reads
again; METRICS_TOKEN guards /metrics on its own; the UI's read cookie opens reads only."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Mount

from tests.support import ApiProcess

TOKEN = "read-guard-token"
METRICS_TOKEN = "metrics-only-token"
#: The GET routes anyone may read whatever the settings. Growing this list is a decision.
PUBLIC = {
    "/livez", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc",
    "/docs-assets", "/", "/ui", "/ui/{path:path}", "/ui/assets",
}  # fmt: skip


def _routes(app: Any) -> Iterable[Any]:
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before included routers were kept nested: already flat
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def get_routes() -> dict[str, str]:
    """Every path the app answers GET on -> a URL to ask (a file for a static mount)."""
    from api.app import create_app
    from reelflow.settings import get_settings

    app = create_app()
    get_settings.cache_clear()  # read again by whoever asks next, from their environment
    found: dict[str, str] = {}
    for route in _routes(app):
        if isinstance(getattr(route, "route", route), Mount) or route.methods is None:
            directory = Path(route.app.directory)
            found[route.path] = f"{route.path}/{sorted(p.name for p in directory.glob('*.*'))[0]}"
        elif "GET" in route.methods:
            found[route.path] = route.path
    return found


ROUTES = get_routes()


def _url(path: str, run_id: str) -> str:
    values = {"run_id": run_id, "key": "a", "asset_id": str(uuid.uuid4())}
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values.get(m[1], "x"), path)


def _status(client: httpx.Client, url: str, **kwargs: Any) -> int:
    with client.stream("GET", url, **kwargs) as answer:  # an event stream stays open
        return answer.status_code


def _api(env: dict[str, str], tmp: pytest.TempPathFactory, **settings: str) -> ApiProcess:
    proc = ApiProcess({**env, **settings}, tmp.mktemp("api") / "api.log")
    proc.start()
    return proc


@pytest.fixture(scope="module")
def guarded(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    proc = _api(env, tmp_path_factory, API_TOKEN=TOKEN, METRICS_TOKEN=METRICS_TOKEN)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def run_id(guarded: ApiProcess) -> str:
    with guarded.client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        made = client.post("/runs", json={"workflow": "probe", "params": {"width": 1}})
        assert made.status_code == 201, made.text
        return str(made.json()["id"])


def test_the_enumeration_sees_the_routes() -> None:
    assert {"/runs", "/runs/{run_id}", "/runs/{run_id}/events", "/metrics", "/health"} <= set(
        ROUTES
    )
    assert set(ROUTES) >= PUBLIC, PUBLIC - set(ROUTES)  # a renamed public path fails here


@pytest.mark.parametrize("path", sorted(ROUTES))
def test_every_read_needs_the_token_but_the_public_ones(
    guarded: ApiProcess, run_id: str, path: str
) -> None:
    url = _url(ROUTES[path], run_id)
    with guarded.client(timeout=15) as client:
        answer = client.get(url) if path != "/runs/{run_id}/events" else None
        status = answer.status_code if answer is not None else _status(client, url)
        head = client.head(url).status_code if answer is not None else status
        if path in PUBLIC:
            assert status < 400, (url, status)
            return
        assert status == 401 and head == 401, (url, status, head)
        if answer is not None:
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.headers["www-authenticate"] == "Bearer"
            assert answer.json()["code"] == "unauthorized"
        token = METRICS_TOKEN if path == "/metrics" else TOKEN
        assert _status(client, url, headers={"Authorization": f"Bearer {token}"}) != 401


def test_metrics_take_their_own_token_only(guarded: ApiProcess) -> None:
    with guarded.client() as client:
        for token in (None, TOKEN, f"{METRICS_TOKEN}x"):
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            refused = client.get("/metrics", headers=headers)
            assert refused.status_code == 401, token
            assert "METRICS_TOKEN" in refused.json()["detail"]
        scrape = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert scrape.status_code == 200 and "reelflow_" in scrape.text
        # The metrics token reads nothing else and changes nothing.
        assert (
            client.get("/runs", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).status_code
            == 401
        )
        create = client.post("/runs", json={"workflow": "probe", "params": {}},
                             headers={"Authorization": f"Bearer {METRICS_TOKEN}"})  # fmt: skip
        assert create.status_code == 401


def test_the_ui_cookie_opens_reads_and_nothing_else(guarded: ApiProcess, run_id: str) -> None:
    with guarded.client() as client:
        assert client.post("/ui/session").status_code == 401
        assert (
            client.post("/ui/session", headers={"Authorization": "Bearer wrong"}).status_code == 401
        )
        made = client.post("/ui/session", headers={"Authorization": f"Bearer {TOKEN}"})
        assert made.status_code == 204, made.text
        cookie = made.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        assert TOKEN not in cookie  # derived from the token, not the token
        assert client.cookies.get("reelflow_read")
        assert client.get(f"/runs/{run_id}").status_code == 200
        assert _status(client, f"/runs/{run_id}/events") == 200
        assert client.get("/metrics").status_code == 401  # METRICS_TOKEN's alone
        assert client.post(f"/runs/{run_id}/cancel").status_code == 401  # reads only
        client.cookies.set("reelflow_read", "0" * 64)
        assert client.get(f"/runs/{run_id}").status_code == 401


def test_public_reads_open_every_get_route(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, run_id: str
) -> None:
    proc = _api(env, tmp_path_factory, API_TOKEN=TOKEN, PUBLIC_READS="true")
    try:
        with proc.client(timeout=15) as client:
            for path, url in ROUTES.items():
                status = _status(client, _url(url, run_id))
                assert status != 401, (path, status)
            assert client.get("/metrics").status_code == 200  # no METRICS_TOKEN: a read
            create = client.post("/runs", json={"workflow": "probe", "params": {}})
            assert create.status_code == 401  # changes still need the token
            doc = client.get("/openapi.json").json()
            assert "security" not in doc["paths"]["/runs"]["get"]
            assert doc["paths"]["/runs"]["post"]["security"]
    finally:
        proc.stop()


def test_metrics_token_alone_guards_metrics_alone(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    proc = _api(env, tmp_path_factory, METRICS_TOKEN=METRICS_TOKEN)
    try:
        with proc.client() as client:
            assert client.get("/runs").status_code == 200
            assert client.get("/metrics").status_code == 401
            auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
            assert client.get("/metrics", headers=auth).status_code == 200
            doc = client.get("/openapi.json").json()
            assert doc["paths"]["/metrics"]["get"]["security"]
            assert "security" not in doc["paths"]["/runs"]["post"]
    finally:
        proc.stop()


def test_the_schema_declares_the_token_on_reads(guarded: ApiProcess) -> None:
    doc = guarded.client().get("/openapi.json").json()
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            secured = bool(operation.get("security"))
            assert secured is (path not in ("/livez", "/readyz")), (method, path)
            assert ("401" in operation["responses"]) is secured, (method, path)
