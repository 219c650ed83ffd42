"""The video a creator would post, through the real API, worker, PostgreSQL and Redis: any
topic is served offline (its words in the narration), the narration fills the video, an
uploaded image is the background of its scene, an uploaded track is the music bed, and
the mix is normalised."""

from __future__ import annotations

import io
import math
import uuid
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
from PIL import Image

from tests.support import ApiProcess, WorkerProcess, wait_run

pytestmark = pytest.mark.slow

SMALL = {"length_seconds": 15, "width": 180, "height": 320, "fps": 12}


@pytest.fixture(scope="module")
def client(api: ApiProcess) -> Iterator[httpx.Client]:
    with api.client(timeout=60) as c:
        yield c


async def _made(client: httpx.Client, worker: WorkerProcess, **params: Any) -> dict[str, Any]:
    created = client.post("/runs", json={"workflow": "short_video", "params": {**SMALL, **params}})
    assert created.status_code in (201, 202), created.text
    run_id = uuid.UUID(created.json()["id"])
    final = await wait_run(run_id, worker=worker, timeout=240)
    assert final.status.value == "succeeded", final
    run = client.get(f"/runs/{run_id}").json()
    return {s["key"]: s["output"] for s in run["steps"]}


@pytest.mark.parametrize("topic", ["volcano", "honey bee", "Ada Lovelace", "Ünïcödé tést"])
async def test_any_topic_is_served_offline_and_its_narration_fills_the_video(
    client: httpx.Client, worker: WorkerProcess, topic: str
) -> None:
    out = await _made(client, worker, topic=topic)
    script = out["write_script"]
    narration = " ".join(s["narration"] for s in script["scenes"]).lower()
    assert topic.lower() in narration, narration  # a script about the topic
    assert script["title"] == topic and script["writer"].startswith("offline")
    total = sum(s["duration_s"] for s in script["scenes"])
    assert abs(total - 15) < 1e-6
    spoken = sum(p["duration_s"] for s in script["scenes"] for p in s["phrases"])
    assert spoken / total >= 0.85, spoken / total  # speech covers the video
    assert script["scenes"][-1]["narration"].startswith("That's")  # the outro, whole
    for scene in script["scenes"]:  # a word time for every word, in order, in its scene
        for phrase in scene["phrases"]:
            starts = [w["start_s"] for w in phrase["words"]]
            assert len(starts) == len(phrase["text"].split(" ")) and starts == sorted(starts)
            assert starts[0] >= 0 and phrase["start_s"] + phrase["duration_s"] <= scene[
                "duration_s"] + 1e-6  # fmt: skip
    voice = out["synthesize_voice"]
    assert voice["engine"].startswith("espeak") and abs(voice["loudness_lufs"] + 14) <= 1
    assert voice["true_peak_dbtp"] <= -1 and out["compose_video"]["true_peak_dbtp"] <= -1


def _thirds(width: int = 1600, height: int = 900) -> bytes:
    """A landscape PNG: red, green and blue thirds. Centre-cropped to 9:16, only green
    remains (the middle third is wider than the crop)."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 3] = (220, 30, 30)
    image[:, width // 3 : 2 * width // 3] = (30, 200, 60)
    image[:, 2 * width // 3 :] = (30, 30, 220)
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def _tone_wav(seconds: float = 3.0, rate: int = 22050) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * math.pi * 330 * t) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


def _upload(client: httpx.Client, name: str, data: bytes) -> dict[str, Any]:
    sent = client.post("/assets", files={"file": (name, data)},
                       headers={"X-Requested-With": "test"})  # fmt: skip
    assert sent.status_code in (200, 201), sent.text
    return dict(sent.json())


async def test_an_uploaded_image_is_the_background_and_a_track_the_music(
    client: httpx.Client, worker: WorkerProcess
) -> None:
    image = _upload(client, "thirds.png", _thirds())
    music = _upload(client, "tone.wav", _tone_wav())
    assert (image["kind"], music["kind"]) == ("image", "audio")
    out = await _made(client, worker, topic="volcano", images=[image["id"]], music=music["id"])
    scene = out["write_script"]["scenes"][0]
    assert scene["background"]["sha256"] == image["sha256"]
    with av.open(out["render_scene[0]"]["video"]["path"]) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    middle = frames[len(frames) // 2]
    top = middle[: middle.shape[0] // 4].reshape(-1, 3).mean(axis=0)  # above the captions
    assert top[1] > 150 and top[0] < 80 and top[2] < 100, top  # the green third, after the crop
    voice = out["synthesize_voice"]
    assert voice["music"] == music["id"] and abs(voice["loudness_lufs"] + 14) <= 1
    published = Path(out["publish"]["video"]["path"])
    assert published.exists()
