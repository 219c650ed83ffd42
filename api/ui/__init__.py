"""The operator's web UI under /ui: one HTML shell, one script and one stylesheet, shipped
inside the package (no build step, nothing from a CDN). The script uses only the public
HTTP API and the SSE stream, so the UI is also a working example of them."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).resolve().parent / "assets"


def install(app: FastAPI) -> None:
    shell = (ASSETS / "index.html").read_text("utf-8")
    app.mount("/ui/assets", StaticFiles(directory=ASSETS), name="ui-assets")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui", status_code=307)

    @app.get("/ui", include_in_schema=False)
    @app.get("/ui/{path:path}", include_in_schema=False)
    async def ui(path: str = "") -> HTMLResponse:
        # Every page is the same shell: the script routes by location (history API).
        return HTMLResponse(shell, headers={"Cache-Control": "no-cache"})
