"""Do open event streams slow the API down? GET /runs latency with none and with 1,000.

Starts the API in its own process (no worker: the runs stay in flight, so their streams
stay open), measures GET /runs latencies, opens 1,000 streams over 20 runs, measures again,
and prints p50/p99 of both and the p99 ratio as the last JSON line.

    python bench/sse.py [--streams 1000] [--requests 200]

Uses DATABASE_URL / REDIS_URL when set, the embedded servers otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import servers


async def latencies(client: object, requests: int) -> list[float]:
    import httpx

    assert isinstance(client, httpx.AsyncClient)
    out = []
    for _ in range(requests):
        started = time.perf_counter()
        response = await client.get("/runs")
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return out


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1], 2),
    }


async def measure(url: str, streams: int, requests: int) -> dict[str, object]:
    import httpx

    unlimited = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with (
        httpx.AsyncClient(base_url=url, timeout=120) as client,
        httpx.AsyncClient(base_url=url, timeout=None, limits=unlimited) as listeners,
    ):
        runs = []
        for _ in range(20):
            created = await client.post("/runs", json={"workflow": "probe", "params": {}})
            runs.append(created.json()["id"])
        quiet = await latencies(client, requests)
        opened = 0

        async def listen(run_id: str) -> None:
            nonlocal opened
            async with listeners.stream("GET", f"/runs/{run_id}/events") as stream:
                opened += 1
                async for _ in stream.aiter_lines():
                    pass

        tasks = [asyncio.create_task(listen(runs[i % len(runs)])) for i in range(streams)]
        while opened < streams:
            await asyncio.sleep(0.2)
        busy = await latencies(client, requests)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "streams": streams,
        "no_streams": summary(quiet),
        "with_streams": summary(busy),
        "p99_ratio": round(summary(busy)["p99_ms"] / summary(quiet)["p99_ms"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, servers(Path(tmp)):
        import subprocess

        from cli.embedded import free_port
        from cli.processes import stop_groups

        port = free_port()
        env = {**os.environ, "RATE_LIMIT": "", "LOG_LEVEL": "WARNING"}
        api = subprocess.Popen(
            [sys.executable, "-m", "reelflow", "api", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            import httpx

            for _ in range(100):
                try:
                    httpx.get(f"{url}/livez", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            print(json.dumps(asyncio.run(measure(url, args.streams, args.requests))))
        finally:
            stop_groups([api], 10)


if __name__ == "__main__":
    main()
