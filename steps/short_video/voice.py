"""synthesize_voice: the video's sound track, as long as the video.

With `voice` on, every phrase is spoken by eSpeak NG at the rate and the moment the script
timed it (the same lines in the same order, in a fresh process: the same samples the script
measured), so the captions' word times are the voice's. A phrase an operator rewrote, longer
than its window, is spoken faster to fit. Under it, a music bed (generated, or the
uploaded `music` asset) ducks while the voice speaks, and the mix is normalised to -14 LUFS
with its true peak under -1 dBTP (steps.short_video.audio). With no voice, or no speech
engine, the music alone.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import av
import numpy as np

from steps import StepContext, step
from steps.short_video import audio
from steps.short_video.models import Scene, Script, VoiceOut, VoiceParams
from steps.short_video.speech import RATE, Spoken, find_speaker, speak_all

MAX_WPM = 320


def _starts(scenes: list[Scene]) -> list[float]:
    """Where each scene starts in the video (scenes carry no absolute time)."""
    out, at = [], 0.0
    for scene in scenes:
        out.append(at)
        at += scene.duration_s
    return out


def narration(scenes: list[Scene], total: int) -> tuple[str, np.ndarray] | None:
    """Each phrase spoken in its window; None when no speech engine is there."""
    placed = [
        (phrase, offset + phrase.start_s)
        for scene, offset in zip(scenes, _starts(scenes), strict=True)
        for phrase in scene.phrases
    ]
    spoken = speak_all([(p.text, p.wpm) for p, _ in placed])
    if spoken is None:
        return None
    engine, lines = spoken
    track = np.zeros(total, np.float32)
    for (phrase, start_s), line in zip(placed, lines, strict=True):
        room = max(1, int((phrase.duration_s + 0.05) * RATE))
        samples = _fitted(line, phrase.text, phrase.wpm, room)
        start = round(start_s * RATE)
        end = min(total, start + len(samples))
        track[start:end] += samples[: max(0, end - start)]
    return engine, track


def _fitted(line: Spoken, text: str, wpm: int, room: int) -> np.ndarray:
    """The phrase as timed; one rewritten to be longer than its window, spoken faster."""
    if len(line.samples) <= room:
        return line.samples
    speaker = find_speaker()
    assert speaker is not None
    faster = min(MAX_WPM, math.ceil(wpm * len(line.samples) / room * 1.05))
    return speaker.speak(text, faster).samples[:room]


def load_track(path: Path) -> np.ndarray:
    """An uploaded audio file as mono float32 samples at RATE."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
    chunks = []
    with av.open(str(path)) as source:
        for frame in source.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def write_wav(path: Path, samples: np.ndarray) -> None:
    pcm = np.rint(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm.tobytes())


@step()
def synthesize_voice(ctx: StepContext, params: VoiceParams, write_script: Script) -> VoiceOut:
    total = round(write_script.duration_s * RATE)
    spoken = narration(write_script.scenes, total) if params.voice else None
    engine, voice = spoken if spoken else ("none", np.zeros(total, np.float32))
    if params.music is not None:
        music = audio.fitted(load_track(ctx.local(ctx.asset(params.music))), total)
    else:
        music = audio.music_bed(total, seed=len(write_script.trend_id))
    samples, lufs, peak = audio.normalised(audio.mix(voice, music))
    with ctx.artifact("voice.wav") as wav:
        write_wav(wav.path, samples)
    return VoiceOut(
        engine=engine,
        sample_rate=RATE,
        duration_s=total / RATE,
        audio=wav.artifact,
        music=str(params.music) if params.music else "generated",
        loudness_lufs=round(lufs, 2),
        true_peak_dbtp=round(peak, 2),
    )
