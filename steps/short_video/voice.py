"""synthesize_voice: one WAV narration track as long as the video.

With `voice` on, each scene's narration is spoken by eSpeak NG (the system's program, or
the library the espeakng-loader package ships) and placed at the scene's start, sped up if
it would overrun the scene. Only when neither works does a generated audio bed (a soft
chord per scene) of the same length stand in, with a warning. The output records which.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

from steps import StepContext, step
from steps.short_video.models import Scene, Script, VoiceOut, VoiceParams
from steps.short_video.speech import RATE, Speaker, find_speaker

BASE_WPM = 165
MAX_WPM = 320


def narration(speaker: Speaker, scenes: list[Scene], total: int) -> np.ndarray:
    """Each phrase spoken in its window (where its caption shows), sped up to fit it."""
    track = np.zeros(total, np.float32)
    for scene, offset in zip(scenes, _starts(scenes), strict=True):
        lines = [(p.text, offset + p.start_s, p.duration_s) for p in scene.phrases]
        for text, start_s, duration_s in lines or [(scene.narration, offset, scene.duration_s)]:
            room = max(1, int(duration_s * RATE) - int(0.1 * RATE))
            samples = speaker.speak(text, BASE_WPM)
            if len(samples) > room:  # speak faster to fit the window
                wpm = min(MAX_WPM, math.ceil(BASE_WPM * len(samples) / room * 1.05))
                samples = speaker.speak(text, wpm)[:room]
            start = int(start_s * RATE) + int(0.05 * RATE)
            end = min(total, start + len(samples))
            track[start:end] += samples[: end - start]
    return track


def narration_apart(scenes: list[Scene], total: int) -> np.ndarray:
    """`narration` by the eSpeak NG library in a fresh process: the library's output
    depends on what it spoke before in the same process, and a step's output must depend
    only on its inputs (a resumed run's video is byte for byte a clean run's)."""
    with tempfile.TemporaryDirectory() as tmp:
        request, result = Path(tmp) / "scenes.json", Path(tmp) / "track.npy"
        scenes_json = [scene.model_dump(mode="json") for scene in scenes]
        request.write_text(json.dumps({"scenes": scenes_json, "total": total}))
        subprocess.run(
            [sys.executable, "-m", "steps.short_video.voice", str(request), str(result)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        track: np.ndarray = np.load(result).astype(np.float32)
        return track


def tone_bed(scenes: list[Scene], total: int) -> np.ndarray:
    """A soft major chord per scene, rooted on a note that steps with the scene index."""
    track = np.zeros(total, np.float32)
    roots = (220.0, 246.94, 261.63, 293.66, 329.63, 349.23, 392.0, 440.0)
    for scene, offset in zip(scenes, _starts(scenes), strict=True):
        start, length = int(offset * RATE), int(scene.duration_s * RATE)
        t = np.arange(length, dtype=np.float32) / RATE
        root = roots[scene.index % len(roots)]
        chord = sum(np.sin(2 * np.pi * root * ratio * t) for ratio in (1.0, 1.25, 1.5))
        envelope = np.minimum(1.0, np.minimum(t / 0.3, (scene.duration_s - t) / 0.3))
        segment = (0.12 * chord * envelope).astype(np.float32)
        track[start : start + length] += segment[: max(0, total - start)]
    return track


def _starts(scenes: list[Scene]) -> list[float]:
    """Where each scene starts in the video (scenes carry no absolute time)."""
    out, at = [], 0.0
    for scene in scenes:
        out.append(at)
        at += scene.duration_s
    return out


def write_wav(path: Path, samples: np.ndarray) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm.tobytes())


@step()
def synthesize_voice(ctx: StepContext, params: VoiceParams, write_script: Script) -> VoiceOut:
    total = round(write_script.duration_s * RATE)
    speaker = find_speaker() if params.voice else None
    if speaker is not None and speaker.name == "espeak-ng-library":
        samples, engine = narration_apart(write_script.scenes, total), speaker.name
    elif speaker is not None:
        samples, engine = narration(speaker, write_script.scenes, total), speaker.name
    else:
        samples, engine = tone_bed(write_script.scenes, total), "tone-bed"
    with ctx.artifact("voice.wav") as wav:
        write_wav(wav.path, samples)
    return VoiceOut(
        engine=engine,
        sample_rate=RATE,
        duration_s=total / RATE,
        audio=wav.artifact,
    )


def _speak_apart(request: Path, result: Path) -> None:
    """The child's side of `narration_apart`."""
    data = json.loads(request.read_text())
    speaker = find_speaker()
    assert speaker is not None, "no eSpeak NG library in the child"
    scenes = [Scene.model_validate(s) for s in data["scenes"]]
    np.save(result, narration(speaker, scenes, int(data["total"])))


if __name__ == "__main__":
    _speak_apart(Path(sys.argv[1]), Path(sys.argv[2]))
