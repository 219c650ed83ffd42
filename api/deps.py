"""FastAPI dependencies: a database connection per request, and the guard of mutating
endpoints (the bearer token, then each client's rate)."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy.ext.asyncio import AsyncConnection

from api import auth
from db.engine import get_engine
from reelflow.errors import Overloaded
from reelflow.settings import get_settings


async def _connection() -> AsyncIterator[AsyncConnection]:
    async with get_engine().connect() as conn:
        yield conn


Conn = Annotated[AsyncConnection, Depends(_connection)]

_bearer = HTTPBearer(auto_error=False)


async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """With API_TOKEN or API_TOKENS set, a change needs `Authorization: Bearer <token>`
    (`api.auth.TokenGuard` refused it already without one; this names its actor). Returns
    the actor recorded in run_events: `api` without tokens, `api:token` for API_TOKEN,
    `api:<name>` for a named token."""
    settings = get_settings()
    tokens = settings.tokens()
    actor = "api"
    if tokens:
        name = auth.owner_of(credentials.credentials if credentials else None, tokens)
        if name is None:
            raise HTTPException(
                401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        actor = "api:token" if name == "api" else f"api:{name}"
    if settings.rate_limit:
        _limiter.admit(settings.rate_limit, _identity(request, actor))
    return actor


def tenant_of(actor: str) -> str:
    """The tenant a run belongs to when the request names none: the token's name."""
    if actor.startswith("api:") and actor != "api:token":
        return actor.removeprefix("api:")
    return "default"


def _identity(request: Request, actor: str) -> str:
    """Whom a request's rate counts against: the verified token, or else the client's
    address (which uvicorn takes from X-Forwarded-For only for TRUSTED_PROXIES). Never an
    unverified header: a made-up bearer must not buy a fresh budget."""
    if actor != "api":
        return f"token:{actor}"
    return f"addr:{(request.client or ('?', 0))[0]}"


class _Limiter:
    """Each client's mutating requests, counted in a moving window (per API process)."""

    def __init__(self) -> None:
        self.storage = MemoryStorage()
        self.window = MovingWindowRateLimiter(self.storage)

    def admit(self, spec: str, client: str) -> None:
        key = hashlib.sha256(client.encode()).hexdigest()[:32]
        for item in parse_many(spec):
            if not self.window.hit(item, key):
                reset = self.window.get_window_stats(item, key).reset_time
                raise Overloaded(
                    f"too many requests: at most {item} per client",
                    retry_after=math.ceil(reset - time.time()),
                    code="rate_limited",
                )


_limiter = _Limiter()


Actor = Annotated[str, Depends(require_token)]
