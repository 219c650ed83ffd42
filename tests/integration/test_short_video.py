"""short_video end to end through a real worker: a real, playable MP4 comes out."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import av
import numpy as np
import pytest

from db.states import RunStatus
from tests.support import WorkerProcess, attempt_rows, step_rows, wait_run
from workflows.runs.operations import resume_run, retry_step, start_run

pytestmark = [pytest.mark.usefixtures("worker"), pytest.mark.slow]

SMALL = {"length_seconds": 15, "width": 180, "height": 320, "fps": 12, "topic": "coral ocean"}


async def _run(worker: WorkerProcess, cache: bool = True, **params: object) -> uuid.UUID:
    run_id = (await start_run("short_video", {**SMALL, **params}, cache=cache)).run.id
    await wait_run(run_id, worker=worker, timeout=180)
    return run_id


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


async def test_short_video_makes_a_playable_video(worker: WorkerProcess) -> None:
    run_id = await _run(worker)
    steps = await step_rows(run_id)
    assert all(s.status.value == "succeeded" for s in steps.values()), steps
    scenes = steps["write_script"].output["scenes"]
    assert 3 <= len(scenes) <= 8
    assert sorted(k for k in steps if k.startswith("render_scene[")) == [
        f"render_scene[{i}]" for i in range(len(scenes))
    ]
    assert steps["render_scene[0]"].queue == "gpu"

    video = steps["compose_video"].output["video"]
    assert _sha(video["path"]) == video["sha256"]
    with av.open(video["path"]) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (180, 320)
        assert stream.average_rate == 12
        assert container.streams.audio, "no audio stream"
        duration = float(container.duration) / av.time_base
        assert abs(duration - 15) < 0.5, duration
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert abs(len(frames) - 15 * 12) <= 1
    middle = frames[len(frames) // 2]
    assert middle.std() > 10 and middle.mean() > 10  # not blank
    assert not np.array_equal(frames[0], frames[-1])

    published = steps["publish"].output
    meta = json.loads(Path(published["metadata"]["path"]).read_text())
    assert meta["sha256"] == video["sha256"] and meta["run_id"] == str(run_id)
    assert Path(published["video"]["path"]).read_bytes() == Path(video["path"]).read_bytes()
    assert Path(steps["compose_video"].output["thumbnail"]["path"]).read_bytes()[:4] == b"\x89PNG"


async def test_failed_render_resumes_only_downstream_with_identical_video(
    worker: WorkerProcess,
) -> None:
    clean = await _run(worker)
    clean_sha = (await step_rows(clean))["compose_video"].output["video"]["sha256"]

    run_id = (
        await start_run("short_video", {**SMALL, "max_attempts": 1}, faults={"render_scene[1]": 1})
    ).run.id
    run = await wait_run(run_id, worker=worker, timeout=180)
    assert run.status is RunStatus.FAILED and run.error and run.error["step"] == "render_scene[1]"
    for _ in range(300):  # let sibling renders finish
        steps = await step_rows(run_id)
        if not any(s.status.value in ("running", "queued", "retrying") for s in steps.values()):
            break
        import asyncio

        await asyncio.sleep(0.1)
    await resume_run(run_id, actor="test")
    run = await wait_run(run_id, worker=worker, timeout=180)
    assert run.status is RunStatus.SUCCEEDED, run.error
    attempts = {k: s.attempts for k, s in (await step_rows(run_id)).items()}
    rerun = {k for k, n in attempts.items() if n != 1}
    assert rerun == {"render_scene[1]"}, attempts
    assert attempts["render_scene[1]"] == 2
    assert attempts["compose_video"] == 1 and attempts["publish"] == 1
    sha = (await step_rows(run_id))["compose_video"].output["video"]["sha256"]
    assert sha == clean_sha


async def test_retrying_a_render_overwrites_its_segment_and_leaves_no_strays(
    worker: WorkerProcess,
) -> None:
    run_id = await _run(worker, cache=False)  # its own renders, not an earlier run's
    before = (await step_rows(run_id))["render_scene[0]"].output["video"]
    folder = Path(before["path"]).parent
    await retry_step(run_id, "render_scene[0]", actor="test")
    await wait_run(run_id, worker=worker, timeout=180)
    steps = await step_rows(run_id)
    after = steps["render_scene[0]"].output["video"]
    assert steps["render_scene[0]"].attempts == 2
    assert after["path"] == before["path"] and after["sha256"] == before["sha256"]
    assert sorted(p.name for p in folder.iterdir()) == ["segment.mp4"]
    assert [a.status for a in await attempt_rows(run_id, "render_scene[0]")] == [
        "succeeded",
        "succeeded",
    ]
    compose_dir = Path(steps["compose_video"].output["video"]["path"]).parent
    assert sorted(p.name for p in compose_dir.iterdir()) == ["thumbnail.png", "video.mp4"]
