"""The operator's web UI in a real Chromium (Debian's, driven by Playwright), against the
real API, worker, PostgreSQL and broker. Screenshots of the pages it visits are written to
docs/screenshots/ when UPDATE_SCREENSHOTS=1 (`bash scripts/screenshots`)."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ROOT, ApiProcess, WorkerProcess

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no Chromium here (Debian: apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is a test extra")
expect = sync_api.expect
SHOTS = ROOT / "docs" / "screenshots"
TOKEN = "ui-test-token"


@pytest.fixture(scope="module")
def env(env: dict[str, str]) -> dict[str, str]:
    """The module's stack with a pool of one gpu slot, for the workers page to show."""
    return {**env, "POOLS": "gpu:1"}


def shoot(page: Any, name: str) -> None:
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # A CSP violation or a module that does not load is only logged. (An API answer of
    # 4xx is logged too, as "Failed to load resource"; the tests provoke those on purpose.)
    page.on(
        "console",
        lambda msg: (
            msg.type == "error"
            and not msg.text.startswith("Failed to load resource")
            and errors.append(msg.text)
        ),
    )
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"JavaScript errors: {errors}"


def _wait_status(client: httpx.Client, run_id: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (now := client.get(f"/runs/{run_id}").json()["status"]) != status:
        assert time.monotonic() < deadline, f"run {run_id} is {now}, not {status}"
        time.sleep(0.2)


def test_a_failed_step_is_read_and_retried_live(api: ApiProcess, page: Any) -> None:
    page.goto(f"{api.url}/ui/new?workflow=probe")
    page.get_by_label("width").fill("3")
    page.get_by_label("max_attempts").fill("1")
    page.get_by_text("Testing aids").click()
    page.get_by_label("Inject failures").fill("c[2]=1")
    page.get_by_role("button", name="Start run").click()
    page.wait_for_url("**/ui/runs/*")
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page
    expect(page.locator("#run-status")).to_have_text("failed")  # live, from the SSE stream
    shoot(page, "failed-run")

    page.locator("[data-step=c] summary").click()
    page.get_by_role("link", name="c[2] failed").click()
    expect(page.get_by_role("heading", name="Step c[2]")).to_be_visible()
    expect(page.locator("#attempts")).to_contain_text("InjectedFailure")
    expect(page.locator("#attempts")).to_contain_text("injected failure 1 of 1 for c[2]")
    page.locator("summary", has_text="Traceback").click()
    expect(page.locator("pre.traceback")).to_contain_text("Traceback (most recent call last)")

    page.get_by_role("button", name="Retry step").click()
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Will run: c[2], d, e")
    expect(dialog).to_contain_text("Keeps 4 succeeded steps")  # a, b, c[0], c[1]
    shoot(page, "retry-dialog")
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.locator("#notice")).to_contain_text("accepted")

    page.get_by_role("link", name="← Run").click()
    expect(page.locator("#run-status")).to_have_text("succeeded")
    assert page.evaluate("window.__sameDocument") is True
    rows = page.locator("[data-attempt]")
    expect(rows.filter(has_text="c[2]")).to_have_count(2)
    expect(page.locator('[data-attempt="a#1"]')).to_have_count(1)
    expect(page.locator('[data-attempt^="a#"]')).to_have_count(1)


def test_a_short_video_runs_page_plays_its_video(
    api: ApiProcess, page: Any, worker: WorkerProcess
) -> None:
    client = api.client(timeout=30)
    params = {"length_seconds": 15, "width": 180, "height": 320, "fps": 12, "topic": "bees"}
    run_id = client.post("/runs", json={"workflow": "short_video", "params": params}).json()["id"]
    _wait_status(client, run_id, "succeeded", timeout=180)
    page.goto(f"{api.url}/ui/runs/{run_id}")
    video = page.locator("video")
    expect(video).to_have_count(1)
    page.wait_for_function(
        "() => { const v = document.querySelector('video'); return v && v.duration > 0 }",
    )
    duration = page.evaluate("document.querySelector('video').duration")
    assert abs(duration - 15) < 0.6, duration
    page.evaluate("document.querySelector('video').play()")
    page.wait_for_function("() => document.querySelector('video').currentTime > 0.5")
    thumb = page.get_by_alt_text("Thumbnail of the video")
    expect(thumb).to_be_visible()
    page.wait_for_function(
        "() => { const i = document.querySelector('img'); return i && i.naturalWidth === 180 }"
    )


