"""What do slot pools cost, and do they keep the GPU busy? A backlog of N synthetic renders
(queue `gpu`, `--render-ms` each) runs twice in one process:

- plain: no pool; one gpu worker of concurrency 2 (the broker's queue and the worker's
  concurrency are the only limit, as before pools);
- pooled: POOLS=gpu:2, and two gpu workers of concurrency 2 (four processes competing for
  two slots: what a pool is for).

Prints each mode's slot utilisation (render-seconds / (2 slots x the span from the first
render's start to the last one's end); goal: at least 0.95 pooled), the most renders that
ever overlapped (must be 2), the wait the pool adds per render (the idle slot time per
render hand-off, pooled minus plain) and the ratio of the two spans.

    python bench/pools.py [--renders 200] [--render-ms 500]

Uses DATABASE_URL / REDIS_URL when set, the embedded servers otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import bench_servers, finished, worker_on

SLOTS = 2


def _overlap(spans: list[tuple[datetime, datetime]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = most = 0
    for _, delta in edges:
        now += delta
        most = max(most, now)
    return most


async def _spans(run_id: uuid.UUID) -> list[tuple[datetime, datetime]]:
    from db.engine import driver_connection

    conn = await driver_connection()
    try:
        rows = await conn.fetch(
            "SELECT started_at, finished_at FROM step_attempts WHERE run_id = $1"
            " AND step = 'render' AND status = 'succeeded'",
            run_id,
        )
    finally:
        await conn.close()
    return [(r["started_at"], r["finished_at"]) for r in rows]


def _mode(tmp: Path, name: str, *, pools: str, workers: int, args: Any) -> dict[str, Any]:
    from reelflow.settings import get_settings
    from steps.engine import bridge
    from workflows.runs.operations import start_run

    os.environ["POOLS"] = pools
    get_settings.cache_clear()
    with ExitStack() as stack:
        for i in range(workers):
            folder = tmp / f"{name}{i}"
            folder.mkdir()
            stack.enter_context(
                worker_on(folder, include="bench.pool_tasks", concurrency=2, queues="default,gpu")
            )
        params = {"renders": args.renders, "render_ms": args.render_ms, "nonce": name}
        run = bridge.run(start_run("pool_bench", params, actor="bench")).run
        bridge.run(finished(run.id, timeout=args.renders * args.render_ms / 1000 + 300))
        spans = bridge.run(_spans(run.id))
    assert len(spans) == args.renders, len(spans)
    first = min(s for s, _ in spans)
    last = max(e for _, e in spans)
    span_s = (last - first).total_seconds()
    busy_s = sum((e - s).total_seconds() for s, e in spans)
    return {
        "span_s": round(span_s, 2),
        "utilisation": round(busy_s / (SLOTS * span_s), 4),
        "max_overlap": _overlap(spans),
        "idle_ms_per_handoff": round((SLOTS * span_s - busy_s) / len(spans) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=200)
    parser.add_argument("--render-ms", type=int, default=500)
    args = parser.parse_args()
    os.environ.setdefault("WORKFLOW_MODULES", "bench.pool_tasks")
    with tempfile.TemporaryDirectory() as tmp, bench_servers(Path(tmp)):
        import bench.pool_tasks  # noqa: F401  (this process starts the runs)

        plain = _mode(Path(tmp), "plain", pools="", workers=1, args=args)
        pooled = _mode(Path(tmp), "pooled", pools=f"gpu:{SLOTS}", workers=2, args=args)
    print(
        json.dumps(
            {
                "renders": args.renders,
                "render_ms": args.render_ms,
                "plain": plain,
                "pooled": pooled,
                "pool_wait_added_ms_per_render": round(
                    pooled["idle_ms_per_handoff"] - plain["idle_ms_per_handoff"], 2
                ),
                "span_ratio": round(pooled["span_s"] / plain["span_s"], 4),
                "utilisation": pooled["utilisation"],
            }
        )
    )


if __name__ == "__main__":
    main()
