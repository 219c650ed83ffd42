"""Change anything, rerun only what it touches: an 8-scene short_video, then a revision that
rewrites scene 3 reruns exactly render_scene[3] and the steps that read the whole script,
as its dry-run plan said; a second identical run renders nothing; a patch of a param no
render reads renders nothing; bad revisions change nothing. On real PostgreSQL, Redis and
a worker; the API over HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from db.states import RunStatus
from tests.support import ApiProcess, WorkerProcess, counter_values, run_row, step_rows

pytestmark = [pytest.mark.usefixtures("worker"), pytest.mark.slow]

#: 60 s at 7.5 s a scene: 8 scenes, small and few frames so it renders in seconds.
EIGHT = {"length_seconds": 60, "width": 144, "height": 256, "fps": 10, "topic": "bees"}


def _wait(client: httpx.Client, run_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = client.get(f"/runs/{run_id}").json()
        idle = all(s["status"] not in ("queued", "running", "retrying") for s in run["steps"])
        if run["status"] in ("succeeded", "failed", "cancelled") and idle:
            return run  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, run["status"]
        time.sleep(0.3)


def _attempts(run: dict[str, Any]) -> dict[str, int]:
    return {s["key"]: s["attempts"] for s in run["steps"] if s["status"] != "superseded"}


def _sha(run: dict[str, Any]) -> str:
    """The published video's sha256, as recorded (and checked against the file now)."""
    video = next(s for s in run["steps"] if s["key"] == "publish")["output"]["video"]
    return str(video["sha256"])


@pytest.fixture(scope="module")
def client(api: ApiProcess) -> httpx.Client:
    return api.client(timeout=60)


@pytest.fixture(scope="module")
def first(client: httpx.Client) -> dict[str, Any]:
    created = client.post("/runs", json={"workflow": "short_video", "params": EIGHT})
    assert created.status_code == 201, created.text
    run = _wait(client, created.json()["id"])
    assert run["status"] == "succeeded", run["error"]
    return run


def test_a_revision_of_scene_three_reruns_exactly_what_reads_it(
    client: httpx.Client, first: dict[str, Any]
) -> None:
    from steps.short_video.script import phrases_of

    run_id = first["id"]
    scenes = [s for s in first["steps"] if s["key"].startswith("render_scene[")]
    assert len(scenes) == 8
    script = next(s for s in first["steps"] if s["key"] == "write_script")["output"]
    third = script["scenes"][3]
    line = "Scene three, written again: bees dance to say where the flowers are."
    phrases = [p.model_dump() for p in phrases_of(line, 0.0, third["duration_s"])]
    third.update(narration=line, caption="Bees dance", phrases=phrases)
    body = {"outputs": {"write_script": script}, "reason": "rewrite scene 3"}

    plan = client.post(f"/runs/{run_id}/revise", params={"dry_run": "true"}, json=body)
    assert plan.status_code == 200, plan.text
    rerun = plan.json()["rerun"]
    assert list(rerun) == ["synthesize_voice", "render_scene[3]", "compose_video", "publish"]
    assert rerun["render_scene[3]"] == "its item changed"
    assert "write_script" in rerun["synthesize_voice"]
    assert set(plan.json()["reuse"]) >= {"collect_trends"} | {
        f"render_scene[{i}]" for i in range(8) if i != 3
    }
    assert client.get(f"/runs/{run_id}").json()["generation"] == first["generation"]  # dry

    applied = client.post(f"/runs/{run_id}/revise", json=body)
    assert applied.status_code == 202, applied.text
    assert applied.json()["revision"] == 1 and applied.json()["rerun"] == rerun
    after = _wait(client, run_id)
    assert after["status"] == "succeeded", after["error"]

    before, now = _attempts(first), _attempts(after)
    ran = {key for key in now if now[key] != before.get(key)}
    assert ran == set(rerun), (ran, rerun)  # the plan is what ran, step for step
    assert all(now[f"render_scene[{i}]"] == 1 for i in range(8) if i != 3)
    assert now["render_scene[3]"] == 2
    tries = client.get(f"/runs/{run_id}/steps/render_scene[3]/attempts").json()
    step = next(s for s in after["steps"] if s["key"] == "render_scene[3]")
    assert [a["input_key"] for a in tries][-1] == step["input_key"]  # the key on each attempt
    assert tries[0]["input_key"] != tries[-1]["input_key"]  # the scene changed, so its key
    assert _sha(after) != _sha(first)  # the published video changed
    published = next(s for s in after["steps"] if s["key"] == "publish")["output"]["video"]
    assert hashlib.sha256(Path(published["path"]).read_bytes()).hexdigest() == _sha(after)
    edited = next(s for s in after["steps"] if s["key"] == "write_script")
    assert edited["reused_from"] == {"revision": 1}
    assert edited["output"]["scenes"][3]["narration"] == line

    revisions = client.get(f"/runs/{run_id}/revisions").json()
    assert [r["number"] for r in revisions] == [1]
    assert revisions[0]["reason"] == "rewrite scene 3"
    assert revisions[0]["outputs_before"]["write_script"]["scenes"][3]["narration"] != line
    history = client.get(f"/runs/{run_id}/history").json()
    assert any(e["kind"] == "revised" for e in history)