def _api_with(env: dict[str, str], tmp: pytest.TempPathFactory, **settings: str) -> ApiProcess:
    proc = ApiProcess({**env, **settings}, tmp.mktemp("g") / "api.log")
    proc.start()
    return proc


@pytest.fixture(scope="module")
def guarded_api(
    env: dict[str, str], worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    proc = _api_with(env, tmp_path_factory, API_TOKEN=TOKEN)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def public_reads_api(
    env: dict[str, str], worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    proc = _api_with(env, tmp_path_factory, API_TOKEN=TOKEN, PUBLIC_READS="true")
    try:
        yield proc
    finally:
        proc.stop()


def _failed_run(api: ApiProcess) -> str:
    client = api.client(headers={"Authorization": f"Bearer {TOKEN}"})
    body = {"workflow": "probe", "params": {"width": 1, "max_attempts": 1}, "faults": {"a": 1}}
    run_id = client.post("/runs", json=body).json()["id"]
    _wait_status(client, run_id, "failed")
    return str(run_id)


def test_actions_need_the_token_when_reads_are_public(
    public_reads_api: ApiProcess, page: Any
) -> None:
    run_id = _failed_run(public_reads_api)
    page.goto(f"{public_reads_api.url}/ui/runs/{run_id}")
    expect(page.get_by_role("button", name="API token")).to_be_visible()
    page.get_by_role("button", name="Resume run").click()
    expect(page.locator("#notice")).to_contain_text("Refused: this API needs its token (401)")
    token = page.locator("dialog#token")
    expect(token).to_be_visible()
    token.get_by_label("Token").fill(TOKEN)
    token.get_by_role("button", name="Save token").click()

    page.get_by_role("button", name="Resume run").click()
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_contain_text("Will run: a, b, c[*], d, e")
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=60_000)


def test_a_guarded_api_asks_for_the_token_to_read(guarded_api: ApiProcess, page: Any) -> None:
    """Reads need the token: the page asks for it, then reads, follows the run's event
    stream (which sends the read cookie, as an EventSource cannot send a header) and acts."""
    run_id = _failed_run(guarded_api)
    page.goto(f"{guarded_api.url}/ui/runs/{run_id}")
    expect(page.get_by_role("alert")).to_contain_text("Refused: this API needs its token (401)")
    page.get_by_role("button", name="Enter the API token").click()
    token = page.locator("dialog#token")
    token.get_by_label("Token").fill(TOKEN)
    token.get_by_role("button", name="Save token").click()
    expect(page.locator("#run-status")).to_have_text("failed")

    page.get_by_role("button", name="Resume run").click()
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_contain_text("Will run: a, b, c[*], d, e")
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.locator("#run-status")).to_have_text("succeeded")  # live: the stream reads
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["reelflow_read"]["httpOnly"] and cookies["reelflow_read"]["value"] != TOKEN

    page.reload()  # a new page load renews the cookie from the saved token, then reads
    expect(page.locator("#run-status")).to_have_text("succeeded")


