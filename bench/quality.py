"""Is the video one a creator would post? Makes a short_video (the demo's params unless
told otherwise) and measures what a viewer sees and hears:

- `speech_coverage`: the share of the video in which the narration speaks, by voice
  activity (10 ms frames of the narration stem above -40 dBFS, gaps under 250 ms between
  words bridged); goal at least 0.85.
- `caption_error_ms`: when each word lights up (its first frame) against when it is
  spoken: the synthesizer's word start, and, for words after a pause, the acoustic onset
  found in the stem (median and worst); goal at most 100 ms median.
- `longest_static_s`: the longest run of frames that do not change; goal at most 1 s.
- `loudness_lufs`, `true_peak_dbtp`: of the published video's own audio track (decoded
  AAC; ITU-R BS.1770 by pyloudnorm, true peak four times oversampled); goal -14 +/- 1
  LUFS and at most -1 dBTP.
- `caption_overflows`: phrases whose caption would leave the frame's safe area.

    python bench/quality.py [--topic volcano] [--seconds 30] [--frames docs/screenshots]

Uses DATABASE_URL / REDIS_URL when set, the embedded servers otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import bench_environment, finished


def _active(stem: np.ndarray, rate: int) -> np.ndarray:
    hop = rate // 100
    frames = len(stem) // hop
    rms = np.sqrt(np.mean(stem[: frames * hop].reshape(frames, hop) ** 2, axis=1) + 1e-12)
    return 20 * np.log10(rms) > -40


def speech_coverage(stem: np.ndarray, rate: int) -> float:
    active = _active(stem, rate).copy()
    gap = 0
    for i, on in enumerate(active):  # bridge the short gaps between words
        if on and 0 < gap <= 25:
            active[i - gap : i] = True
        gap = 0 if on else gap + 1
    return float(active.mean())


def caption_errors(script: dict[str, Any], stem: np.ndarray, rate: int, fps: int) -> dict:
    active = _active(stem, rate)
    synth, acoustic = [], []
    offset = 0.0
    for scene in script["scenes"]:
        for phrase in scene["phrases"]:
            for i, word in enumerate(phrase["words"]):
                at = offset + word["start_s"]
                lit = (offset * fps + math.ceil(word["start_s"] * fps - 1e-9)) / fps
                synth.append(abs(lit - at) * 1000)
                if i == 0:  # after a pause: where the sound starts
                    look = int(max(0.0, at - 0.15) * 100)
                    onset = next((j for j in range(look, look + 60) if j < len(active) and
                                  active[j]), None)  # fmt: skip
                    if onset is not None:
                        acoustic.append(abs(lit - onset / 100) * 1000)
        offset += scene["duration_s"]
    both = synth + acoustic
    return {
        "median": round(float(np.median(both)), 1),
        "worst": round(float(np.max(both)), 1),
        "words": len(synth),
        "acoustic_median": round(float(np.median(acoustic)), 1) if acoustic else None,
        "acoustic_worst": round(float(np.max(acoustic)), 1) if acoustic else None,
    }


def video_figures(path: str, frames_to: Path | None) -> dict[str, Any]:
    import av

    from steps.short_video.voice import true_peak_dbtp

    longest = run = 0
    previous = None
    saved = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 30)
        total = stream.frames or 0
        for index, frame in enumerate(container.decode(stream)):
            now = frame.to_ndarray(format="gray").astype(np.int16)
            if previous is not None:
                run = run + 1 if np.abs(now - previous).max() <= 2 else 0
                longest = max(longest, run)
            previous = now
            if frames_to is not None and index in (int(total * 0.15), int(total * 0.55)):
                frames_to.mkdir(parents=True, exist_ok=True)
                out = frames_to / f"video-frame-{len(saved) + 1}.png"
                frame.to_image().save(out)
                saved.append(str(out))
    with av.open(path) as container:
        astream = container.streams.audio[0]
        rate = astream.rate or 48000
        chunks = [f.to_ndarray().reshape(-1) for f in container.decode(astream)]
    audio = np.concatenate(chunks).astype(np.float64)
    import pyloudnorm

    return {
        "longest_static_s": round((longest + 1) / fps if longest else 0.0, 3),
        "loudness_lufs": round(float(pyloudnorm.Meter(rate).integrated_loudness(audio)), 2),
        "true_peak_dbtp": round(true_peak_dbtp(audio.astype(np.float32)), 2),
        "frames_saved": saved,
    }


def overflows(script: dict[str, Any], width: int, height: int) -> int:
    from steps.short_video.captions import SAFE_LINES, SAFE_W, layout_caption

    bad = 0
    for scene in script["scenes"]:
        for phrase in scene["phrases"]:
            font, lines = layout_caption(phrase["text"], width, height)
            widest = max(font.getlength(line) for line in lines)
            if widest > width * SAFE_W or len(lines) > SAFE_LINES:
                bad += 1
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topic", default=None)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--frames", type=Path, default=None, help="save two frames here")
    args = parser.parse_args()
    params: dict[str, Any] = {"length_seconds": args.seconds}
    if args.topic:
        params["topic"] = args.topic
    with tempfile.TemporaryDirectory() as tmp, bench_environment(Path(tmp), concurrency=2):
        from db import repository as repo
        from db.engine import get_engine
        from steps.engine import bridge
        from steps.short_video.models import Scene
        from steps.short_video.speech import RATE
        from steps.short_video.voice import narration
        from workflows.runs.operations import start_run

        run = bridge.run(start_run("short_video", params, actor="bench")).run
        bridge.run(finished(run.id, timeout=900))

        async def outputs() -> dict[str, Any]:
            async with get_engine().connect() as conn:
                return {s.key: s.output for s in await repo.get_steps(conn, run_id=run.id)}

        out = bridge.run(outputs())
        script = out["write_script"]
        scenes = [Scene.model_validate(s) for s in script["scenes"]]
        total = round(sum(s.duration_s for s in scenes) * RATE)
        spoken = narration(scenes, total)  # the stem, as the voice step speaks it
        stem = spoken[1] if spoken else np.zeros(total, np.float32)
        video = out["publish"]["video"]["path"]
        result = {
            "topic": args.topic,
            "seconds": args.seconds,
            "writer": script["writer"],
            "speech_coverage": round(speech_coverage(stem, RATE), 3),
            "caption_error_ms": caption_errors(script, stem, RATE, 30),
            **video_figures(video, args.frames),
            "caption_overflows": overflows(script, 720, 1280),
            "voice": {
                k: out["synthesize_voice"][k] for k in ("engine", "loudness_lufs", "true_peak_dbtp")
            },
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
