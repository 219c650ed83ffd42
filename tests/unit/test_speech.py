"""Speech on a machine with nothing from apt: the eSpeak NG library the espeakng-loader
package ships speaks, at the rate asked, and the voice step uses it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from steps.short_video import speech


def test_the_packaged_library_speaks() -> None:
    loader = pytest.importorskip("espeakng_loader", reason="espeakng-loader is a dependency")
    speaker = speech.EspeakLibrary(loader.get_library_path(), loader.get_data_path())
    text = "The bees are back in town, and they brought friends."
    spoken = speaker.speak(text, 140)
    slow, fast = spoken.samples, speaker.speak(text, 280).samples
    assert 1.5 < len(slow) / speech.RATE < 6, len(slow) / speech.RATE
    assert len(fast) < 0.8 * len(slow)  # the rate is honoured
    assert np.abs(slow).max() > 0.1  # not silence
    assert slow.dtype == np.float32
    # The synthesizer's own word timings: one per word, in order, inside the audio.
    assert [text[pos : pos + n] for pos, n, _ in spoken.words][:3] == ["The", "bees", "are"]
    starts = [at for _, _, at in spoken.words]
    assert len(starts) == len(text.split()) and starts == sorted(starts)
    assert 0 <= starts[0] < starts[-1] < spoken.seconds


def test_a_machine_without_the_program_still_gets_speech(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(speech, "_speaker", None)
    found = speech.find_speaker()
    assert found is not None and found.name == "espeak-ng-library"