def test_the_runs_table_filters_and_pages(api: ApiProcess, page: Any) -> None:
    client = api.client(timeout=30)
    tag = uuid.uuid4().hex[:6]
    ids = []
    for i in range(200):  # width 0: each finishes in a moment; the first three fail
        body: dict[str, Any] = {"workflow": "probe", "params": {"width": 0, "max_attempts": 1}}
        if i < 3:
            body["faults"] = {"a": 1}
        made = client.post("/runs", json=body, headers={"Idempotency-Key": f"{tag}-{i}"})
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    for run_id in ids[:3]:
        _wait_status(client, run_id, "failed")

    page.goto(f"{api.url}/ui")
    rows = page.locator("tbody tr[data-run]")
    expect(rows).to_have_count(50)
    assert rows.first.get_attribute("data-run") == ids[-1]  # newest first
    shoot(page, "runs")
    seen: list[str] = []
    for _ in range(10):  # every page, by the "Older" link, until there is none
        expect(rows.first).to_be_visible()
        seen += [r.get_attribute("data-run") for r in rows.all()]
        older = page.get_by_role("link", name="Older →")
        if older.count() == 0:
            break
        first = rows.first.get_attribute("data-run")
        older.click()
        expect(rows.first).not_to_have_attribute("data-run", first)
    assert len(seen) == len(set(seen))
    assert set(ids) <= set(seen)
    page.get_by_role("link", name="← Newer").click()
    expect(page.get_by_text(f"Page {(len(seen) - 1) // 50}")).to_be_visible()

    page.goto(f"{api.url}/ui")
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(f"{api.url}/ui?status=failed")
    for run_id in ids[:3]:
        expect(page.locator(f'tbody tr[data-run="{run_id}"]')).to_have_count(1)
    expect(rows.locator(".badge:not(.s-failed)")).to_have_count(0)
    expect(rows.locator(".badge.s-failed").first).to_have_text("failed")

    page.get_by_label("Status").select_option("")
    page.get_by_label("Run id or idempotency key").fill(f"{tag}-117")
    page.get_by_role("button", name="Filter").click()
    expect(rows.first).to_have_attribute("data-run", ids[117])
    expect(rows).to_have_count(1)
    page.get_by_label("Run id or idempotency key").fill(ids[42][:13])
    page.get_by_role("button", name="Filter").click()
    expect(rows.first).to_have_attribute("data-run", ids[42])
    expect(rows).to_have_count(1)


def test_start_form_shows_the_apis_validation_and_workers_page(api: ApiProcess, page: Any) -> None:
    page.goto(f"{api.url}/ui/new?workflow=probe")
    page.get_by_label("width").fill("5000")
    page.get_by_role("button", name="Start run").click()
    expect(page.locator("#p-width-error")).to_contain_text("less than or equal to 1000")
    expect(page.locator("#notice")).to_contain_text("(422)")

    page.get_by_role("link", name="Workers").click()
    expect(page.get_by_role("heading", name="Online (1)")).to_be_visible()
    expect(page.locator("main")).to_contain_text("default, gpu")
    expect(page.get_by_role("heading", name="Pools")).to_be_visible()
    pool = page.locator('section[data-pool="gpu"]')
    expect(pool.get_by_role("heading")).to_have_text("gpu: 0 of 1 slots held")
    expect(pool).to_contain_text("free")
    expect(pool).to_contain_text("Nothing waits.")
    shoot(page, "workers")


def _probe_done(api: ApiProcess) -> tuple[Any, str, dict[str, Any]]:
    """A finished probe run of one item: the client, its id and step e's output."""
    client = api.client(timeout=30)
    made = client.post("/runs", json={"workflow": "probe", "params": {"width": 1}})
    assert made.status_code == 201, made.text
    run_id = made.json()["id"]
    _wait_status(client, run_id, "succeeded")
    steps = client.get(f"/runs/{run_id}").json()["steps"]
    return client, run_id, next(s for s in steps if s["key"] == "e")["output"]


