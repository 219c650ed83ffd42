"""How fast is the render stage, and a whole short_video?

1. `encode_only_fps_one_core`: x264 alone, on frames painted beforehand, with the step's
   settings (single-threaded, pinned to one core).
2. `render_fps_one_core`: render_scene's work (paint + encode) of the same scene, the
   same way; and the ratio of the two (goal: at least 0.8).
3. The wall time of a whole 30 s short_video at 720x1280@30 through one worker with
   concurrency 2 (both queues), from POST to published, against its render-only bound:
   frames / (cores x render fps) (goal: at most 1.3 times it).

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


def _scene(seconds: float) -> object:
    from steps.short_video.models import Phrase, Scene, Word
    from steps.short_video.script import STYLES

    text = "Deep-sea coral gardens found off the Galápagos glow in the dark"
    words = text.split()
    step = seconds / len(words)
    timed = [Word(text=w, start_s=i * step, end_s=(i + 1) * step) for i, w in enumerate(words)]
    phrase = Phrase(text=text, start_s=0.0, duration_s=seconds, words=timed)
    return Scene(index=0, narration=text, caption=text, duration_s=seconds, style=STYLES[1],
                 phrases=[phrase])  # fmt: skip


def fps_figures(seconds: float, width: int = 720, height: int = 1280, fps: int = 30) -> dict:
    """Encode-only and paint+encode frames per second on one core, and their ratio."""
    from steps.short_video.frames import ScenePainter
    from steps.short_video.render import encode_frames

    class Painted:  # the same frames, painted beforehand: the encoder's work alone
        def __init__(self, painter: ScenePainter) -> None:
            self.fps, self.frames, self.w, self.h = painter.fps, painter.frames, width, height
            self.painted = [painter.frame(i) for i in range(painter.frames)]

        def frame(self, index: int) -> object:
            return self.painted[index]

    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        painter = ScenePainter(_scene(seconds), width, height, fps)  # type: ignore[arg-type]
        painted = Painted(painter)
        with tempfile.TemporaryDirectory() as tmp:
            out = {}
            for name, source in (("encode_only", painted), ("render", painter)):
                started = time.perf_counter()
                path = str(Path(tmp) / f"{name}.mp4")
                frames = encode_frames(source, path, range(painter.frames))  # type: ignore[arg-type]
                out[name] = frames / (time.perf_counter() - started)
    finally:
        os.sched_setaffinity(0, allowed)
    return {
        "encode_only_fps_one_core": round(out["encode_only"], 1),
        "render_fps_one_core": round(out["render"], 1),
        "render_over_encode_only": round(out["render"] / out["encode_only"], 3),
    }


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
    parser.add_argument("--seconds", type=float, default=4.0, help="scene length to render")
    parser.add_argument("--skip-run", action="store_true", help="only the render figure")
    args = parser.parse_args()
    result: dict[str, object] = fps_figures(args.seconds)
    if not args.skip_run:
        with tempfile.TemporaryDirectory() as tmp:
            result.update(whole_run(Path(tmp)))
        cores = len(os.sched_getaffinity(0))
        bound = 30 * 30 / (cores * float(result["render_fps_one_core"]))  # type: ignore[arg-type]
        result["render_only_bound_s"] = round(bound, 2)
        result["run_over_bound"] = round(float(result["run_wall_s"]) / bound, 3)  # type: ignore[arg-type]
    result.update({"width": 720, "height": 1280, "fps": 30, "video_s": 30, "cores": os.cpu_count()})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
