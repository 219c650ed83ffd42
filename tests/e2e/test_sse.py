"""Event streams at scale: hundreds of open streams hold no database connection and leave
the API answering; every event has an `id:`, a reconnect with Last-Event-ID gets only what
came after, and keepalive comments fill the silence. Once a run has ended its stream answers
204, so a client stops reconnecting."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from db.engine import get_engine
from tests.support import ApiProcess, WorkerProcess

pytestmark = pytest.mark.slow
STREAMS = 300


@pytest.fixture(scope="module")
def sse_api(
    env: dict[str, str], worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    proc = ApiProcess(
        {**env, "SSE_KEEPALIVE_SECONDS": "1"}, Path(tmp_path_factory.mktemp("api")) / "log"
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _events(lines: list[str]) -> list[dict[str, Any]]:
    out, current = [], {}
    for line in lines:
        if not line:
            if current:
                out.append(current)
            current = {}
        elif line.startswith(":"):
            out.append({"comment": line})
        else:
            name, _, value = line.partition(":")
            current[name] = value.strip()
    return out


async def _connections(application: str) -> int:
    async with get_engine().connect() as conn:
        found = await conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        )
        return int(found.scalar_one())


async def test_many_streams_hold_no_connection_and_leave_the_api_answering(
    sse_api: ApiProcess,
) -> None:
    unlimited = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with (
        httpx.AsyncClient(base_url=sse_api.url, timeout=60, limits=unlimited) as client,
        httpx.AsyncClient(base_url=sse_api.url, timeout=60) as other_client,
    ):
        created = await client.post(
            "/runs", json={"workflow": "probe", "params": {"width": 1, "sleep_ms": 3000}}
        )
        run_id = created.json()["id"]
        before = await _connections("api")
        lines: list[list[str]] = [[] for _ in range(STREAMS)]

        async def listen(i: int) -> None:
            async with client.stream("GET", f"/runs/{run_id}/events") as stream:
                async for line in stream.aiter_lines():
                    lines[i].append(line)

        listeners = [asyncio.create_task(listen(i)) for i in range(STREAMS)]
        deadline = time.monotonic() + 30  # every stream open, the run in flight
        while not all(lines) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        during = await _connections("api")
        started = time.perf_counter()
        other = await other_client.post("/runs", json={"workflow": "probe", "params": {"width": 1}})
        listed = await other_client.get("/runs")
        opened = sum(1 for got in lines if got)
        answered_in = time.perf_counter() - started
        assert other.status_code == 201 and listed.status_code == 200
        await asyncio.wait_for(asyncio.gather(*listeners), timeout=90)

    assert opened == STREAMS
    assert during - before <= 12, (before, during)  # the pool's size, not one per stream
    print(f"{STREAMS} streams open: POST + GET answered in {answered_in * 1000:.0f} ms")
    for got in lines:
        events = [e for e in _events(got) if "event" in e]
        assert events[-1]["event"] == "run" and json.loads(events[-1]["data"]) == {
            "status": "succeeded"
        }
        assert all(e.get("id", "").isdigit() for e in events)
    assert any("comment" in e for got in lines for e in _events(got))  # keepalives


async def test_last_event_id_resumes_after_what_was_seen(sse_api: ApiProcess) -> None:
    async with httpx.AsyncClient(base_url=sse_api.url, timeout=60) as client:
        run_id = (
            await client.post(
                "/runs", json={"workflow": "probe", "params": {"width": 1, "sleep_ms": 800}}
            )
        ).json()["id"]
        first: list[dict[str, Any]] = []
        async with client.stream("GET", f"/runs/{run_id}/events") as stream:
            buffer: list[str] = []
            async for line in stream.aiter_lines():
                buffer.append(line)
                first = [e for e in _events(buffer) if "event" in e]
                done = [json.loads(e["data"]) for e in first if e["event"] == "step"]
                if {"key": "b", "status": "succeeded", "attempts": 1} in done:
                    break  # the client drops mid-run, after b
        last = first[-1]["id"]
        async with client.stream(
            "GET", f"/runs/{run_id}/events", headers={"Last-Event-ID": last}
        ) as stream:
            rest = [
                e for e in _events([line async for line in stream.aiter_lines()]) if "event" in e
            ]
    resumed_keys = [json.loads(e["data"]).get("key") for e in rest if e["event"] == "step"]
    assert "a" not in resumed_keys  # a finished before the drop: not sent again
    assert "e" in resumed_keys and rest[-1]["event"] == "run"
    assert all(int(e["id"]) > int(last) for e in rest)


async def _read_stream(client: httpx.AsyncClient, run_id: str, **headers: str) -> httpx.Response:
    """The stream's response, its body read to the end (a 204 has none)."""
    async with client.stream("GET", f"/runs/{run_id}/events", headers=headers) as stream:
        await stream.aread()
        return stream


async def test_an_ended_runs_stream_answers_204_so_clients_stop_reconnecting(
    sse_api: ApiProcess,
) -> None:
    async with httpx.AsyncClient(base_url=sse_api.url, timeout=60) as client:
        body = {"workflow": "probe", "params": {"width": 1, "sleep_ms": 300}}
        run_id = (await client.post("/runs", json=body)).json()["id"]
        live = await _read_stream(client, run_id)  # opened while it runs: events to the end
        assert live.status_code == 200
        events = [e for e in _events(live.text.splitlines()) if "event" in e]
        assert events[-1]["event"] == "run" and json.loads(events[-1]["data"]) == {
            "status": "succeeded"
        }
        # The reconnect an EventSource makes after the stream closes, and any new stream.
        again = await _read_stream(client, run_id, **{"Last-Event-ID": events[-1]["id"]})
        assert (again.status_code, again.content) == (204, b"")
        fresh = await _read_stream(client, run_id)
        assert (fresh.status_code, fresh.content) == (204, b"")
        # A reconnect that missed the end gets what it missed, then the stream closes.
        missed = await _read_stream(client, run_id, **{"Last-Event-ID": events[0]["id"]})
        rest = [e for e in _events(missed.text.splitlines()) if "event" in e]
        assert missed.status_code == 200 and rest[-1]["event"] == "run", rest
        assert all(int(e["id"]) > int(events[0]["id"]) for e in rest)
        unknown = await client.get("/runs/00000000-0000-0000-0000-000000000000/events")
        assert unknown.status_code == 404

        # The run goes again (retried from its first step): its stream follows it again.
        retried = await client.post(f"/runs/{run_id}/steps/a/retry", json={})
        assert retried.status_code == 202, retried.text
        again_live = await _read_stream(client, run_id)
        assert again_live.status_code == 200
        events = [e for e in _events(again_live.text.splitlines()) if "event" in e]
        assert events[-1]["event"] == "run" and json.loads(events[-1]["data"]) == {
            "status": "succeeded"
        }
        assert (await _read_stream(client, run_id)).status_code == 204
