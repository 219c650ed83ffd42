"""Text to speech with eSpeak NG: the system's `espeak-ng` program when it is installed,
else the library and voice data the `espeakng-loader` package ships (so a fresh machine
with nothing from apt still speaks), else nothing (the caller falls back to a tone bed).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
import threading
import wave
from pathlib import Path
from typing import Protocol

import numpy as np
import structlog

log = structlog.get_logger("reelflow.speech")

RATE = 22050
_SYNCHRONOUS, _RATE_PARAMETER, _UTF8, _POS_CHARACTER = 2, 1, 1, 1


class Speaker(Protocol):
    name: str

    def speak(self, text: str, wpm: int) -> np.ndarray:
        """`text` spoken at `wpm` words a minute, as float32 samples at RATE."""
        ...


class EspeakProgram:
    """The `espeak-ng` command line."""

    name = "espeak-ng"

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def speak(self, text: str, wpm: int) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "line.wav"
            subprocess.run(
                [self.binary, "-v", "en-us", "-s", str(wpm), "-w", str(out), text],
                check=True,
                capture_output=True,
                timeout=60,
            )
            with wave.open(str(out)) as wav:
                rate, frames = wav.getframerate(), wav.readframes(wav.getnframes())
        return _resampled(np.frombuffer(frames, dtype="<i2"), rate)


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class EspeakLibrary:
    """libespeak-ng through ctypes, synchronous mode: each call returns its samples."""

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
        self.callback = _Callback(self._collect)  # kept referenced while the library holds it
        self.lib.espeak_SetSynthCallback(self.callback)
        self.lock = threading.Lock()  # the library keeps global state

    def _collect(self, wav: ctypes._Pointer[ctypes.c_short], count: int, events: int) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def speak(self, text: str, wpm: int) -> np.ndarray:
        data = text.encode("utf-8")
        with self.lock:
            self.chunks = []
            self.lib.espeak_SetParameter(_RATE_PARAMETER, wpm, 0)
            failed = self.lib.espeak_Synth(
                ctypes.c_char_p(data), len(data) + 1, 0, _POS_CHARACTER, 0, _UTF8, None, None
            )
            self.lib.espeak_Synchronize()
            samples = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        if failed:
            raise OSError(f"espeak-ng library refused the text (error {failed})")
        return _resampled(samples, self.rate)


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
    binary = shutil.which("espeak-ng")
    if binary:
        found = EspeakProgram(binary)
    else:
        try:
            import espeakng_loader

            found = EspeakLibrary(
                espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
            )
        except (ImportError, OSError, RuntimeError) as exc:
            log.warning("no_speech_engine", error=repr(exc), fallback="tone bed")
    _speaker = (os.getpid(), found)
    return found
