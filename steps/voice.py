"""synthesize_voice: one WAV narration track as long as the video.

With espeak-ng installed (and `voice` on), each scene's narration is spoken and placed at
the scene's start, sped up if it would overrun the scene. Without it, a generated audio
bed (a soft chord per scene) of the same length stands in. The output records which.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from steps.models import Artifact, StepContext
from steps.task import step
from steps.video_models import Scene, Script, ShortVideoParams, VoiceOut

RATE = 22050
BASE_WPM = 165
MAX_WPM = 320


def espeak_binary() -> str | None:
    return shutil.which("espeak-ng")


def speak(binary: str, text: str, wpm: int) -> np.ndarray:
    """espeak-ng's rendering of `text` as float32 samples at RATE."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "line.wav"
        subprocess.run(
            [binary, "-v", "en-us", "-s", str(wpm), "-w", str(out), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        with wave.open(str(out)) as wav:
            rate, frames = wav.getframerate(), wav.readframes(wav.getnframes())
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    if rate != RATE:  # linear resample; espeak-ng speaks at 22050 Hz already
        positions = np.arange(0, len(samples), rate / RATE)
        samples = np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)
    return samples


def narration(binary: str, scenes: list[Scene], total: int) -> np.ndarray:
    track = np.zeros(total, np.float32)
    for scene in scenes:
        room = int(scene.duration_s * RATE) - int(0.15 * RATE)
        samples = speak(binary, scene.narration, BASE_WPM)
        if len(samples) > room:  # speak faster to fit the scene
            wpm = min(MAX_WPM, math.ceil(BASE_WPM * len(samples) / room * 1.05))
            samples = speak(binary, scene.narration, wpm)[:room]
        start = int(scene.start_s * RATE) + int(0.1 * RATE)
        end = min(total, start + len(samples))
        track[start:end] += samples[: end - start]
    return track


def tone_bed(scenes: list[Scene], total: int) -> np.ndarray:
    """A soft major chord per scene, rooted on a note that steps with the scene index."""
    track = np.zeros(total, np.float32)
    roots = (220.0, 246.94, 261.63, 293.66, 329.63, 349.23, 392.0, 440.0)
    for scene in scenes:
        start, length = int(scene.start_s * RATE), int(scene.duration_s * RATE)
        t = np.arange(length, dtype=np.float32) / RATE
        root = roots[scene.index % len(roots)]
        chord = sum(np.sin(2 * np.pi * root * ratio * t) for ratio in (1.0, 1.25, 1.5))
        envelope = np.minimum(1.0, np.minimum(t / 0.3, (scene.duration_s - t) / 0.3))
        segment = (0.12 * chord * envelope).astype(np.float32)
        track[start : start + length] += segment[: max(0, total - start)]
    return track


def write_wav(path: Path, samples: np.ndarray) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm.tobytes())


@step()
def synthesize_voice(ctx: StepContext, params: ShortVideoParams, write_script: Script) -> VoiceOut:
    total = round(write_script.duration_s * RATE)
    binary = espeak_binary() if params.voice else None
    if binary:
        samples, engine = narration(binary, write_script.scenes, total), "espeak-ng"
    else:
        samples, engine = tone_bed(write_script.scenes, total), "tone-bed"
    with ctx.artifact("voice.wav") as tmp:
        write_wav(tmp, samples)
    return VoiceOut(
        engine=engine,
        sample_rate=RATE,
        duration_s=total / RATE,
        audio=Artifact.of(ctx.artifact_dir / "voice.wav"),
    )
