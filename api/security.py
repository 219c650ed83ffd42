"""What a browser may do to the API: the guards in front of every route.

- *Host*: a page on another site that rebinds its DNS name to this machine talks to the API
  as its own origin; so the API answers a browser only under the host names it serves
  (ALLOWED_HOSTS; by default the loopback names when it listens on loopback).
- *Cross-origin writes*: a state-changing request (any method but GET, HEAD, OPTIONS) is
  refused when the browser says it comes from another site (`Origin`, `Sec-Fetch-Site`),
  and it must carry a JSON content type or an `X-Requested-With` header, which no HTML
  form or "simple" cross-origin request can send. This holds with and without API_TOKEN.
  An upload (multipart to `UPLOAD_PATHS`) may carry an `Authorization` header instead,
  which no form can send either. CORS stays closed unless CORS_ORIGINS names other origins.
- *Headers*: every answer says `nosniff` and a referrer policy; the UI's pages come with a
  strict Content-Security-Policy (self only, no inline script).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import problems
from reelflow.settings import Settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Probes answer whatever Host a load balancer or an orchestrator sends.
HOST_EXEMPT = ("/livez", "/readyz")
CUSTOM_HEADER = "x-requested-with"
#: Routes taking multipart uploads (a script may say it is no form with its token instead).
UPLOAD_PATHS = frozenset({"/assets"})

UI_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: Swagger UI and ReDoc start themselves from an inline script of FastAPI's page.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """Host names the API answers to (lower case, no port); None: any."""
    names = _split(settings.allowed_hosts.lower())
    if "*" in names:
        return None
    if names:
        return frozenset(names) | LOOPBACK_NAMES
    return LOOPBACK_NAMES if _is_loopback(settings.api_host) else None


def _host_name(host_header: str) -> str:
    """`example.com:8000` -> `example.com`; `[::1]:8000` -> `[::1]`."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _routed(scope: Scope) -> bool:
    """Whether a route takes this method at this path (else 404/405 answer it, unguarded)."""
    app = scope.get("app")
    for route in getattr(app, "routes", ()):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return True
    return False


def _from_a_browser(headers: Headers) -> bool:
    """A DNS-rebinding page runs in a browser, and browsers mark their requests (Fetch
    Metadata on every request, Origin on writes): a script or a test client with another
    Host name is no rebinding, and is answered."""
    return any(h in headers for h in ("sec-fetch-site", "sec-fetch-mode", "origin"))


def _origin_of(value: str) -> str | None:
    parts = urlsplit(value.strip().lower())
    if not parts.scheme or not parts.netloc:
        return None  # "null" (a sandboxed frame, a file) and anything unparsable
    return f"{parts.scheme}://{parts.netloc}"


class BrowserGuard:
    """The host check and the cross-origin write check, before any route runs."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.hosts = allowed_hosts(settings)
        self.origins = frozenset(o for o in map(_origin_of, _split(settings.cors_origins)) if o)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, title, detail, code = refusal
        await problems.problem(status, title, detail, code=code)(scope, receive, send)

    def _refusal(self, scope: Scope, headers: Headers) -> tuple[int, str, str, str] | None:
        host = _host_name(headers.get("host", ""))
        if (
            self.hosts is not None
            and scope["path"] not in HOST_EXEMPT
            and host not in self.hosts
            and _from_a_browser(headers)
        ):
            return (400, "Unknown host", f"this API does not answer to host {host!r}"
                    " (ALLOWED_HOSTS)", "invalid_host")  # fmt: skip
        if scope["method"] in SAFE_METHODS or not _routed(scope):
            return None  # nothing to change here: the router answers 404 or 405
        origin = headers.get("origin")
        if origin is not None and not self._same_or_allowed(origin, headers):
            return (403, "Cross-origin request refused",
                    "a page of another origin may not change anything here (CORS_ORIGINS)",
                    "cross_origin_refused")  # fmt: skip
        site = headers.get("sec-fetch-site", "").lower()
        if site in ("cross-site", "same-site") and origin is None:
            return (403, "Cross-origin request refused",
                    f"the browser says this request is {site}", "cross_origin_refused")  # fmt: skip
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        json_body = kind == "application/json" or (kind.startswith("application/")
                                                    and kind.endswith("+json"))  # fmt: skip
        upload = scope["path"] in UPLOAD_PATHS and kind == "multipart/form-data"
        if not json_body and CUSTOM_HEADER not in headers:
            if upload and "authorization" in headers:
                return None
            return (415, "JSON required",
                    "send Content-Type: application/json with every POST (a body-less one"
                    " too), or an X-Requested-With header (an upload: or Authorization)",
                    "json_required")  # fmt: skip
        return None

    def _same_or_allowed(self, origin: str, headers: Headers) -> bool:
        seen = _origin_of(origin)
        if seen is None:
            return False
        if seen in self.origins:
            return True
        # Same origin: the page was served by this host (the Host a browser sent us).
        return urlsplit(seen).netloc == headers.get("host", "").strip().lower()


class SecurityHeaders:
    """nosniff and a referrer policy on every answer; a CSP on the UI's and the docs'."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        csp = None
        if path == "/" or path.startswith("/ui"):
            csp = UI_CSP
        elif path in ("/docs", "/redoc") or path.startswith("/docs"):
            csp = DOCS_CSP

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                if csp is not None:
                    headers.setdefault("Content-Security-Policy", csp)
                    headers.setdefault("X-Frame-Options", "DENY")
            await send(message)

        await self.app(scope, receive, with_headers)
