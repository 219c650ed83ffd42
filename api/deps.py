"""FastAPI dependencies: a database connection per request, and the bearer-token guard."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection

from db.engine import get_engine
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
    """With API_TOKEN set, mutating endpoints need `Authorization: Bearer <token>`.

    Returns the actor recorded in run_events.
    """
    expected = get_settings().api_token
    if expected is None:
        return "api"
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise HTTPException(
            401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    return "api:token"


Actor = Annotated[str, Depends(require_token)]
