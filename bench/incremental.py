"""What does a second identical run cost? A short_video run, then the same params again:
the second reuses every result by its input key (collect_trends to compose_video, every
render at dispatch, no task on a worker) and runs only publish. Prints the wall time of
both runs and their ratio (goal: at most 0.15), and how many renders the second ran.

    python bench/incremental.py [--seconds 30]

Uses DATABASE_URL / REDIS_URL when set, the embedded servers otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import bench_environment, finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30, help="video length")
    args = parser.parse_args()
    params = {"length_seconds": args.seconds}
    with tempfile.TemporaryDirectory() as tmp, bench_environment(Path(tmp), concurrency=2):
        from db import repository as repo
        from db.engine import get_engine
        from steps.engine import bridge
        from workflows.runs.operations import start_run

        def one() -> tuple[float, dict[str, int]]:
            started = time.perf_counter()
            run = bridge.run(start_run("short_video", params, actor="bench")).run
            bridge.run(finished(run.id, timeout=600))
            wall = time.perf_counter() - started

            async def attempts() -> dict[str, int]:
                async with get_engine().connect() as conn:
                    return {s.key: s.attempts for s in await repo.get_steps(conn, run_id=run.id)}

            return wall, bridge.run(attempts())

        first_s, _ = one()
        second_s, second = one()
    renders = [k for k in second if k.startswith("render_scene[")]
    print(
        json.dumps(
            {
                "first_run_s": round(first_s, 2),
                "second_run_s": round(second_s, 2),
                "ratio": round(second_s / first_s, 3),
                "renders": len(renders),
                "renders_run_again": sum(second[k] for k in renders),
                "steps_run_again": sorted(k for k, n in second.items() if n),
                "video_s": args.seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