def test_a_second_identical_run_renders_nothing(
    client: httpx.Client, first: dict[str, Any]
) -> None:
    created = client.post("/runs", json={"workflow": "short_video", "params": EIGHT})
    assert created.status_code == 201, created.text
    run = _wait(client, created.json()["id"])
    assert run["status"] == "succeeded", run["error"]
    renders = [s for s in run["steps"] if s["key"].startswith("render_scene[")]
    assert len(renders) == 8
    for render in renders:  # reused: no task ran on a worker, no attempt
        assert render["attempts"] == 0 and render["reused_from"]["run_id"], render
        assert render["input_key"] and len(render["input_key"]) == 64
    assert _attempts(run)["publish"] == 1  # side effects never reuse


def test_a_patch_of_a_param_no_render_reads_renders_nothing(
    client: httpx.Client, first: dict[str, Any]
) -> None:
    created = client.post("/runs", json={"workflow": "short_video", "params": EIGHT})
    run = _wait(client, created.json()["id"])
    body = {"params": {"voice": False}, "reason": "no narration"}
    plan = client.post(f"/runs/{run['id']}/revise", params={"dry_run": "true"}, json=body)
    assert plan.status_code == 200, plan.text
    assert list(plan.json()["rerun"]) == ["synthesize_voice", "compose_video", "publish"]
    assert plan.json()["rerun"]["synthesize_voice"] == "param voice changed"
    assert client.post(f"/runs/{run['id']}/revise", json=body).status_code == 202
    after = _wait(client, run["id"])
    assert after["status"] == "succeeded" and after["params"]["voice"] is False
    renders = {k: n for k, n in _attempts(after).items() if k.startswith("render_scene[")}
    assert renders == {k: n for k, n in _attempts(run).items() if k.startswith("render_scene[")}
    voice = next(s for s in after["steps"] if s["key"] == "synthesize_voice")
    assert voice["output"]["engine"] == "none"  # the music bed alone


