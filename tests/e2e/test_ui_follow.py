"""The UI and the event stream in a real Chromium, against the real API and worker: an
EventSource on an ended run closes (204) instead of reconnecting every 3 s; the run page's
error line leads to the failed step and its map groups stay open while the page refreshes;
the runs list says what each run is and, for a failed one, which step failed and why."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.e2e import test_ui
from tests.support import ApiProcess

pytestmark = pytest.mark.slow
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
browser, page = test_ui.browser, test_ui.page  # its Chromium, and a page that fails on JS errors

#: Open an EventSource and report how it ends: its readyState and the events it saw.
FOLLOW = """(path) => new Promise((resolve) => {
  const source = new EventSource(path), seen = [];
  for (const kind of ["step", "run"]) source.addEventListener(kind, (e) => seen.push(e.data));
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) resolve({ state: source.readyState, seen });
  };
})"""


def _start(
    client: httpx.Client, params: dict[str, Any], faults: dict[str, int] | None = None
) -> str:
    body: dict[str, Any] = {"workflow": "probe", "params": params}
    if faults:
        body["faults"] = faults
    made = client.post("/runs", json=body)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _wait(client: httpx.Client, run_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (run := client.get(f"/runs/{run_id}").json())["status"] != status:
        assert time.monotonic() < deadline, run
        time.sleep(0.2)
    return run


def _stream_requests(page: Any, run_id: str) -> list[int]:
    """The statuses of the event stream's responses the page receives, as they come."""
    found: list[int] = []
    page.on(
        "response", lambda r: r.url.endswith(f"/runs/{run_id}/events") and found.append(r.status)
    )
    return found


def test_an_event_source_on_an_ended_run_closes_instead_of_reconnecting(
    api: ApiProcess, page: Any
) -> None:
    client = api.client(timeout=30)
    run_id = _start(client, {"width": 1})
    _wait(client, run_id, "succeeded")
    page.goto(f"{api.url}/ui/workers")  # any page of the API's origin
    answers = _stream_requests(page, run_id)
    ended = page.evaluate(FOLLOW, f"/runs/{run_id}/events")
    assert ended == {"state": 2, "seen": []}  # CLOSED at once, nothing sent
    page.wait_for_timeout(4000)  # longer than EventSource's 3 s reconnection delay
    assert answers == [204]

    # Opened while the run is live: its events to the end, one reconnect, then closed.
    live = _start(client, {"width": 1, "sleep_ms": 400})
    answers = _stream_requests(page, live)
    ended = page.evaluate(FOLLOW, f"/runs/{live}/events")
    assert ended["state"] == 2 and '{"status": "succeeded"}' in ended["seen"], ended
    page.wait_for_timeout(4000)
    assert answers == [200, 204], answers


def test_the_error_links_to_the_failed_step_and_groups_stay_open(
    api: ApiProcess, page: Any
) -> None:
    client = api.client(timeout=30)
    params = {"width": 4, "sleep_ms": 800, "max_attempts": 1}
    run_id = _start(client, params, faults={"d": 1})  # c's items run, then d fails
    page.goto(f"{api.url}/ui/runs/{run_id}")
    group = page.locator("[data-step=c] details")
    expect(page.locator("[data-step=c] a.badge")).to_have_count(4)  # b done: c expanded
    group.locator("summary").click()
    expect(group).to_have_attribute("open", "")
    page.evaluate(
        "window.__refreshes = 0; new MutationObserver(() => window.__refreshes++)"
        ".observe(document.querySelector('main'), { childList: true, subtree: true })"
    )
    expect(page.locator("#run-status")).to_have_text("failed", timeout=60_000)
    refreshes = page.evaluate("window.__refreshes")
    assert refreshes >= 2, refreshes  # the page was drawn again as c's items and d moved
    expect(group).to_have_attribute("open", "")
    expect(group.get_by_role("link", name="c[2] succeeded")).to_be_visible()

    error = page.locator("#run-error a")
    expect(error).to_contain_text("d: InjectedFailure")
    error.click()
    expect(page.get_by_role("heading", name="Step d")).to_be_visible()
    expect(page.locator("#attempts")).to_contain_text("injected failure 1 of 1 for d")
    page.go_back()  # the run's page drawn anew: the group the operator opened is open
    expect(page.locator("[data-step=c] details")).to_have_attribute("open", "")
    expect(page.locator('#history [data-kind="step_failed"]')).to_contain_text("d #1 by worker:")


def test_the_runs_list_says_which_step_failed_and_why(api: ApiProcess, page: Any) -> None:
    client = api.client(timeout=30)
    run_id = _start(client, {"width": 2, "max_attempts": 1}, faults={"c[1]": 1})
    _wait(client, run_id, "failed")
    page.goto(f"{api.url}/ui")
    row = page.locator(f'tbody tr[data-run="{run_id}"]')
    failed = row.locator("[data-failed]")
    expect(failed).to_have_attribute("data-failed", "c[1]")
    expect(failed).to_contain_text("c[1]: InjectedFailure: injected failure 1 of 1 for c[1]")
    failed.get_by_role("link").click()
    expect(page.get_by_role("heading", name="Step c[1]")).to_be_visible()


def test_a_short_videos_row_shows_its_title_then_its_thumbnail(api: ApiProcess, page: Any) -> None:
    client = api.client(timeout=30)
    params = {"length_seconds": 15, "width": 180, "height": 320, "fps": 12, "topic": "honey bees"}
    made = client.post("/runs", json={"workflow": "short_video", "params": params})
    assert made.status_code == 201, made.text
    run_id = made.json()["id"]
    page.goto(f"{api.url}/ui")
    title = page.locator(f'tbody tr[data-run="{run_id}"] [data-title]')
    expect(title).not_to_be_empty()  # the topic (params), until the script names it
    run = _wait(client, run_id, "succeeded", timeout=240)
    script = next(s for s in run["steps"] if s["key"] == "write_script")["output"]
    [listed] = client.get("/runs", params={"q": run_id}).json()["items"]
    assert listed["headline"] == {
        "title": script["title"],
        "thumbnail_url": f"/runs/{run_id}/artifacts/compose_video/thumbnail.png",
        "failed_step": None,
        "failed_reason": None,
    }
    expect(title).to_have_text(script["title"])  # the table follows (refreshed every 2 s)
    page.wait_for_function(
        "(id) => { const i = document.querySelector(`tr[data-run='${id}'] img.thumb`);"
        " return i && i.complete && i.naturalWidth === 180 }",
        arg=run_id,
    )
    requests: list[str] = []
    page.on("request", lambda r: r.url.endswith("thumbnail.png") and requests.append(r.url))
    page.wait_for_timeout(4500)  # two refreshes of the table: the image is kept, not reloaded
    assert requests == []
