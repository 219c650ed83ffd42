"""The operator's web UI under /ui: one HTML shell, ES modules (one per page, plus the
shared ones) and one stylesheet, shipped inside the package (no build step, nothing from a
CDN). The modules use only the public HTTP API and the SSE stream, so the UI is also a
working example of them. Assets are revalidated on every load (ETag), so a deploy never
mixes old and new modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from api import auth
from api.deps import Actor

ASSETS = Path(__file__).resolve().parent / "assets"


class Revalidated(StaticFiles):
    """Static files a browser must revalidate (cheap: a 304 when unchanged)."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


def install(app: FastAPI) -> None:
    shell = (ASSETS / "index.html").read_text("utf-8")
    app.mount("/ui/assets", Revalidated(directory=ASSETS), name="ui-assets")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui", status_code=307)

    @app.get("/ui", include_in_schema=False)
    @app.get("/ui/{path:path}", include_in_schema=False)
    async def ui(path: str = "") -> HTMLResponse:
        # Every page is the same shell: the script routes by location (history API).
        return HTMLResponse(shell, headers={"Cache-Control": "no-cache"})

    @app.post("/ui/session", include_in_schema=False, status_code=204)
    async def session(request: Request, actor: Actor) -> Response:
        """The read cookie of this browser (see api.auth), made from a valid token: the
        page's images, videos and event streams cannot carry the token themselves."""
        response = Response(status_code=204)
        given = auth.bearer(request.headers.get("authorization"))
        if given is not None and actor != "api":  # "api": no token is configured
            https = request.url.scheme == "https"
            value = auth.read_cookie(given)
            response.set_cookie(auth.COOKIE, value, httponly=True, samesite="strict", secure=https)
        return response