def test_a_revision_shows_its_plan_then_its_diff(api: ApiProcess, page: Any) -> None:
    client, run_id, output = _probe_done(api)
    total = output["total"]
    page.goto(f"{api.url}/ui/runs/{run_id}/steps/e")
    page.get_by_role("button", name="Revise output").click()
    editor = page.get_by_label("Output (JSON)")
    expect(editor).to_be_focused()
    assert json.loads(editor.input_value()) == output  # prefilled, as pretty JSON
    editor.fill(json.dumps({**output, "total": total + 1}, indent=2))
    page.get_by_label("Reason").fill("the total, counted again")
    page.get_by_role("button", name="Show plan").click()

    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#confirm-title")).to_have_text("Revise e")
    expect(dialog).to_contain_text("Will rerun: nothing")  # nothing reads e
    expect(dialog).to_contain_text("Replaces the output of: e")
    expect(dialog).to_contain_text("Keeps the results of 4 steps")  # a, b, c[0], d
    assert client.get(f"/runs/{run_id}/revisions").json() == []  # a dry run only
    dialog.get_by_role("button", name="Confirm").click()

    page.wait_for_url(f"**/ui/runs/{run_id}")
    expect(page.locator("#notice")).to_contain_text("Revision 1 of e: accepted")
    revision = page.locator('[data-revision="1"]')
    expect(revision).to_contain_text("the total, counted again")
    expect(revision).to_contain_text("by api")
    expect(revision.locator("pre.diff")).to_have_text(f"total: {total} -> {total + 1}")
    expect(revision).to_contain_text("Reran: nothing")
    expect(page.locator('[data-origin="e"]')).to_have_text("edited in revision 1")
    expect(page.locator("#run-status")).to_have_text("succeeded")
    [recorded] = client.get(f"/runs/{run_id}/revisions").json()
    assert recorded["outputs_after"]["e"]["total"] == total + 1


def test_a_bad_revision_is_refused_in_words(api: ApiProcess, page: Any) -> None:
    client, run_id, output = _probe_done(api)
    posts: list[str] = []
    page.on("request", lambda r: r.method == "POST" and posts.append(r.url))
    page.goto(f"{api.url}/ui/runs/{run_id}/steps/e")
    page.get_by_role("button", name="Revise output").click()
    editor, error = page.get_by_label("Output (JSON)"), page.locator("#revise-output-error")
    editor.fill('{"total": 3,')
    page.get_by_label("Reason").fill("typo")
    page.get_by_role("button", name="Show plan").click()
    expect(error).to_contain_text("This is not valid JSON")
    expect(error).to_contain_text("Nothing was sent")
    editor.fill(json.dumps({**output, "total": 3}))
    page.get_by_label("Reason").fill("  ")
    page.get_by_role("button", name="Show plan").click()
    expect(page.locator("#revise-reason-error")).to_contain_text("Say why")
    expect(error).to_be_empty()
    assert posts == []  # refused here: nothing reached the API

    editor.fill(json.dumps({**output, "total": "lots"}))
    page.get_by_label("Reason").fill("a total in words")
    page.get_by_role("button", name="Show plan").click()
    expect(error).to_contain_text("total: Input should be a valid integer")
    expect(page.locator("#notice")).to_contain_text("(422)")
    expect(page.locator("dialog#confirm")).to_be_hidden()
    assert len(posts) == 1 and posts[0].endswith("/revise?dry_run=true")

    # A change that something reads: the plan names what reruns and why; Back changes nothing.
    page.goto(f"{api.url}/ui/runs/{run_id}/steps/d")
    page.get_by_role("button", name="Revise output").click()
    d = json.loads(page.get_by_label("Output (JSON)").input_value())
    page.get_by_label("Output (JSON)").fill(json.dumps({**d, "total": d["total"] + 1}))
    page.get_by_label("Reason").fill("see what reruns")
    page.get_by_role("button", name="Show plan").click()
    dialog = page.locator("dialog#confirm")
    expect(dialog.locator('[data-rerun="e"]')).to_contain_text("e (")
    dialog.get_by_role("button", name="Back").click()
    expect(dialog).to_be_hidden()
    assert client.get(f"/runs/{run_id}/revisions").json() == []


def test_screenshots_go_where_the_readme_shows_them() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in ("runs", "failed-run", "retry-dialog"):
        assert f"docs/screenshots/{name}.png" in readme
        assert (SHOTS / f"{name}.png").is_file(), f"run bash scripts/screenshots ({name})"
    assert Path(ROOT / "scripts" / "screenshots").is_file()
