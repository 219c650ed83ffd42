"""Admission: what a new run must pass before it is accepted (its params' size, faults
only where allowed, room among the active runs) and its request's fingerprint."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from db import repository as repo
from reelflow.errors import FaultInjectionDisabled, Overloaded, ParamsTooLarge
from reelflow.settings import get_settings


def check_size(params: Mapping[str, Any]) -> None:
    """A run's params travel with it for its whole life: refuse a blob before it lands."""
    limit = get_settings().max_params_bytes
    size = len(json.dumps(params, separators=(",", ":")))
    if size > limit:
        raise ParamsTooLarge(f"params are {size} bytes; at most {limit} (MAX_PARAMS_BYTES)")


async def check_capacity(conn: AsyncConnection, *, idempotency_key: str | None) -> None:
    """Room for one more active run (a replay of a known request needs none). Admissions
    wait for each other here until the caller's transaction ends, so the cap is exact."""
    known = idempotency_key and await repo.find_by_key(conn, idempotency_key=idempotency_key)
    if known:
        return
    cap = get_settings().max_active_runs
    active = await repo.active_runs(conn, serialise=True)
    if active >= cap:
        raise Overloaded(
            f"{active} runs are active; at most {cap} (MAX_ACTIVE_RUNS)",
            retry_after=5,
            code="too_many_active_runs",
        )


def request_hash(
    workflow: str,
    params: Mapping[str, Any],
    faults: Mapping[str, int],
    *,
    cache: bool = True,
    priority: int = 5,
    tenant: str = "default",
) -> str:
    request: dict[str, Any] = {"workflow": workflow, "params": params, "faults": faults}
    # Only what differs from the defaults: the hashes of earlier requests stay what they were.
    if not cache:
        request["cache"] = False
    if priority != 5:
        request["priority"] = priority
    if tenant != "default":
        request["tenant"] = tenant
    body = json.dumps(request, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def check_faults(faults: Mapping[str, int] | None) -> dict[str, int]:
    """Faults are a testing aid, refused unless the deployment allows them."""
    if not faults:
        return {}
    if not get_settings().allow_fault_injection:
        raise FaultInjectionDisabled(
            "faults are refused: set ALLOW_FAULT_INJECTION=true to inject failures",
            [{"field": "faults", "message": "ALLOW_FAULT_INJECTION is not set"}],
        )
    return dict(faults)