def test_bad_revisions_get_a_4xx_and_change_nothing(
    client: httpx.Client, first: dict[str, Any], worker: WorkerProcess
) -> None:
    created = client.post("/runs", json={"workflow": "probe", "params": {"width": 1}})
    run_id = created.json()["id"]
    _wait(client, run_id)
    before = client.get(f"/runs/{run_id}").json()
    cases = [
        ({"outputs": {"e": {"total": "lots"}}, "reason": "r"}, 422, "invalid_revision"),
        ({"outputs": {"zz": {}}, "reason": "r"}, 422, "invalid_revision"),
        ({"params": {"width": -5}, "reason": "r"}, 422, "invalid_params"),
        ({"params": {}, "reason": "r"}, 422, "invalid_revision"),
        ({"params": {"width": 2}}, 422, "validation_error"),  # no reason
        ({"params": {"width": 2}, "reason": "r", "extra": 1}, 422, "validation_error"),
    ]
    for body, status, code in cases:
        answer = client.post(f"/runs/{run_id}/revise", json=body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == code, answer.text
    missing = client.post("/runs/00000000-0000-0000-0000-000000000000/revise",
                          json={"params": {"width": 2}, "reason": "r"})  # fmt: skip
    assert missing.status_code == 404
    assert client.get(f"/runs/{run_id}").json() == before
    assert client.get(f"/runs/{run_id}/revisions").json() == []

    busy = client.post("/runs", json={"workflow": "probe", "params": {"sleep_ms": 1500}})
    busy_id = busy.json()["id"]
    refused = client.post(f"/runs/{busy_id}/revise", json={"params": {"width": 2}, "reason": "r"})
    assert refused.status_code == 409 and refused.json()["code"] == "run_busy"
    _wait(client, busy_id)


async def test_a_revise_racing_a_resume_one_wins_the_other_gets_409(
    api: ApiProcess, client: httpx.Client
) -> None:
    body = {"workflow": "probe", "params": {"width": 1, "max_attempts": 1}, "faults": {"e": 1}}
    run_id = client.post("/runs", json=body).json()["id"]
    assert _wait(client, run_id)["status"] == "failed"
    generation = client.get(f"/runs/{run_id}").json()["generation"]
    headers = {"X-Requested-With": "test"}
    async with httpx.AsyncClient(base_url=api.url, timeout=30, headers=headers) as http:
        revise, resume = await asyncio.gather(
            http.post(f"/runs/{run_id}/revise", json={"params": {"width": 2}, "reason": "r"}),
            http.post(f"/runs/{run_id}/resume"),
        )
    assert sorted([revise.status_code, resume.status_code]) == [202, 409], (
        revise.text, resume.text)  # fmt: skip
    after = _wait(client, run_id)
    assert after["status"] == "succeeded" and after["generation"] == generation + 1
    revisions = client.get(f"/runs/{run_id}/revisions").json()
    assert len(revisions) == (1 if revise.status_code == 202 else 0)


async def test_reuses_and_misses_are_counted_by_workflow_and_step(
    first: dict[str, Any], client: httpx.Client
) -> None:
    reused = await counter_values("step_reused")
    assert reused.get("short_video|render_scene|gpu", 0) >= 8
    scrape = client.get("/metrics").text
    render = 'queue="gpu",step="render_scene",workflow="short_video"'
    assert f"reelflow_cache_reused_total{{{render}}}" in scrape
    missed = [line for line in scrape.splitlines() if line.startswith(
        f"reelflow_cache_missed_total{{{render}}}")]  # fmt: skip
    assert missed and float(missed[0].rsplit(" ", 1)[1]) >= 8
    assert "reelflow_cache_missed_total{" in scrape and 'step="publish"' not in "".join(
        line for line in scrape.splitlines() if line.startswith("reelflow_cache_missed")
    )  # publish never reuses: it never misses
    run = await run_row(uuid.UUID(first["id"]))
    assert run.status is RunStatus.SUCCEEDED
    assert (await step_rows(run.id))["render_scene[0]"].input_key


def _probe(client: httpx.Client, **body: Any) -> str:
    run_id = str(client.post("/runs", json={"workflow": "probe", **body}).json()["id"])
    _wait(client, run_id)
    return run_id


def test_a_revision_can_supply_the_output_of_a_failed_step(client: httpx.Client) -> None:
    """The failed step counts as succeeded with the operator's output; the run finishes."""
    failing = {"params": {"width": 1, "max_attempts": 1}, "faults": {"e": 1}}
    run_id = _probe(client, **failing)
    assert client.get(f"/runs/{run_id}").json()["status"] == "failed"
    output = {"key": "e", "attempt": 1, "pid": 0, "total": 123}
    answer = client.post(f"/runs/{run_id}/revise",
                         json={"outputs": {"e": output}, "reason": "supply e by hand"})  # fmt: skip
    assert answer.status_code == 202, answer.text
    assert answer.json()["rerun"] == {} and answer.json()["edited"] == ["e"]
    after = _wait(client, run_id)
    assert after["status"] == "succeeded", after
    e = next(s for s in after["steps"] if s["key"] == "e")
    assert e["output"]["total"] == 123 and e["reused_from"] == {"revision": 1}


def test_a_revision_can_supply_the_output_of_a_cancelled_step(client: httpx.Client) -> None:
    created = client.post("/runs", json={"workflow": "probe", "params": {"sleep_ms": 1500}})
    run_id = str(created.json()["id"])
    deadline = time.monotonic() + 30
    while client.get(f"/runs/{run_id}").json()["steps"][0]["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert client.post(f"/runs/{run_id}/cancel").status_code == 202
    _wait(client, run_id)
    output = {"key": "a", "attempt": 1, "pid": 0, "seed": 7}
    plan = client.post(f"/runs/{run_id}/revise",
                       json={"outputs": {"a": output}, "reason": "skip a"})  # fmt: skip
    assert plan.status_code == 202, plan.text
    assert "a" not in plan.json()["rerun"] and "b" in plan.json()["rerun"]
    after = _wait(client, run_id)
    assert after["status"] == "succeeded", after
    assert _attempts(after)["a"] == 1  # the cancelled attempt; it did not run again


def test_a_replaced_artifact_must_be_a_stored_file(
    client: httpx.Client, first: dict[str, Any]
) -> None:
    """A revision names stored bytes by key, size and sha256; it can never point a step at
    another file on a worker (a path of its choosing, or a key whose bytes differ)."""
    voice = next(s for s in first["steps"] if s["key"] == "synthesize_voice")["output"]
    name, artifact = next((k, v) for k, v in voice.items() if isinstance(v, dict) and "sha256" in v)
    url = f"/runs/{first['id']}/revise"
    before = client.get(f"/runs/{first['id']}/revisions").json()
    lies = [
        {**artifact, "key": None, "path": "/etc/passwd"},
        {**artifact, "key": "../../../etc/passwd"},
        {**artifact, "sha256": "0" * 64},
        {**artifact, "size": artifact["size"] + 1},
    ]
    for lie in lies:
        body = {"outputs": {"synthesize_voice": {**voice, name: lie}}, "reason": "r"}
        answer = client.post(url, params={"dry_run": "true"}, json=body)
        assert answer.status_code == 422, (lie, answer.text)
        assert answer.json()["code"] == "invalid_revision"
        assert any(
            e["field"].startswith("outputs.synthesize_voice") for e in answer.json()["errors"]
        )
    # the stored file under another path is the stored file: its path is the store's own
    moved = {**voice, name: {**artifact, "path": "/etc/passwd"}}
    plan = client.post(url, params={"dry_run": "true"},
                       json={"outputs": {"synthesize_voice": moved}, "reason": "r"})  # fmt: skip
    assert plan.status_code == 200, plan.text
    assert client.get(f"/runs/{first['id']}/revisions").json() == before


async def test_a_revision_row_is_immutable_but_goes_with_its_pruned_run(
    client: httpx.Client,
) -> None:
    """The database itself refuses to change or delete a revision; prune deleting its run
    still takes it along."""
    from datetime import UTC, datetime

    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from db.engine import get_engine
    from workflows.runs import retention

    run_id = client.post("/runs", json={"workflow": "probe", "params": {"width": 1}}).json()["id"]
    _wait(client, run_id)
    revised = client.post(f"/runs/{run_id}/revise", json={"params": {"width": 2}, "reason": "r"})
    assert revised.status_code == 202, revised.text
    _wait(client, run_id)
    for statement in (
        "UPDATE run_revisions SET reason = 'rewritten' WHERE run_id = :r",
        "DELETE FROM run_revisions WHERE run_id = :r",
    ):
        with pytest.raises(DBAPIError, match="immutable"):
            async with get_engine().begin() as conn:
                await conn.execute(text(statement), {"r": run_id})
    assert [r["reason"] for r in client.get(f"/runs/{run_id}/revisions").json()] == ["r"]
    await asyncio.sleep(0.05)
    report = await retention.prune_selected(
        [uuid.UUID(run_id)], before=datetime.now(UTC), older_than="0s"
    )
    assert report.runs == 1
    async with get_engine().connect() as conn:
        left = await conn.execute(text("SELECT count(*) FROM run_revisions WHERE run_id = :r"),
                                  {"r": run_id})  # fmt: skip
        assert left.scalar_one() == 0
