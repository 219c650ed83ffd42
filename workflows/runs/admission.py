"""Admission: what a new run must pass before it is accepted (its params' size, faults
only where allowed, room among the active runs, the uploads it names) and its request's
fingerprint."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from db import repository as repo
from reelflow.errors import (
    FaultInjectionDisabled,
    Overloaded,
    ParamsTooLarge,
    UnknownAsset,
    WrongAssetKind,
)
from reelflow.settings import get_settings
from workflows.assets.fields import asset_fields, named_assets


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


async def check_assets(conn: AsyncConnection, params: BaseModel) -> list[uuid.UUID]:
    """Every asset the params name exists and is of the kind its field takes; returns
    their ids (the run records them, so prune keeps them). The rows stay locked until the
    caller's transaction ends: a prune cannot take one before the run's refs commit."""
    named = named_assets(params)
    found = await repo.kinds_of(conn, asset_ids=[a for ids in named.values() for a in ids])
    kinds = asset_fields(type(params))
    unknown: list[dict[str, str]] = []
    wrong: list[dict[str, str]] = []
    for name, ids in named.items():
        for index, asset_id in enumerate(ids):
            field = name + (f".{index}" if _is_list(params, name) else "")
            kind, wanted = found.get(asset_id), kinds[name]
            if kind is None:
                unknown.append({"field": field, "message": f"no asset {asset_id} (POST /assets)"})
            elif wanted is not None and kind != wanted:
                wrong.append(
                    {"field": field, "message": f"asset {asset_id} is {kind}, not {wanted}"}
                )
    if unknown:
        raise UnknownAsset("; ".join(f"{e['field']}: {e['message']}" for e in unknown), unknown)
    if wrong:
        raise WrongAssetKind("; ".join(f"{e['field']}: {e['message']}" for e in wrong), wrong)
    return sorted(found)


def _is_list(params: BaseModel, name: str) -> bool:
    return isinstance(getattr(params, name, None), list | tuple)


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
