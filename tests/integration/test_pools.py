"""Slot pools against real PostgreSQL, Redis and several worker processes: the slots held
never exceed the pool, a killed holder's slot comes back within a lease, a waiting tenant
is served before another's backlog, a priority-9 run jumps the queue, and a cancel stops a
render and frees its slot within two seconds."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from db import repository as repo
from db.engine import get_engine
from db.records import AttemptRecord
from db.states import RunStatus, StepStatus
from reelflow.errors import RunStateConflict
from steps.short_video.render import CHUNK_S, chunk_ranges
from tests.support import (
    ApiProcess,
    WorkerProcess,
    attempt_rows,
    patched_environment,
    step_rows,
    wait_run,
)
from workflows.runs.operations import cancel_run, start_run

pytestmark = pytest.mark.slow

LEASE_S = 5
RECONCILE_S = 1.0


@pytest.fixture(scope="module")
def pooled(env: dict[str, str]) -> Iterator[dict[str, str]]:
    values = {
        **env,
        "POOLS": "gpu:2",
        "STEP_LEASE_SECONDS": str(LEASE_S),
        "RECONCILE_INTERVAL_SECONDS": str(RECONCILE_S),
        "WORKER_HEARTBEAT_SECONDS": "1",
        "WORKER_DEAD_AFTER_SECONDS": "4",
    }
    with patched_environment(values):
        yield values


@pytest.fixture(scope="module")
def cpu(
    pooled: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """The default queue's worker (everything but the gpu steps)."""
    proc = WorkerProcess(pooled, tmp_path_factory.mktemp("cpu") / "worker.log", name="cpu",
                         queues="default", concurrency=2)  # fmt: skip
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def gpus(
    pooled: dict[str, str], cpu: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[WorkerProcess]]:
    """Three gpu workers of concurrency 2: six processes for a pool of two slots."""
    folder = tmp_path_factory.mktemp("gpus")
    procs = [
        WorkerProcess(pooled, folder / f"gpu{i}.log", name=f"gpu{i}", queues="gpu", concurrency=2)
        for i in range(3)
    ]
    for proc in procs:
        proc.start()
    try:
        yield procs
    finally:
        for proc in procs:
            proc.stop()


async def _slot_runs(n: int, hold_ms: int, **kw: Any) -> list[uuid.UUID]:
    return [
        (await start_run("slot_probe", {"hold_ms": hold_ms, "width": 0}, **kw)).run.id
        for _ in range(n)
    ]


async def _hold_attempts(run_ids: list[uuid.UUID]) -> list[AttemptRecord]:
    found: list[AttemptRecord] = []
    for run_id in run_ids:
        found += await attempt_rows(run_id, "hold")
    return found


def _max_overlap(spans: list[tuple[datetime, datetime]]) -> int:
    """The most spans open at one instant (an end at t closes before a start at t)."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    open_now = most = 0
    for _, delta in edges:
        open_now += delta
        most = max(most, open_now)
    return most


async def _pool() -> dict[str, Any]:
    async with get_engine().connect() as conn:
        return (await repo.pools_view(conn, dead_after_s=10.0))["gpu"]


async def _first_start(run_id: uuid.UUID, timeout: float = 60) -> datetime:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await attempt_rows(run_id, "hold")
        if found:
            return min(a.started_at for a in found)
        await asyncio.sleep(0.05)
    raise AssertionError(f"the hold step of {run_id} never started")


async def _cancel_all(run_ids: list[uuid.UUID]) -> None:
    for run_id in run_ids:
        with contextlib.suppress(RunStateConflict):  # finished already
            await cancel_run(run_id, actor="test")


async def test_the_slots_held_never_exceed_the_pool(gpus: list[WorkerProcess]) -> None:
    """Ten runs, six gpu processes, two slots: never more than two holds at once, read from
    the attempts' recorded start and end."""
    run_ids = await _slot_runs(10, hold_ms=600)
    for run_id in run_ids:
        assert (await wait_run(run_id, timeout=120)).status is RunStatus.SUCCEEDED
    attempts = await _hold_attempts(run_ids)
    assert len(attempts) == 10 and all(a.finished_at for a in attempts)
    spans = [(a.started_at, a.finished_at) for a in attempts if a.finished_at]
    assert _max_overlap(spans) == 2  # the pool is used, never overdrawn
    hosts = {a.worker_hostname for a in attempts}
    assert len(hosts) >= 2, hosts  # several workers took part
    pool = await _pool()
    assert all(s["holder_step_id"] is None for s in pool["slots"]) and not pool["waiting"]


