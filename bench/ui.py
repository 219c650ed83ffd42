"""How fast do the UI's pages load? The runs page, a run's page and the workers page in
Debian's Chromium (Playwright), with 10 runs in the database and then with 10,000, on the
same API process: milliseconds from navigation to the page's content drawn, medians.
Prints one JSON line: both figures per page and their ratio (10k / 10).

    python bench/ui.py [--loads 7]

Uses DATABASE_URL / REDIS_URL when set, the embedded servers otherwise (no worker runs:
the pages read what is in the database).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import servers

SEED = """
WITH r AS (
    INSERT INTO workflow_runs (id, workflow, workflow_version, params, status, created_at,
                               started_at, finished_at)
    SELECT gen_random_uuid(), 'probe', 1, '{"width": 3}',
           (ARRAY['succeeded','failed','running'])[1 + g % 3],
           now() - make_interval(secs => g), now() - make_interval(secs => g), now()
    FROM generate_series(1, :runs) g RETURNING id
), s AS (
    INSERT INTO step_runs (run_id, key, step, status, attempts, item_index)
    SELECT r.id, k, regexp_replace(k, '\\[\\d+\\]$', ''), 'succeeded', 1,
           NULLIF(substring(k from '\\[(\\d+)\\]'), '')::int
    FROM r, unnest(ARRAY['a','b','c[0]','c[1]','c[2]','d','e']) k
    RETURNING id, run_id, key
)
INSERT INTO step_attempts (step_run_id, run_id, step_key, step, attempt, status, started_at,
                           finished_at, duration_ms)
SELECT s.id, s.run_id, s.key, regexp_replace(s.key, '\\[\\d+\\]$', ''), 1, 'succeeded',
       now(), now(), 42
FROM s
"""

PAGES = {
    "runs": ("/ui", "tbody tr[data-run]"),
    "run": ("/ui/runs/{run}", "[data-attempt]"),
    "workers": ("/ui/workers", "main h2"),
}


async def seed(runs: int) -> str:
    from sqlalchemy import text

    from db.engine import dispose_engine, get_engine

    async with get_engine().begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text(SEED), {"runs": runs})
        await conn.execute(text("ANALYZE"))
        newest = await conn.execute(
            text("SELECT id FROM workflow_runs ORDER BY created_at DESC, id DESC LIMIT 1")
        )
        run_id = str(newest.scalar_one())
    await dispose_engine()
    return run_id


def measure(browser: Any, base: str, run_id: str, loads: int) -> dict[str, float]:
    page = browser.new_page()
    out = {}
    for name, (path, ready) in PAGES.items():
        url = base + path.format(run=run_id)
        page.goto(url)  # warm: the API's first request, the browser's cache of the assets
        page.wait_for_selector(ready)
        times = []
        for _ in range(loads):
            started = time.perf_counter()
            page.goto(url)
            page.wait_for_selector(ready)
            times.append((time.perf_counter() - started) * 1000)
        out[name] = statistics.median(times)
    page.close()
    return out


def _seeded(runs: int) -> str:
    """Seed from a thread of its own: Playwright's sync API runs an event loop here."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, seed(runs)).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=7)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from tests.support import ApiProcess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no Chromium here (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as name, servers(Path(name)):
        env = {k: os.environ[k] for k in ("DATABASE_URL", "REDIS_URL")}
        api = ApiProcess({**env, "LOG_LEVEL": "WARNING"}, Path(name) / "api.log")
        api.start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
                small = measure(browser, api.url, _seeded(10), args.loads)
                large = measure(browser, api.url, _seeded(9_990), args.loads)
                browser.close()
        finally:
            api.stop()
    print(
        json.dumps(
            {
                "loads": args.loads,
                **{f"{k}_10_ms": round(v, 1) for k, v in small.items()},
                **{f"{k}_10k_ms": round(v, 1) for k, v in large.items()},
                **{f"{k}_ratio": round(large[k] / small[k], 3) for k in PAGES},
            }
        )
    )


if __name__ == "__main__":
    main()
