"""Does a /metrics scrape cost more as history grows? It should not.

Scrapes the API in-process (ASGI, no network) with 1,000 attempts in the database, then
again after history grows to 10,000 runs and 1,000,000 attempts (written in bulk), a
hundred of those runs still in flight (their steps queued, so the gauges by workflow,
step and queue join them), and prints both median scrape times and their ratio as the
last JSON line.

    python bench/metrics.py [--scrapes 30]

Uses DATABASE_URL / REDIS_URL when set, the embedded servers otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import servers

GROW = """
WITH r AS (
    INSERT INTO workflow_runs (id, workflow, workflow_version, params, status, finished_at)
    SELECT gen_random_uuid(), 'probe', 1, '{}', 'succeeded', now()
    FROM generate_series(1, :runs) RETURNING id
), s AS (
    INSERT INTO step_runs (run_id, key, step, status, attempts)
    SELECT r.id, k, k, 'succeeded', 1 FROM r, unnest(ARRAY['a','b','d','e','f']) k
    RETURNING id, run_id, key
)
INSERT INTO step_attempts (step_run_id, run_id, step_key, step, attempt, status, started_at,
                           finished_at, duration_ms)
SELECT s.id, s.run_id, s.key, s.key, g, 'succeeded', now(), now(), 42
FROM s, generate_series(1, :per_step) g
"""


async def grow(attempts: int) -> None:
    """History as a busy deployment leaves it (outside the counters: they were counted)."""
    from sqlalchemy import text

    from db.engine import get_engine

    per_step = 20
    runs = max(1, attempts // (5 * per_step))
    async with get_engine().begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text(GROW), {"runs": runs, "per_step": per_step})
        await conn.execute(text("ANALYZE"))


LIVE = """
WITH live AS (
    UPDATE workflow_runs SET status = 'running'
    WHERE id IN (SELECT id FROM workflow_runs ORDER BY id LIMIT :runs) RETURNING id
)
UPDATE step_runs s SET status = 'queued' FROM live WHERE s.run_id = live.id
"""


async def put_in_flight(runs: int) -> None:
    """Some runs back in flight, their steps queued (outside the state machine's guards)."""
    from sqlalchemy import text

    from db.engine import get_engine

    async with get_engine().begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text(LIVE), {"runs": runs})
        await conn.execute(text("ANALYZE"))


async def scrape_ms(scrapes: int) -> float:
    import httpx

    from api.app import create_app

    app = create_app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            await client.get("/metrics")
            times = []
            for _ in range(scrapes):
                started = time.perf_counter()
                response = await client.get("/metrics")
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
    return statistics.median(times)


async def count() -> tuple[int, int]:
    """Attempts and runs in the database."""
    from sqlalchemy import text

    from db.engine import get_engine

    async with get_engine().connect() as conn:
        attempts = (await conn.execute(text("SELECT count(*) FROM step_attempts"))).scalar_one()
        runs = (await conn.execute(text("SELECT count(*) FROM workflow_runs"))).scalar_one()
    return int(attempts), int(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, servers(Path(tmp)):
        small, large = asyncio.run(measure(args.scrapes))
        figures = {
            "attempts_small": small[0][0],
            "runs_small": small[0][1],
            "scrape_ms_small": round(small[1], 2),
            "attempts_large": large[0][0],
            "runs_large": large[0][1],
            "runs_in_flight_large": IN_FLIGHT,
            "scrape_ms_large": round(large[1], 2),
            "ratio": round(large[1] / small[1], 3),
        }
        print(json.dumps(figures))


#: Runs of the large history put back in flight.
IN_FLIGHT = 100

Measured = tuple[tuple[int, int], float]


async def measure(scrapes: int) -> tuple[Measured, Measured]:
    await grow(1_000)
    small = (await count(), await scrape_ms(scrapes))
    await grow(1_000_000 - small[0][0])  # 10,000 runs of 5 steps, 20 attempts each
    await put_in_flight(IN_FLIGHT)
    large = (await count(), await scrape_ms(scrapes))
    return small, large


if __name__ == "__main__":
    main()
