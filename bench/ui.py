"""How fast do the UI's pages load? The runs page, a run's page and the workers page in
Debian's Chromium (Playwright), with 10 runs in the database and then with 10,000, on the
same API process: milliseconds from navigation to the page's content drawn, medians, and
the API's own time for the runs page's request (`list_api`). Prints one JSON line: both
figures per page and their ratio (10k / 10).

    python bench/ui.py [--loads 7] [--workflow short_video]

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

import httpx

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

#: `--workflow short_video`: runs with the outputs the runs list reads for their headline
#: (a script of about 30 kB, the trends, the composed video's thumbnail), a third failed.
SEED_SHORT_VIDEO = """
WITH r AS (
    INSERT INTO workflow_runs (id, workflow, workflow_version, params, status, error, created_at,
                               started_at, finished_at)
    SELECT gen_random_uuid(), 'short_video', 1, jsonb_build_object('topic', 'topic ' || g),
           (ARRAY['succeeded','failed','running'])[1 + g % 3],
           CASE WHEN g % 3 = 1 THEN jsonb_build_object('type', 'RenderError', 'step',
                'render_scene[1]', 'message', 'the GPU ran out of memory') END,
           now() - make_interval(secs => g), now() - make_interval(secs => g), now()
    FROM generate_series(1, :runs) g RETURNING id
), s AS (
    INSERT INTO step_runs (run_id, key, step, status, attempts, item_index, output)
    SELECT r.id, k, regexp_replace(k, '\\[\\d+\\]$', ''), 'succeeded', 1,
           NULLIF(substring(k from '\\[(\\d+)\\]'), '')::int,
           CASE k
             WHEN 'collect_trends' THEN jsonb_build_object('source', 'builtin', 'chosen',
                  jsonb_build_object('id', 't1', 'title', 'A trend'), 'trends',
                  (SELECT jsonb_agg(jsonb_build_object('id', i, 'title', repeat('t', 60)))
                   FROM generate_series(1, 40) i))
             WHEN 'write_script' THEN jsonb_build_object('title', 'A video about ' || r.id,
                  'scenes', (SELECT jsonb_agg(jsonb_build_object('index', i,
                      'narration', md5(r.id::text || i) || repeat(' words', 200)))
                   FROM generate_series(1, 20) i))
             WHEN 'compose_video' THEN jsonb_build_object('thumbnail', jsonb_build_object(
                  'path', '/x/thumbnail.png', 'size', 1, 'sha256', md5(r.id::text),
                  'key', r.id || '/compose_video/thumbnail.png'))
           END
    FROM r, unnest(ARRAY['collect_trends','write_script','synthesize_voice','render_scene[0]',
                         'render_scene[1]','render_scene[2]','compose_video','publish']) k
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


async def seed(runs: int, workflow: str = "probe") -> str:
    from sqlalchemy import text

    from db.engine import dispose_engine, get_engine

    async with get_engine().begin() as conn:
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(text(SEED_SHORT_VIDEO if workflow == "short_video" else SEED),
                           {"runs": runs})  # fmt: skip
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


def list_time(base: str, requests: int = 30) -> float:
    """The API's own time for the runs page's request (a page of 50), median ms: the part
    of a page load a browser's timing hides under its noise."""
    with httpx.Client(base_url=base, timeout=30) as client:
        client.get("/runs", params={"limit": 50}).raise_for_status()
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            client.get("/runs", params={"limit": 50}).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _seeded(runs: int, workflow: str) -> str:
    """Seed from a thread of its own: Playwright's sync API runs an event loop here."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, seed(runs, workflow)).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=7)
    parser.add_argument(
        "--workflow", choices=("probe", "short_video"), default="probe",
        help="the runs seeded: probe's, or short_video's with the outputs their headlines read",
    )  # fmt: skip
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
                small = measure(browser, api.url, _seeded(10, args.workflow), args.loads)
                small["list_api"] = list_time(api.url)
                large = measure(browser, api.url, _seeded(9_990, args.workflow), args.loads)
                large["list_api"] = list_time(api.url)
                browser.close()
        finally:
            api.stop()
    print(
        json.dumps(
            {
                "loads": args.loads,
                "workflow": args.workflow,
                **{f"{k}_10_ms": round(v, 1) for k, v in small.items()},
                **{f"{k}_10k_ms": round(v, 1) for k, v in large.items()},
                **{f"{k}_ratio": round(large[k] / small[k], 3) for k in [*PAGES, "list_api"]},
            }
        )
    )


if __name__ == "__main__":
    main()
