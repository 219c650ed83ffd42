"""Text to speech with eSpeak NG, with the synthesizer's own word timings.

The library the `espeakng-loader` package ships is preferred (a fresh machine with nothing
from apt speaks, and it reports when each word starts); the system's `espeak-ng` program is
the fallback (no word events: they are estimated from the characters). The library keeps
state between calls, so `speak_all` runs it in a fresh process: the same lines give the
same samples and timings every time, whoever asks (the script to time itself, the voice to
speak it), and a resumed run's video is byte for byte a clean run's.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import structlog

log = structlog.get_logger("reelflow.speech")

RATE = 22050
_SYNCHRONOUS, _RATE_PARAMETER, _UTF8, _POS_CHARACTER = 2, 1, 1, 1
_EVENT_END_OF_LIST, _EVENT_WORD = 0, 1


@dataclass(frozen=True)
class Spoken:
    """A line spoken: float32 samples at RATE, and each word's (first character, length,
    start in seconds) as the synthesizer reported it (empty: not reported)."""

    samples: np.ndarray
    words: list[tuple[int, int, float]]

    @property
    def seconds(self) -> float:
        return len(self.samples) / RATE


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
        return Spoken(_resampled(np.frombuffer(frames, dtype="<i2"), rate), [])


class _Event(ctypes.Structure):
    """espeak_EVENT (speak_lib.h)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class EspeakLibrary:
    """libespeak-ng through ctypes, synchronous mode: each call returns its samples and the
    word events (each word's character position and first sample)."""

    name = "espeak-ng-library"

    def __init__(self, library: str, data_dir: str) -> None:
        self.lib = ctypes.CDLL(library)
        self.lib.espeak_Initialize.restype = ctypes.c_int
        # The library wants the folder that holds `espeak-ng-data`.
        self.rate = self.lib.espeak_Initialize(
            _SYNCHRONOUS, 0, os.path.dirname(data_dir).encode(), 0
        )
        if self.rate <= 0 or self.lib.espeak_SetVoiceByName(b"en-us") != 0:
            raise OSError("espeak-ng library did not initialise")
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[int, int, int]] = []
        self.callback = _Callback(self._collect)  # kept referenced while the library holds it
        self.lib.espeak_SetSynthCallback(self.callback)
        self.lock = threading.Lock()  # the library keeps global state

    def _collect(self, wav: ctypes._Pointer[ctypes.c_short], count: int, events: object) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        at = 0
        while events and events[at].type != _EVENT_END_OF_LIST:  # type: ignore[index]
            event = events[at]  # type: ignore[index]
            if event.type == _EVENT_WORD:
                self.events.append((event.text_position - 1, event.length, event.sample))
            at += 1
        return 0

    def speak(self, text: str, wpm: int) -> Spoken:
        data = text.encode("utf-8")
        with self.lock:
            self.chunks, self.events = [], []
            self.lib.espeak_SetParameter(_RATE_PARAMETER, wpm, 0)
            failed = self.lib.espeak_Synth(
                ctypes.c_char_p(data), len(data) + 1, 0, _POS_CHARACTER, 0, _UTF8, None, None
            )
            self.lib.espeak_Synchronize()
            samples = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
            events = list(self.events)
        if failed:
            raise OSError(f"espeak-ng library refused the text (error {failed})")
        words = [(pos, length, sample / self.rate) for pos, length, sample in events]
        return Spoken(_resampled(samples, self.rate), words)


def _resampled(pcm: np.ndarray, rate: int) -> np.ndarray:
    samples = pcm.astype(np.float32) / 32768.0
    if rate != RATE:  # linear resample; eSpeak NG speaks at 22050 Hz already
        positions = np.arange(0, len(samples), rate / RATE)
        samples = np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)
    return samples


_speaker: tuple[int, Speaker | None] | None = None


def find_speaker() -> Speaker | None:
    """The best speaker this machine has (found once per process)."""
    global _speaker
    if _speaker is not None and _speaker[0] == os.getpid():
        return _speaker[1]
    found: Speaker | None = None
    try:
        import espeakng_loader

        found = EspeakLibrary(espeakng_loader.get_library_path(), espeakng_loader.get_data_path())
    except (ImportError, OSError, RuntimeError) as exc:
        binary = shutil.which("espeak-ng")
        if binary:
            found = EspeakProgram(binary)
        else:
            log.warning("no_speech_engine", error=repr(exc), fallback="music only")
    _speaker = (os.getpid(), found)
    return found


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
            [sys.executable, "-m", "steps.short_video.speech", str(request), str(result)],
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


def _speak_in_child(request: Path, result: Path) -> None:
    """The child's side of `speak_all`."""
    speaker = find_speaker()
    assert speaker is not None, "no eSpeak NG library in the child"
    spoken = [speaker.speak(text, wpm) for text, wpm in json.loads(request.read_text())]
    samples = np.concatenate([s.samples for s in spoken]) if spoken else np.zeros(0, np.float32)
    ends = np.cumsum([len(s.samples) for s in spoken]).astype(np.int64)
    words = json.dumps([s.words for s in spoken])
    np.savez(result, samples=samples, ends=ends, words=np.array(words))


if __name__ == "__main__":
    _speak_in_child(Path(sys.argv[1]), Path(sys.argv[2]))
