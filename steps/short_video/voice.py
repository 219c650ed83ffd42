"""synthesize_voice: the video's sound track, as long as the video.

With `voice` on, every phrase is spoken by eSpeak NG at the rate and the moment the script
timed it (the same lines in the same order, in a fresh process: the same samples the script
measured), so the captions' word times are the voice's. A phrase an operator rewrote, longer
than its window, is spoken faster to fit. Under it, a music bed (generated, or the
uploaded `music` asset) ducks while the voice speaks, and the mix is normalised to -14 LUFS
with its true peak under -1 dBTP. With no voice, or no speech engine, the music alone.

The mix is normalised for the platforms: -14 LUFS integrated and a true peak at most
-1 dBTP (ITU-R BS.1770, measured with pyloudnorm; true peak on the signal oversampled four
times). The AAC encoder can add a few tenths of a dB of overshoot, so the mix aims lower
(TARGET_PEAK_DBTP), and compose checks the encoded peak.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import av
import numpy as np
import pyloudnorm
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import resample_poly

from steps import StepContext, step
from steps.short_video.models import Scene, Script, VoiceOut, VoiceParams
from steps.short_video.speech import RATE, Spoken, engine_version, find_speaker, speak_all

TARGET_LUFS = -14.0
TARGET_PEAK_DBTP = -3.0
#: How far the music sits under the voice while it speaks (and, quieter, between lines).
MUSIC_GAIN, DUCK_DEPTH = 0.3, 0.8
_PROGRESSION = ((0, 4, 7), (-3, 0, 4), (-7, -3, 0), (-5, -1, 2))  # I vi IV V, in semitones
_ROOT_HZ, _BPM = 196.0, 96


def music_bed(total: int, seed: int) -> np.ndarray:
    """A calm generated bed: a pad on a I-vi-IV-V progression, a bar a chord, with a soft
    plucked arpeggio on the beats. `seed` picks the key (same seed, same samples)."""
    t = np.arange(total, dtype=np.float64) / RATE
    beat = 60.0 / _BPM
    bar = 4 * beat
    key = 2 ** ((seed % 5) / 12)
    out = np.zeros(total, np.float64)
    for index in range(math.ceil(total / RATE / bar)):
        start = int(index * bar * RATE)
        end = min(total, int((index + 1) * bar * RATE) + int(0.5 * RATE))
        if start >= total:
            break
        local = t[start:end] - index * bar
        chord = _PROGRESSION[index % len(_PROGRESSION)]
        envelope = np.minimum(1.0, local / 0.6) * np.clip((bar + 0.5 - local) / 0.5, 0.0, 1.0)
        pad = sum(np.sin(2 * np.pi * _ROOT_HZ * key * 2 ** (n / 12) * local) for n in chord)
        out[start:end] += 0.18 * pad * envelope
        for b in range(4):  # the arpeggio: one note a beat, decaying
            at = b * beat
            since = local - at
            note = _ROOT_HZ * 2 * key * 2 ** (chord[b % 3] / 12)
            pluck = np.where(since >= 0, np.exp(-np.maximum(since, 0) * 5.0), 0.0)
            out[start:end] += 0.12 * pluck * np.sin(2 * np.pi * note * np.maximum(since, 0))
    fade = min(total, int(1.5 * RATE))
    if fade:
        out[-fade:] *= np.linspace(1.0, 0.0, fade)
    return out.astype(np.float32)


def fitted(track: np.ndarray, total: int) -> np.ndarray:
    """An uploaded track looped (with a short crossfade) or cut to `total` samples, with a
    fade in and out."""
    if len(track) == 0:
        return np.zeros(total, np.float32)
    out = np.array(track[:total], np.float32)
    cross = min(int(0.5 * RATE), len(track) // 4)
    while len(out) < total:
        nxt = np.array(track, np.float32)
        if cross:
            ramp = np.linspace(0.0, 1.0, cross, dtype=np.float32)
            out[-cross:] = out[-cross:] * (1 - ramp) + nxt[:cross] * ramp
            nxt = nxt[cross:]
        out = np.concatenate([out, nxt])[:total]
    edge = min(total // 4, int(1.0 * RATE))
    if edge:
        out[:edge] *= np.linspace(0.0, 1.0, edge, dtype=np.float32)
        out[-edge:] *= np.linspace(1.0, 0.0, edge, dtype=np.float32)
    return out


def activity(voice: np.ndarray) -> np.ndarray:
    """0..1 per sample: how much the voice is speaking (its envelope, quick to rise and
    slow to fall, so the music does not pump between words)."""
    hop = int(0.02 * RATE)
    frames = max(1, math.ceil(len(voice) / hop))
    padded = np.zeros(frames * hop, np.float32)
    padded[: len(voice)] = np.abs(voice)
    level = padded.reshape(frames, hop).max(axis=1)
    on = (level > 0.02).astype(np.float32)
    smooth = np.zeros(frames, np.float32)
    state = 0.0
    for i, value in enumerate(on):  # attack 40 ms, release 400 ms
        rate = 0.5 if value > state else 0.05
        state += (value - state) * rate
        smooth[i] = state
    return np.repeat(smooth, hop)[: len(voice)]


def true_peak_dbtp(samples: np.ndarray) -> float:
    peak = float(np.max(np.abs(resample_poly(samples.astype(np.float64), 4, 1))))
    return 20 * math.log10(peak) if peak > 0 else -120.0


def loudness_lufs(samples: np.ndarray) -> float:
    meter = pyloudnorm.Meter(RATE)
    return float(meter.integrated_loudness(samples.astype(np.float64)))


def _limit(samples: np.ndarray, ceiling: float) -> np.ndarray:
    """Gain reduction wherever the oversampled signal would pass `ceiling` (linear): the
    needed gain held over 10 ms around each peak, then smoothed over 5 ms (an average of
    a minimum over a wider window never rises above the minimum at the peak)."""
    over = np.abs(resample_poly(samples.astype(np.float64), 4, 1)).reshape(-1, 4).max(axis=1)
    need = np.minimum(1.0, ceiling / np.maximum(over[: len(samples)], 1e-9))
    ahead = int(0.005 * RATE)
    held = minimum_filter1d(need, size=4 * ahead + 1)
    gain = np.asarray(uniform_filter1d(held, size=2 * ahead + 1), np.float64)
    limited: np.ndarray = (samples * gain).astype(np.float32)
    return limited


def normalised(samples: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The mix at TARGET_LUFS with its true peak under TARGET_PEAK_DBTP; returns it, its
    loudness and its true peak as measured."""
    out = samples.astype(np.float32)
    if not np.any(out):
        return out, -120.0, -120.0
    ceiling = 10 ** (TARGET_PEAK_DBTP / 20)
    for _ in range(8):  # gain to the target, limit the peaks, measure again
        gain = 10 ** ((TARGET_LUFS - loudness_lufs(out)) / 20)
        out = (out * gain).astype(np.float32)
        if true_peak_dbtp(out) <= TARGET_PEAK_DBTP:
            break
        out = _limit(out, ceiling * 0.98)
    return out, loudness_lufs(out), true_peak_dbtp(out)


def mix(voice: np.ndarray, music: np.ndarray) -> np.ndarray:
    """The voice over the music, the music ducked while the voice speaks."""
    duck = 1.0 - DUCK_DEPTH * activity(voice)
    return (voice + MUSIC_GAIN * music[: len(voice)] * duck).astype(np.float32)


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


@step(key_extra=engine_version)  # the program's voice, or none, is not the library's
def synthesize_voice(ctx: StepContext, params: VoiceParams, write_script: Script) -> VoiceOut:
    total = round(write_script.duration_s * RATE)
    spoken = narration(write_script.scenes, total) if params.voice else None
    engine, voice = spoken if spoken else ("none", np.zeros(total, np.float32))
    if params.music is not None:
        music = fitted(load_track(ctx.local(ctx.asset(params.music))), total)
    else:
        music = music_bed(total, seed=len(write_script.trend_id))
    samples, lufs, peak = normalised(mix(voice, music))
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