async def test_a_tenants_single_run_goes_before_anothers_backlog(
    gpus: list[WorkerProcess],
) -> None:
    await _until(_idle)
    backlog = await _slot_runs(20, hold_ms=4000, tenant="team-a")
    try:
        [single] = await _slot_runs(1, hold_ms=200, tenant="team-b")
        b_start = await _first_start(single, timeout=60)
        # the third of A's runs to start (two took the free slots before B arrived)
        starts = sorted([a.started_at for a in await _hold_attempts(backlog)])
        assert len(starts) <= 3 and (len(starts) < 3 or b_start < starts[2]), (b_start, starts)
        waiting = {(w["tenant"], w["priority"]): w["count"] for w in (await _pool())["waiting"]}
        assert waiting.get(("team-a", 5), 0) >= 15, waiting
    finally:
        await _cancel_all(backlog)


async def test_priority_nine_jumps_ahead_of_waiting_work(gpus: list[WorkerProcess]) -> None:
    await _until(_idle)
    blockers = await _slot_runs(2, hold_ms=20_000)
    early: list[uuid.UUID] = []
    try:
        await _until(lambda p: all(s["holder_step_id"] for s in p["slots"]))
        early = await _slot_runs(4, hold_ms=300)  # priority 5, waiting
        await _until(lambda p: sum(w["count"] for w in p["waiting"]) == 4)
        [urgent] = await _slot_runs(1, hold_ms=300, priority=9)
        await _until(lambda p: sum(w["count"] for w in p["waiting"]) == 5)
        await _cancel_all(blockers[:1])  # one slot frees up while all five wait
        urgent_start = await _first_start(urgent, timeout=60)
        for run_id in early:
            assert urgent_start < await _first_start(run_id), "priority 5 went first"
    finally:
        await _cancel_all(blockers + early)


def _idle(pool: dict[str, Any]) -> bool:
    return not pool["waiting"] and all(s["holder_step_id"] is None for s in pool["slots"])


