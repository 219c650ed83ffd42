"""/docs (Swagger UI 5) and /redoc render this API's OpenAPI 3.1 document in a real
Chromium, under their Content-Security-Policy, from assets this server serves (any request
elsewhere is refused, as on a machine with no network), with a token set (the docs and
their schema are public, the operations behind them are not)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import ApiProcess

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no Chromium here (Debian: apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is a test extra")
expect = sync_api.expect


@pytest.fixture(scope="module")
def guarded(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    proc = ApiProcess({**env, "API_TOKEN": "docs-test-token"}, tmp_path_factory.mktemp("a") / "log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, guarded: ApiProcess) -> Iterator[tuple[Any, list[str]]]:
    """A page that may reach only this API, and the errors and foreign requests it saw."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    seen: list[str] = []
    page.on("pageerror", lambda exc: seen.append(f"error: {exc}"))
    page.on("console", lambda msg: msg.type == "error" and seen.append(f"console: {msg.text}"))

    def offline(route: Any) -> None:
        if route.request.url.startswith(guarded.url):
            route.continue_()
        else:
            seen.append(f"foreign request: {route.request.url}")
            route.abort()

    page.route("**/*", offline)
    try:
        yield page, seen
    finally:
        context.close()


def test_swagger_ui_lists_the_operations(guarded: ApiProcess, page: tuple[Any, list[str]]) -> None:
    tab, seen = page
    answer = tab.goto(f"{guarded.url}/docs")
    assert "script-src" in answer.headers["content-security-policy"]
    create = tab.locator('.opblock-post:has(.opblock-summary-path[data-path="/runs"])')
    expect(create).to_have_count(1)
    expect(create.locator(".opblock-summary-method")).to_have_text("POST")
    read = tab.locator('.opblock-get:has(.opblock-summary-path[data-path="/runs/{run_id}"])')
    expect(read).to_have_count(1)
    expect(tab.get_by_role("button", name="Authorize")).to_be_visible()  # bearer declared
    create.locator(".opblock-summary-control").click()  # the body schema renders (3.1)
    expect(create.locator(".opblock-body")).to_contain_text("Request body")
    assert "Unable to render this definition" not in tab.content()
    assert seen == []


def test_redoc_lists_the_operations(guarded: ApiProcess, page: tuple[Any, list[str]]) -> None:
    tab, seen = page
    tab.goto(f"{guarded.url}/redoc")
    expect(tab.locator("h2", has_text=re.compile(r"^Create Run\s*$"))).to_be_visible()
    expect(tab.get_by_role("button", name="post /runs", exact=True)).to_have_count(1)
    in_menu = tab.locator("li[data-item-id$='operation/create_run'] .operation-type")
    expect(in_menu).to_have_text("post")
    expect(tab.locator("h1", has_text="reelflow")).to_have_count(1)
    # ReDoc's "API docs by Redocly" badge asks a CDN for its logo: the CSP blocks it before
    # any request leaves (the badge falls back to text); nothing else goes unserved.
    blocked = [s for s in seen if "cdn.redoc.ly/redoc/logo-mini.svg" in s and "Policy" in s]
    assert [s for s in seen if s not in blocked] == []
