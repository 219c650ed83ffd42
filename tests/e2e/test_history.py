"""History an operator queries and prunes: attempts carry their step's name (indexed with
their start, and failed ones by time), and `reelflow prune` / POST /admin/prune delete old
finished runs with their rows and artifact folders, after a dry run that changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import text

from db.engine import get_engine
from tests.support import ROOT, ApiProcess


async def _sql(statement: str, **params: object) -> list[dict[str, object]]:
    async with get_engine().begin() as conn:
        result = await conn.execute(text(statement), params)
        return [dict(r._mapping) for r in result] if result.returns_rows else []


def _finished_run(client: httpx.Client, **params: object) -> str:
    run_id = str(client.post("/runs", json={"workflow": "probe", "params": params}).json()["id"])
    deadline = time.monotonic() + 60
    while client.get(f"/runs/{run_id}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return run_id


async def test_attempts_name_their_step_and_the_operator_queries_use_indexes(
    api: ApiProcess,
) -> None:
    with api.client(timeout=30) as client:
        run_id = _finished_run(client, width=2)
    steps = await _sql("SELECT step_key, step FROM step_attempts WHERE run_id = :r", r=run_id)
    assert {(s["step_key"], s["step"]) for s in steps} >= {("c[0]", "c"), ("c[1]", "c"), ("a", "a")}
    await _sql("ANALYZE step_attempts")
    async with get_engine().begin() as conn:
        await conn.execute(text("SET LOCAL enable_seqscan = off"))  # as on a big table
        slowest = "\n".join(
            r[0]
            for r in await conn.execute(
                text(
                    "EXPLAIN SELECT step, max(duration_ms) FROM step_attempts"
                    " WHERE step = 'c' AND started_at > now() - interval '1 day' GROUP BY step"
                )
            )
        )
        failed = "\n".join(
            r[0]
            for r in await conn.execute(
                text(
                    "EXPLAIN SELECT * FROM step_attempts WHERE status = 'failed'"
                    " AND started_at > now() - interval '1 hour'"
                )
            )
        )
    assert "ix_step_attempts_step_started" in slowest, slowest
    assert "ix_step_attempts_failed_started" in failed, failed


async def test_prune_deletes_old_finished_runs_after_a_dry_run(
    api: ApiProcess, env: dict[str, str]
) -> None:
    with api.client(timeout=30) as client:
        old, recent = _finished_run(client, width=1), _finished_run(client, width=1)
        folder = Path(env["ARTIFACT_ROOT"]) / old
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "note.txt").write_text("old")
        await _sql(
            "UPDATE workflow_runs SET finished_at = now() - interval '40 days' WHERE id = :r",
            r=old,
        )
        dry = client.post("/admin/prune", params={"older_than": "30d"})
        assert dry.status_code == 200 and dry.json()["dry_run"] is True, dry.text
        assert dry.json()["runs"] >= 1 and dry.json()["artifact_dirs"] >= 1
        assert client.get(f"/runs/{old}").status_code == 200 and folder.exists()

        done = subprocess.run(
            [sys.executable, "-m", "reelflow", "prune", "--older-than", "30d", "--yes", "--json"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["runs"] >= 1
        assert client.get(f"/runs/{old}").status_code == 404 and not folder.exists()
        assert client.get(f"/runs/{recent}").status_code == 200
        left = await _sql("SELECT count(*) AS n FROM step_attempts WHERE run_id = :r", r=old)
        assert left[0]["n"] == 0
        bad = client.post("/admin/prune", params={"older_than": "soon"})
        assert bad.status_code == 422
        ancient = client.post("/admin/prune", params={"older_than": "999999w"})
        assert ancient.status_code == 200 and ancient.json()["runs"] == 0
        assert client.post("/admin/prune", params={"older_than": "67809093496h"}).status_code == 422
