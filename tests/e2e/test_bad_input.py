"""Every bad input the API is known to get, and the answer it gets: a clear 4xx with a
problem+json body, and nothing written. The README's bad-input table lists these cases;
this test checks the table and the behaviour together."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from typing import Any

import httpx
import pytest

from tests.support import ROOT, ApiProcess

MISSING = "00000000-0000-0000-0000-000000000000"
EDGE_CURSOR = base64.urlsafe_b64encode(f"9999-12-31T23:59:59-14:00|{MISSING}".encode()).decode()
#: name -> (method, path, request kwargs, status, problem code)
KEY = "bad-input-fixture"  # the fixture run's Idempotency-Key
CASES: dict[str, tuple[str, str, dict[str, Any], int, str]] = {
    "unknown workflow": ("POST", "/runs", {"json": {"workflow": "nope"}}, 422, "unknown_workflow"),
    "param of the wrong type": (
        "POST",
        "/runs",
        {"json": {"workflow": "probe", "params": {"width": "wide"}}},
        422,
        "invalid_params",
    ),
    "param out of range": (
        "POST",
        "/runs",
        {"json": {"workflow": "short_video", "params": {"length_seconds": 5}}},
        422,
        "invalid_params",
    ),
    "odd video width": (
        "POST",
        "/runs",
        {"json": {"workflow": "short_video", "params": {"width": 721}}},
        422,
        "invalid_params",
    ),
    "topic the caption font cannot draw": (
        "POST",
        "/runs",
        {"json": {"workflow": "short_video", "params": {"topic": "火山"}}},
        422,
        "invalid_params",
    ),
    "topic with no letter or digit": (
        "POST",
        "/runs",
        {"json": {"workflow": "short_video", "params": {"topic": "?!"}}},
        422,
        "invalid_params",
    ),
    "unknown param": (
        "POST",
        "/runs",
        {"json": {"workflow": "probe", "params": {"widht": 3}}},
        422,
        "invalid_params",
    ),
    "a trend id the source does not offer": (
        "POST",
        "/runs",
        {"json": {"workflow": "short_video", "params": {"trend_id": "no-such-trend"}}},
        422,
        "invalid_params",
    ),
    "both topic and trend_id": (
        "POST",
        "/runs",
        {"json": {"workflow": "short_video", "params": {"topic": "a", "trend_id": "b"}}},
        422,
        "invalid_params",
    ),
    "unknown body field": (
        "POST",
        "/runs",
        {"json": {"workflow": "probe", "extra": 1}},
        422,
        "validation_error",
    ),
    "priority above 9": (
        "POST",
        "/runs",
        {"json": {"workflow": "probe", "priority": 10}},
        422,
        "validation_error",
    ),
    "priority as a string": (
        "POST",
        "/runs",
        {"json": {"workflow": "probe", "priority": "9"}},
        422,
        "validation_error",
    ),
    "over-long tenant": (
        "POST",
        "/runs",
        {"json": {"workflow": "probe", "tenant": "t" * 101}},
        422,
        "validation_error",
    ),
    "tenant with spaces": (
        "POST",
        "/runs",
        {"json": {"workflow": "probe", "tenant": "team a"}},
        422,
        "validation_error",
    ),
    "malformed JSON": (
        "POST",
        "/runs",
        {"content": b'{"workflow": "probe",', "headers": {"content-type": "application/json"}},
        422,
        "validation_error",
    ),
    "non-UTF-8 bytes": (
        "POST",
        "/runs",
        {
            "content": b'{"workflow": "\\xff\\xfe"}'.replace(b"\\xff\\xfe", b"\xff\xfe"),
            "headers": {"content-type": "application/json"},
        },
        400,
        "malformed_body",
    ),
    "JSON that is not an object": ("POST", "/runs", {"json": [1, 2]}, 422, "validation_error"),
    "NUL character in a param": (
        "POST",
        "/runs",
        {"json": {"workflow": "probe", "params": {"topic": {"a\u0000": 1}}}},
        422,
        "validation_error",
    ),
    "oversized body": (
        "POST",
        "/runs",
        {"json": {"workflow": "probe", "params": {"x": {f"k{i}": i for i in range(200_000)}}}},
        413,
        "too_large",
    ),
    "oversized chunked body": (
        "POST",
        "/runs",
        {
            "content": iter([b'{"workflow": "probe", "params": {"x": "' + b"a" * 600_000] * 3),
            "headers": {"content-type": "application/json"},
        },
        413,
        "too_large",
    ),
    "spaces in Idempotency-Key": (
        "POST",
        "/runs",
        {"json": {"workflow": "probe"}, "headers": {"Idempotency-Key": "a b"}},
        422,
        "validation_error",
    ),
    "Idempotency-Key reused with another body": (
        "POST",
        "/runs",
        {
            "json": {"workflow": "probe", "params": {"width": 2}},
            "headers": {"Idempotency-Key": KEY},
        },
        422,
        "idempotency_key_reused",
    ),
    "unknown asset id in params": (
        "POST",
        "/runs",
        {"json": {"workflow": "short_video", "params": {"images": [MISSING]}}},
        422,
        "unknown_asset",
    ),
    "executable uploaded as .png": (
        "POST",
        "/assets",
        {"files": {"file": ("x.png", b"MZ\x90\x00" + bytes(300), "image/png")}},
        415,
        "unsupported_media_type",
    ),
    "upload that is not multipart": (
        "POST",
        "/assets",
        {"json": {"file": "x"}},
        415,
        "unsupported_media_type",
    ),
    "upload without a file part": (
        "POST",
        "/assets",
        {"files": {"image": ("x.png", b"\x89PNG\r\n\x1a\n", "image/png")}},
        422,
        "validation_error",
    ),
    "malformed asset id": ("GET", "/assets/not-a-uuid", {}, 422, "validation_error"),
    "unknown asset id": ("GET", f"/assets/{MISSING}", {}, 404, "asset_not_found"),
    "malformed run id": ("GET", "/runs/not-a-uuid", {}, 422, "validation_error"),
    "unknown run id": ("GET", f"/runs/{MISSING}", {}, 404, "run_not_found"),
    "resume an unknown run": ("POST", f"/runs/{MISSING}/resume", {}, 404, "run_not_found"),
    "retry an unknown step": ("POST", "/runs/{run}/steps/zz/retry", {}, 404, "step_not_found"),
    "history of an unknown step": (
        "GET",
        "/runs/{run}/steps/zz/attempts",
        {},
        404,
        "step_not_found",
    ),
    "artifact path traversal": (
        "GET",
        "/runs/{run}/artifacts/../../etc/passwd",
        {},
        404,
        "not_found",
    ),
    "artifact path escaping by ..": (
        "GET",
        "/runs/{run}/artifacts/a/..%2F..%2Fsecret",
        {},
        404,
        "artifact_not_found",
    ),
    "page size out of range": ("GET", "/runs?limit=0", {}, 422, "validation_error"),
    "forged cursor": ("GET", "/runs?cursor=bm90LWEtY3Vyc29y", {}, 422, "invalid_cursor"),
    "unknown status filter": ("GET", "/runs?status=sideways", {}, 422, "validation_error"),
    "date before the calendar's start in UTC": (
        "GET",
        "/runs?created_after=0001-01-01T00:00:00%2B14:00",
        {},
        422,
        "validation_error",
    ),
    "date past the calendar's end in UTC": (
        "GET",
        "/runs?created_before=9999-12-31T23:59:59-14:00",
        {},
        422,
        "validation_error",
    ),
    "cursor at a calendar edge": ("GET", f"/runs?cursor={EDGE_CURSOR}", {}, 422, "invalid_cursor"),
    "cross-origin POST": (
        "POST",
        "/runs",
        {"json": {"workflow": "probe"}, "headers": {"Origin": "http://evil.example"}},
        403,
        "cross_origin_refused",
    ),
    "unknown route": ("GET", "/nope", {}, 404, "not_found"),
    "wrong method": ("DELETE", "/runs", {}, 405, "method_not_allowed"),
}


@pytest.fixture(scope="module")
def client(api: ApiProcess) -> httpx.Client:
    return api.client(timeout=30)


@pytest.fixture(scope="module")
def run_id(client: httpx.Client) -> str:
    """A finished run, so nothing it does moves the row counts while a case runs."""
    created = client.post(
        "/runs",
        json={"workflow": "probe", "params": {"width": 1}},
        headers={"Idempotency-Key": KEY},
    )
    run = str(created.json()["id"])
    deadline = time.monotonic() + 60
    while client.get(f"/runs/{run}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return run


async def _counts() -> tuple[int, ...]:
    from sqlalchemy import text

    from db.engine import get_engine

    async with get_engine().connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM workflow_runs), (SELECT count(*) FROM step_runs),"
                    " (SELECT count(*) FROM run_events), (SELECT count(*) FROM assets)"
                )
            )
        ).one()
    return tuple(int(n) for n in row)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_a_clear_4xx_and_writes_nothing(
    client: httpx.Client, run_id: str, name: str
) -> None:
    method, path, kwargs, status, code = CASES[name]
    before = asyncio.run(_counts())
    response = client.request(method, path.format(run=run_id), **kwargs)
    assert response.status_code == status, (name, response.text[:300])
    assert response.headers["content-type"] == "application/problem+json", name
    body = response.json()
    assert body["status"] == status and body["code"] == code and body["detail"], body
    assert asyncio.run(_counts()) == before, f"{name} wrote something"


def test_the_readme_lists_every_case() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| ([^|`]+?) \| (\d{3}) `[a-z_]+` \|", readme, flags=re.M))
    for name, (_, _, _, status, _) in CASES.items():
        assert rows.get(name) == str(status), f"README bad-input table: {name} -> {status}"


EDGES = [
    "created_after=0001-01-01T00:00:00%2B14:00",
    "created_before=0001-01-01T09:59:59%2B10:00",
    "created_before=9999-12-31T23:59:59-14:00",
    "created_after=9999-12-31T23:00:00-01:00",
    f"cursor={EDGE_CURSOR}",
    "cursor=" + base64.urlsafe_b64encode(f"0001-01-01T00:00:00+14:00|{MISSING}".encode()).decode(),
]


def test_calendar_edges_answer_422_on_a_kept_alive_connection(client: httpx.Client) -> None:
    """Dates PostgreSQL's driver cannot take are refused at the edge, never a 500, and the
    connection stays open for the next request."""
    for query in EDGES:
        answer = client.get(f"/runs?{query}")
        assert answer.status_code == 422, (query, answer.text)
        assert answer.headers.get("connection", "").lower() != "close", query
    assert client.get("/runs?created_after=0001-01-02T00:00:00Z").status_code == 200
    assert client.get("/runs?created_before=9999-12-30T00:00:00Z").status_code == 200