async def _until(check: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        pool = await _pool()
        if check(pool):
            return pool
        if time.monotonic() > deadline:
            raise AssertionError(f"the pool never matched: {pool}")
        await asyncio.sleep(0.05)


async def test_a_killed_holders_slot_is_reused_within_a_lease(
    gpus: list[WorkerProcess],
) -> None:
    await _until(_idle)
    long = await _slot_runs(2, hold_ms=30_000)
    try:
        pool = await _until(lambda p: all(s["holder_step_id"] for s in p["slots"]))
        [short] = await _slot_runs(1, hold_ms=200)
        await _until(lambda p: any(w["count"] for w in p["waiting"]))
        holder = pool["slots"][0]["holder_worker"]
        doomed = next(w for w in gpus if holder and holder.split("/")[0] == w.name)
        doomed.kill()
        killed = time.time()
        started = (await _first_start(short, timeout=LEASE_S + RECONCILE_S + 20)).timestamp()
        # the slot came back when its lease ran out, and went to the waiting run
        assert started - killed <= LEASE_S + RECONCILE_S + 2.5, started - killed
        assert (await wait_run(short, timeout=30)).status is RunStatus.SUCCEEDED
    finally:
        await _cancel_all(long)
        for worker in gpus:
            if worker.proc is None or worker.proc.poll() is not None:
                worker.start()


async def test_a_cancel_stops_the_render_and_frees_its_slot_within_two_seconds(
    gpus: list[WorkerProcess], cpu: WorkerProcess
) -> None:
    params = {"length_seconds": 60, "width": 720, "height": 1280, "fps": 30, "topic": "coral ocean"}
    run_id = (await start_run("short_video", params, cache=False)).run.id
    rendering = await _rendering(run_id)
    await cancel_run(run_id, actor="test")
    cancelled, cancelled_at = time.monotonic(), time.time()
    last = rendering.progress
    changed = cancelled
    while time.monotonic() - cancelled < 4:  # watch the frame counter for four seconds
        now = (await step_rows(run_id))[rendering.key].progress
        if now != last:
            last, changed = now, time.monotonic()
        await asyncio.sleep(0.05)
    assert changed - cancelled <= 2.0, changed - cancelled
    # The render itself stopped (not only its recorded progress): its worker logged the
    # step leaving its loop (it saw the cancel), or terminating the process rendering it
    # (the revoke), within two seconds of the cancel.
    task_id = (await step_rows(run_id))[rendering.key].celery_task_id
    stopped = _logged(gpus, "step_cancelled", run_id=str(run_id), step_key=rendering.key)
    stopped += _logged(gpus, f"Terminating {task_id} (15)")
    assert stopped, "the render never stopped"
    assert min(stopped) - cancelled_at <= 2.0, min(stopped) - cancelled_at
    pool = await _pool()
    assert not [s for s in pool["slots"] if s["holder_run_id"] == run_id], pool
    steps = await step_rows(run_id)
    assert steps[rendering.key].status is StepStatus.CANCELLED
    attempts = await attempt_rows(run_id, rendering.key)
    assert attempts and attempts[-1].status == "cancelled"
    assert steps["publish"].status is not StepStatus.SUCCEEDED  # nothing downstream
    for worker in gpus:  # the workers are free again: their next renders run
        assert worker.proc is not None and worker.proc.poll() is None


def _logged(workers: list[WorkerProcess], event: str, **fields: str) -> list[float]:
    """When the workers logged `event` with these fields (epoch seconds), in order."""
    found = []
    for worker in workers:
        for line in worker.log.read_text(errors="replace").splitlines():
            if f'"{event}"' not in line:
                continue
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("event") == event and all(
                    entry.get(k) == v for k, v in fields.items()
                ):
                    found.append(datetime.fromisoformat(entry["timestamp"]).timestamp())
    return sorted(found)


async def _rendering(run_id: uuid.UUID, timeout: float = 120) -> Any:
    """A render of the run that has done some frames and has most still to do."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for step in (await step_rows(run_id)).values():
            p = step.progress or {}
            if (step.step == "render_scene" and step.status is StepStatus.RUNNING
                    and 0 < p.get("done", 0) < p.get("total", 0) / 2):  # fmt: skip
                return step
        await asyncio.sleep(0.05)
    rows = await step_rows(run_id)
    raise AssertionError(
        f"no render of {run_id} was seen mid-way: "
        + str({k: (s.status, s.progress, s.attempts) for k, s in rows.items()})
    )


# long enough for scenes of four chunks or more; small frames keep the two runs cheap
FPS = 30
LONG = {"length_seconds": 60, "width": 480, "height": 854, "fps": FPS, "topic": "coral ocean"}

_RENDERS = text(
    """
    SELECT s.key, s.lease_owner, (s.progress ->> 'total')::int AS total,
           (SELECT count(*) FROM step_checkpoints c WHERE c.step_id = s.id) AS done
    FROM step_runs s
    WHERE s.run_id = :run AND s.step = 'render_scene' AND s.status = 'running'
    """
)


async def _video_sha(run_id: uuid.UUID) -> str:
    video = (await step_rows(run_id))["compose_video"].output["video"]
    return hashlib.sha256(Path(video["path"]).read_bytes()).hexdigest()


def _near_the_end(chunks: int) -> int:
    """80% of the chunks, and at least one still to do."""
    return min(math.ceil(0.8 * chunks), chunks - 1)


async def _render_near_the_end(run_id: uuid.UUID, timeout: float = 400) -> tuple[str, str, int]:
    """A render of four chunks or more with 80% of them checkpointed and the rest to do:
    one statement per look, so that a loaded machine still sees the last chunk's window."""
    deadline = time.monotonic() + timeout
    async with get_engine().connect() as conn:
        while time.monotonic() < deadline:
            for row in (await conn.execute(_RENDERS, {"run": run_id})).all():
                chunks = len(chunk_ranges(row.total or 0, CHUNK_S * FPS))
                if chunks >= 4 and row.done >= _near_the_end(chunks):
                    return row.key, row.lease_owner or "", chunks
            await conn.rollback()  # a fresh snapshot for the next look
            await asyncio.sleep(0.01)
    raise AssertionError(f"no long render of {run_id} was caught at 80%")


@pytest.mark.timeout(900)  # two 60 s videos: minutes on a loaded two-core machine
async def test_a_render_killed_at_80_percent_renders_only_the_rest(
    gpus: list[WorkerProcess],
) -> None:
    clean = (await start_run("short_video", LONG, cache=False)).run.id
    assert (await wait_run(clean, timeout=400)).status is RunStatus.SUCCEEDED

    run_id = (await start_run("short_video", LONG, cache=False)).run.id
    key, holder, chunks = await _render_near_the_end(run_id)
    victim = next(w for w in gpus if w.name == holder.split("/")[0])
    victim.kill()  # mid-chunk, 80% of the scene checkpointed
    victim.start()
    assert (await wait_run(run_id, timeout=400)).status is RunStatus.SUCCEEDED

    segment = (await step_rows(run_id))[key].output
    attempts = await attempt_rows(run_id, key)
    assert len(attempts) >= 2 and attempts[0].status != "succeeded"
    assert segment["chunks"] == chunks and segment["chunks_kept"] >= _near_the_end(chunks)
    assert segment["frames_rendered"] <= 0.2 * segment["frames"] + CHUNK_S * FPS
    assert await _video_sha(run_id) == await _video_sha(clean)  # the same bytes


@pytest.fixture(scope="module")
def pool_api(
    pooled: dict[str, str], gpus: list[WorkerProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    env = {**pooled, "API_TOKENS": f"alice={ALICE}"}
    proc = ApiProcess(env, tmp_path_factory.mktemp("api") / "api.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


ALICE = "alice-secret-token-1"


async def test_pools_and_metrics_show_holders_waiters_and_waits(pool_api: ApiProcess) -> None:
    await _until(_idle)
    auth = {"Authorization": f"Bearer {ALICE}"}  # reads need it too
    with httpx.Client(base_url=pool_api.url, timeout=10, headers=auth) as http:
        body = {"workflow": "slot_probe", "params": {"hold_ms": 4000, "width": 0}}
        made = [http.post("/runs", json=body, headers=auth) for _ in range(2)]
        await _until(lambda p: all(s["holder_step_id"] for s in p["slots"]))
        made += [http.post("/runs", json=body, headers=auth) for _ in range(2)]
        assert all(r.status_code == 201 for r in made), made[0].text
        run_ids = [uuid.UUID(r.json()["id"]) for r in made]
        try:
            assert {r.json()["tenant"] for r in made} == {"alice"}  # the token's name
            await _until(lambda p: sum(w["count"] for w in p["waiting"]) == 2)
            [gpu] = http.get("/pools").json()
            assert (gpu["name"], gpu["size"], gpu["held"]) == ("gpu", 2, 2)
            for slot in gpu["slots"]:
                assert uuid.UUID(slot["run_id"]) in run_ids and slot["step"] == "hold"
                assert slot["worker"].startswith("gpu") and slot["since"]
                assert slot["tenant"] == "alice"
            assert [(w["tenant"], w["priority"], w["count"]) for w in gpu["waiting"]] == [
                ("alice", 5, 2)
            ]
            text = http.get("/metrics").text
            assert 'reelflow_pool_slots{pool="gpu"} 2.0' in text
            assert 'reelflow_pool_slots_held{pool="gpu",tenant="alice"} 2.0' in text
            assert 'reelflow_pool_waiting{pool="gpu",priority="5",tenant="alice"} 2.0' in text
            # once the first two finish, the two waiting are granted: their waits are counted
            await _until(lambda p: not p["waiting"], timeout=15)
            text = http.get("/metrics").text
            count = re.search(
                r'^reelflow_slot_wait_seconds_count\{pool="gpu",tenant="alice"\} (\S+)$', text, re.M
            )
            assert count and float(count.group(1)) >= 2, text[-3000:]
        finally:
            await _cancel_all(run_ids)
        await _until(lambda p: all(s["holder_step_id"] is None for s in p["slots"]), 5)
