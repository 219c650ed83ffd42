"""Who may read and who may change: the bearer tokens, checked in front of every route.

- No API_TOKEN / API_TOKENS: everything answers (only /metrics, when METRICS_TOKEN is set).
- A token set: every request needs one, reads too, but for the public paths, which hold
  no data: the probes (`/livez`, `/readyz`), the docs and their schema (`/docs`, `/redoc`,
  `/openapi.json`) and the UI's shell and assets. PUBLIC_READS=true opens reads (GET, HEAD).
- METRICS_TOKEN set: /metrics takes that token and no other, so a scraper holds a
  credential that reads nothing else; unset, /metrics is a read like any other.
- A browser cannot put a header on an image, a video or an event stream: a read may carry
  the `reelflow_read` cookie instead, which `POST /ui/session` sets from a valid token
  (HttpOnly, SameSite=Strict). It is derived from the token and opens reads only.

Guarding here, not per route, fails closed: a route added later is guarded too. The route
dependency `api.deps.require_token` still names the actor of each change.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from api import problems
from reelflow.settings import Settings

READS = frozenset({"GET", "HEAD"})
#: Paths every reader may GET, whatever the settings: no run data behind any of them.
PUBLIC = frozenset({"/livez", "/readyz", "/docs", "/redoc", "/openapi.json", "/", "/ui"})
PUBLIC_PREFIXES = ("/ui/", "/docs/", "/docs-assets/")
METRICS = "/metrics"
COOKIE = "reelflow_read"
_COOKIE_PURPOSE = b"reelflow: reads from the operator UI"
TITLE = "A valid bearer token is required"


def is_public(path: str) -> bool:
    return path in PUBLIC or path.startswith(PUBLIC_PREFIXES)


def bearer(authorization: str | None) -> str | None:
    scheme, credentials = get_authorization_scheme_param(authorization)
    return credentials if scheme.lower() == "bearer" and credentials else None


def owner_of(given: str | None, tokens: dict[str, str]) -> str | None:
    """The name of the token `given` is (None: none), compared with every token in
    constant time, with no early exit that would tell how many came before."""
    found = None
    for token, name in tokens.items():
        if hmac.compare_digest((given or "").encode(), token.encode()):
            found = name
    return found


def read_cookie(token: str) -> str:
    """The cookie value a token gives: a keyed hash, so the cookie is not the token."""
    return hmac.new(token.encode(), _COOKIE_PURPOSE, hashlib.sha256).hexdigest()


def _any_equal(given: str | None, expected: Iterable[str]) -> bool:
    return any([hmac.compare_digest((given or "").encode(), e.encode()) for e in expected])


class Access:
    """The rule for one deployment: which requests need which token."""

    def __init__(self, settings: Settings) -> None:
        self.tokens = settings.tokens()
        self.cookies = [read_cookie(t) for t in self.tokens]
        self.open_reads = settings.public_reads or not self.tokens
        secret = settings.metrics_token
        self.metrics = secret.get_secret_value() if secret is not None else None

    def needs_token(self, method: str, path: str) -> bool:
        """Whether a request needs a token (OPTIONS, a CORS preflight, never does)."""
        if path == METRICS and self.metrics is not None:
            return True
        if method == "OPTIONS" or (method in READS and (self.open_reads or is_public(path))):
            return False
        return bool(self.tokens)

    def admits(self, conn: HTTPConnection, method: str, path: str) -> bool:
        if not self.needs_token(method, path):
            return True
        given = bearer(conn.headers.get("authorization"))
        if path == METRICS and self.metrics is not None:
            return _any_equal(given, [self.metrics])
        if owner_of(given, self.tokens) is not None:
            return True
        return method in READS and _any_equal(conn.cookies.get(COOKIE), self.cookies)

    def document(self, doc: dict[str, Any]) -> None:
        """Bearer security and a 401 on exactly the operations that need a token."""
        unauthorized = {
            "description": TITLE,
            "content": {problems.PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        guarded = False
        for path, operations in doc.get("paths", {}).items():
            for method, operation in operations.items():
                if self.needs_token(method.upper(), path):
                    guarded = True
                    operation["security"] = [{"HTTPBearer": []}]
                    operation.setdefault("responses", {}).setdefault("401", unauthorized)
                else:
                    operation.pop("security", None)
                    operation.get("responses", {}).pop("401", None)
        schemes = doc.setdefault("components", {}).setdefault("securitySchemes", {})
        if guarded:
            schemes.setdefault("HTTPBearer", {"type": "http", "scheme": "bearer"})
        else:
            doc["components"].pop("securitySchemes")


def unauthorized(path: str, access: Access) -> JSONResponse:
    if path == METRICS and access.metrics is not None:
        detail = "/metrics needs Authorization: Bearer <METRICS_TOKEN>"
    else:
        detail = "send Authorization: Bearer <token> (API_TOKEN or one of API_TOKENS)"
    challenge = {"WWW-Authenticate": "Bearer"}
    return problems.problem(401, TITLE, detail, code="unauthorized", headers=challenge)


class TokenGuard:
    """Answers 401 (problem+json, WWW-Authenticate: Bearer) before any route runs."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.access = Access(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            if not self.access.admits(HTTPConnection(scope), method, path):
                await unauthorized(path, self.access)(scope, receive, send)
                return
        await self.app(scope, receive, send)
