"""Workers on several hosts: a CPU worker and GPU-queue workers that share nothing but
PostgreSQL, the broker and object storage (moto's S3 server over HTTP). Each "host" has its
own home, artifact, publish and scratch folders, so nothing can pass through a disk."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from db.states import RunStatus, StepStatus
from reelflow.storage import S3Store, artifact_store
from tests.support import (
    ApiProcess,
    S3Server,
    WorkerProcess,
    attempt_rows,
    on_both_brokers,
    patched_environment,
    step_rows,
    wait_run,
    wait_step,
)
from workflows.runs.operations import start_run
from workflows.runs.retention import prune

pytestmark = [pytest.mark.slow, on_both_brokers]

VIDEO = {"length_seconds": 15, "width": 180, "height": 320, "fps": 12, "topic": "bees"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("s3") / "moto.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _host(base: Path, name: str, s3: S3Server, prefix: str) -> dict[str, str]:
    """One machine's settings: the shared services, and folders of its own."""
    home = base / name
    return {
        **s3.env(prefix),
        "REELFLOW_HOME": str(home),
        "ARTIFACT_ROOT": str(home / "artifacts"),
        "PUBLISH_DIR": str(home / "published"),
        "SCRATCH_DIR": str(home / "scratch"),
        "RECONCILE_INTERVAL_SECONDS": "1",
    }


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


async def test_short_video_across_hosts_survives_a_killed_gpu_worker(
    env: dict[str, str], s3: S3Server, tmp_path: Path
) -> None:
    prefix = f"runs-{uuid.uuid4().hex[:6]}"
    hosts = {name: _host(tmp_path, name, s3, prefix) for name in ("cpu", "gpu1", "gpu2", "api")}

    def worker(name: str, queues: str) -> WorkerProcess:
        return WorkerProcess(
            {**env, **hosts[name]}, tmp_path / f"{name}.log",
            name=f"{name}-{prefix}", concurrency=1, queues=queues,
        )  # fmt: skip

    cpu, gpu1, gpu2 = worker("cpu", "default"), worker("gpu1", "gpu"), worker("gpu2", "gpu")
    api = ApiProcess({**env, **hosts["api"]}, tmp_path / "api.log")
    cpu.start()
    gpu1.start()
    api.start()
    try:
        with patched_environment(hosts["api"]):
            run_id = (await start_run("short_video", VIDEO)).run.id
            await wait_step(
                run_id, "render_scene[0]", lambda s: s.status is StepStatus.RUNNING, timeout=90
            )
            gpu1.kill()  # the GPU host dies mid-render: parent and pool, SIGKILL
            gpu2.start()
            run = await wait_run(run_id, timeout=240, worker=cpu)
            assert run.status is RunStatus.SUCCEEDED, (run.error, gpu2.tail())
            await _check_outputs(run_id, prefix, gpu1, gpu2, cpu)

            # The API streams the video from the bucket (it has no copy either).
            steps = await step_rows(run_id)
            video = steps["compose_video"].output["video"]
            got = httpx.get(f"{api.url}/runs/{run_id}/artifacts/compose_video/video.mp4")
            assert got.status_code == 200, got.text
            assert got.headers["content-type"] == "video/mp4"
            assert hashlib.sha256(got.content).hexdigest() == video["sha256"]
            # ... with byte ranges, so a <video> can seek
            url = f"{api.url}/runs/{run_id}/artifacts/compose_video/video.mp4"
            part = httpx.get(url, headers={"Range": "bytes=100-199"})
            assert part.status_code == 206, part.text
            assert part.headers["content-range"] == f"bytes 100-199/{video['size']}"
            assert part.content == got.content[100:200]
            tail = httpx.get(url, headers={"Range": "bytes=-10"})
            assert tail.status_code == 206 and tail.content == got.content[-10:]
            outside = httpx.get(url, headers={"Range": f"bytes={video['size']}-"})
            assert outside.status_code == 416
            assert outside.headers["content-range"] == f"bytes */{video['size']}"
            missing = httpx.get(f"{api.url}/runs/{run_id}/artifacts/compose_video/nope.mp4")
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/problem+json"

            # Nothing went through a disk: no host kept an artifact; scratch is cleaned up
            # after every attempt (the killed host's half-written segment stays behind,
            # under a temporary name that nothing reads).
            for name in hosts:
                home = Path(hosts[name]["REELFLOW_HOME"])
                assert _files(home / "artifacts") == [], name
                assert _files(home / "published") == [], name
                left = _files(home / "scratch")
                assert all(p.name.startswith(".tmp-") for p in left), (name, left)
                assert name == "gpu1" or left == [], (name, left)

            # Pruning deletes the run's objects from the bucket, and only those.
            store = artifact_store()
            assert isinstance(store, S3Store)
            assert store.keys(f"{run_id}/")
            await asyncio.sleep(1.1)
            report = await prune("1s", dry_run=False)
            renders = [k for k in steps if k.startswith("render_scene[")]
            assert report.artifacts == 1 + len(renders) + 2  # voice, segments, video, thumb
            assert store.keys(f"{run_id}/") == []
            assert store.keys("published/"), "pruning must keep what was published"
    finally:
        for proc in (cpu, gpu1, gpu2):
            proc.stop()
        api.stop()


async def _check_outputs(
    run_id: uuid.UUID, prefix: str, gpu1: WorkerProcess, gpu2: WorkerProcess, cpu: WorkerProcess
) -> None:
    steps = await step_rows(run_id)
    renders = sorted(k for k in steps if k.startswith("render_scene["))
    lost = [a.status for a in await attempt_rows(run_id, "render_scene[0]")]
    assert lost == ["lost", "succeeded"], lost
    store = artifact_store()
    for key in renders:
        attempts = await attempt_rows(run_id, key)
        done = [a for a in attempts if a.status == "succeeded"]
        assert len(done) == 1, (key, attempts)
        assert done[0].worker_hostname in (gpu1.name, gpu2.name), done[0].worker_hostname
        segment = steps[key].output["video"]
        assert segment["path"] == f"s3://reelflow/{prefix}/{run_id}/{key}/segment.mp4"
        body = await asyncio.to_thread(store.local_copy, segment["key"], Path(cpu.log.parent))
        assert hashlib.sha256(body.read_bytes()).hexdigest() == segment["sha256"]
        body.unlink()
    (compose,) = [a for a in await attempt_rows(run_id, "compose_video") if a.status == "succeeded"]
    assert compose.worker_hostname == cpu.name
    published = steps["publish"].output
    assert published["directory"].startswith(f"s3://reelflow/{prefix}/published/")
    assert published["video"]["sha256"] == steps["compose_video"].output["video"]["sha256"]
