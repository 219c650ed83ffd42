"""How fast is the render stage, and a whole short_video?

1. Frames per second of render_scene's work alone (paint + encode one 720x1280@30 scene),
   pinned to one core, with x264 single-threaded as the step runs it.
2. Wall time of a whole 30 s short_video at 720x1280@30 through one worker with
   concurrency 2 (both queues), from POST to published.

    python bench/render.py [--seconds 5] [--skip-run]

Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import bench_environment


def render_fps(seconds: float, width: int = 720, height: int = 1280, fps: int = 30) -> float:
    from steps.short_video.frames import ScenePainter
    from steps.short_video.models import Scene
    from steps.short_video.render import encode_scene
    from steps.short_video.script import STYLES

    scene = Scene(
        index=0,
        narration="n",
        caption="Deep-sea coral gardens found off the Galápagos",
        duration_s=seconds,
        style=STYLES[1],
    )
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        painter = ScenePainter(scene, width, height, fps)
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            frames = encode_scene(painter, str(Path(tmp) / "segment.mp4"))
            return frames / (time.perf_counter() - started)
    finally:
        os.sched_setaffinity(0, allowed)


def whole_run(tmp: Path) -> dict[str, object]:
    with bench_environment(tmp, concurrency=2):
        from db.engine import driver_connection
        from steps.engine import bridge
        from workflows.runs.operations import start_run

        async def finished(run_id: object) -> str:
            conn = await driver_connection()
            while True:
                status = await conn.fetchval("SELECT status FROM workflow_runs WHERE id=$1", run_id)
                if status in ("succeeded", "failed", "cancelled"):
                    return str(status)
                await asyncio.sleep(0.1)

        started = time.perf_counter()
        run = bridge.run(start_run("short_video", {"length_seconds": 30}, actor="bench")).run
        status = bridge.run(finished(run.id))
        return {"run_status": status, "run_wall_s": round(time.perf_counter() - started, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="scene length to render")
    parser.add_argument("--skip-run", action="store_true", help="only the render figure")
    args = parser.parse_args()
    result: dict[str, object] = {"render_fps_one_core": round(render_fps(args.seconds), 1)}
    if not args.skip_run:
        with tempfile.TemporaryDirectory() as tmp:
            result.update(whole_run(Path(tmp)))
    result.update({"width": 720, "height": 1280, "fps": 30, "video_s": 30, "cores": os.cpu_count()})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
