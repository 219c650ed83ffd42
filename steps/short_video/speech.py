"""Text to speech with eSpeak NG, with the synthesizer's own word timings.

The library the `espeakng-loader` package ships is preferred (a fresh machine with nothing
from apt speaks, and it reports when each word starts); the system's `espeak-ng` program is
the fallback (no word events: they are estimated from the characters). The library keeps
state between calls, so `speak_all` runs it in a fresh process (steps.short_video.espeak,
which starts in a tenth of a second): the same lines give the
same samples and timings every time, whoever asks (the script to time itself, the voice to
speak it), and a resumed run's video is byte for byte a clean run's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import wave
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
import structlog

from steps.short_video import espeak
from steps.short_video.espeak import RATE, EspeakLibrary, Spoken, library, resampled

__all__ = [
    "RATE", "EspeakLibrary", "Speaker", "Spoken", "engine_version", "find_speaker", "speak_all",
]  # fmt: skip

log = structlog.get_logger("reelflow.speech")


class Speaker(Protocol):
    name: str

    def speak(self, text: str, wpm: int) -> Spoken:
        """`text` spoken at `wpm` words a minute."""
        ...


class EspeakProgram:
    """The `espeak-ng` command line (no word events)."""

    name = "espeak-ng"

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def speak(self, text: str, wpm: int) -> Spoken:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "line.wav"
            subprocess.run(
                [self.binary, "-v", "en-us", "-s", str(wpm), "-w", str(out), "--", text],
                check=True,
                capture_output=True,
                timeout=60,
            )
            with wave.open(str(out)) as wav:
                rate, frames = wav.getframerate(), wav.readframes(wav.getnframes())
        return Spoken(resampled(np.frombuffer(frames, dtype="<i2"), rate), [])


_speaker: tuple[int, Speaker | None] | None = None


def find_speaker() -> Speaker | None:
    """The best speaker this machine has (found once per process)."""
    global _speaker
    if _speaker is not None and _speaker[0] == os.getpid():
        return _speaker[1]
    found: Speaker | None = None
    try:
        found = library()
    except (ImportError, OSError, RuntimeError) as exc:
        binary = shutil.which("espeak-ng")
        if binary:
            found = EspeakProgram(binary)
        else:
            log.warning("no_speech_engine", error=repr(exc), fallback="music only")
    _speaker = (os.getpid(), found)
    return found


def engine_version() -> str:
    """Which speech this machine makes, for the keys of the steps that speak or time speech
    (a voice made by the program, or by none, is not the library's): the speaker's name,
    with the library package's version."""
    speaker = find_speaker()
    if speaker is None:
        return "none"
    return (
        f"{speaker.name}:{_package_version()}"
        if speaker.name == "espeak-ng-library"
        else speaker.name
    )


@lru_cache(maxsize=1)
def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("espeakng-loader")
    except PackageNotFoundError:
        return "unknown"


def speak_all(lines: list[tuple[str, int]]) -> tuple[str, list[Spoken]] | None:
    """Each (text, words a minute) spoken, in order, by a speaker in a fresh state: the
    library in a child process of its own, the program here. None: no speaker."""
    speaker = find_speaker()
    if speaker is None:
        return None
    if speaker.name != EspeakLibrary.name:
        return speaker.name, [speaker.speak(text, wpm) for text, wpm in lines]
    with tempfile.TemporaryDirectory() as tmp:
        request, result = Path(tmp) / "lines.json", Path(tmp) / "spoken.npz"
        request.write_text(json.dumps(lines))
        subprocess.run(
            [sys.executable, str(Path(espeak.__file__)), str(request), str(result)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        with np.load(result) as data:
            samples, ends = data["samples"], data["ends"].tolist()
            words = json.loads(str(data["words"]))
    starts = [0, *ends[:-1]]
    spoken = [
        Spoken(samples[a:b].astype(np.float32), [tuple(w) for w in found])
        for a, b, found in zip(starts, ends, words, strict=True)
    ]
    return speaker.name, spoken
