"""eSpeak NG through ctypes, with its word events; and the child process `speak_all` runs.

This module imports nothing of reelflow (only the standard library and NumPy), so the
child (`python espeak.py lines.json spoken.npz`) starts in a tenth of a second: the
library keeps state between calls, and a fresh process for each batch of lines is what
makes the same lines give the same samples and timings every time.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
        return Spoken(resampled(samples, self.rate), words)


def resampled(pcm: np.ndarray, rate: int) -> np.ndarray:
    samples = pcm.astype(np.float32) / 32768.0
    if rate != RATE:  # linear resample; eSpeak NG speaks at 22050 Hz already
        positions = np.arange(0, len(samples), rate / RATE)
        samples = np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)
    return samples


def library() -> EspeakLibrary:
    """The library the espeakng-loader package ships (OSError/ImportError: none here)."""
    import espeakng_loader

    return EspeakLibrary(espeakng_loader.get_library_path(), espeakng_loader.get_data_path())


def _child(request: Path, result: Path) -> None:
    speaker = library()
    spoken = [speaker.speak(text, wpm) for text, wpm in json.loads(request.read_text())]
    samples = np.concatenate([s.samples for s in spoken]) if spoken else np.zeros(0, np.float32)
    ends = np.cumsum([len(s.samples) for s in spoken]).astype(np.int64)
    words = json.dumps([s.words for s in spoken])
    np.savez(result, samples=samples, ends=ends, words=np.array(words))


if __name__ == "__main__":
    _child(Path(sys.argv[1]), Path(sys.argv[2]))
