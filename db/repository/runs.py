"""Runs: create, read, list, and the guarded moves of their status."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, and_, cast, insert, or_, select, text, update
from sqlalchemy import func as sa_func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from db.records import NewStep, RunRecord
from db.repository.tables import events, runs
from db.repository.tables import steps as step_table
from db.states import RUN_LIVE, RunStatus, run_sources, values
from reelflow.errors import RunNotFound


async def create_run(
    conn: AsyncConnection,
    *,
    run_id: uuid.UUID,
    workflow: str,
    workflow_version: int,
    params: dict[str, Any],
    idempotency_key: str | None,
    request_hash: str,
    steps: Sequence[NewStep],
    actor: str,
    param_digests: dict[str, str] | None = None,
    cache: bool = True,
    priority: int = 5,
    tenant: str = "default",
) -> tuple[RunRecord, bool]:
    """Insert the run and its known steps; (existing run, False) if the idempotency key
    is taken (the caller compares `request_hash`)."""
    stmt = (
        pg_insert(runs)
        .values(
            id=run_id,
            workflow=workflow,
            workflow_version=workflow_version,
            params=params,
            param_digests=param_digests or {},
            cache=cache,
            priority=priority,
            tenant=tenant,
            status=RunStatus.PENDING.value,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(*runs.c)
    )
    row = (await conn.execute(stmt)).one_or_none()
    if row is None:
        existing = (
            await conn.execute(select(runs).where(runs.c.idempotency_key == idempotency_key))
        ).one()
        return RunRecord.model_validate(existing._mapping), False
    if steps:
        rows = [{"run_id": run_id, **s.model_dump()} for s in steps]
        await conn.execute(insert(step_table), rows)
    await add_event(conn, run_id=run_id, kind="created", actor=actor, detail={"params": params})
    return RunRecord.model_validate(row._mapping), True


async def get_run(
    conn: AsyncConnection, *, run_id: uuid.UUID, for_update: bool = False
) -> RunRecord | None:
    stmt = select(runs).where(runs.c.id == run_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).one_or_none()
    return RunRecord.model_validate(row._mapping) if row else None


async def require_run(
    conn: AsyncConnection, *, run_id: uuid.UUID, for_update: bool = False
) -> RunRecord:
    """The run, or RunNotFound: the one place a missing run is reported."""
    run = await get_run(conn, run_id=run_id, for_update=for_update)
    if run is None:
        raise RunNotFound(f"no run {run_id}")
    return run


#: pg_advisory_xact_lock key that serialises admissions, so the active-runs cap is exact.
ADMISSION_LOCK = 0x72666164  # "rfad"


async def active_runs(conn: AsyncConnection, *, serialise: bool = False) -> int:
    """Runs pending or running (through the status index); with `serialise`, admissions
    wait for each other until this transaction ends."""
    if serialise:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADMISSION_LOCK})
    stmt = select(sa_func.count()).where(runs.c.status.in_(values(RUN_LIVE)))
    return int((await conn.execute(stmt)).scalar_one())


async def find_by_key(conn: AsyncConnection, *, idempotency_key: str) -> RunRecord | None:
    row = (
        await conn.execute(select(runs).where(runs.c.idempotency_key == idempotency_key))
    ).one_or_none()
    return RunRecord.model_validate(row._mapping) if row else None


async def list_runs(
    conn: AsyncConnection,
    *,
    status: RunStatus | None = None,
    workflow: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    before: tuple[datetime, uuid.UUID] | None = None,
    search: str | None = None,
    limit: int = 50,
) -> list[RunRecord]:
    """Newest first; `before` is the keyset cursor (created_at, id) of the last row seen;
    `search` matches an idempotency key exactly, or the start of a run id."""
    stmt = select(runs)
    if search:
        by_key = runs.c.idempotency_key == search
        if re.fullmatch(r"[0-9a-fA-F-]{1,36}", search):
            prefix = cast(runs.c.id, String).like(f"{search.lower()}%")
            stmt = stmt.where(or_(by_key, prefix))
        else:
            stmt = stmt.where(by_key)
    if status is not None:
        stmt = stmt.where(runs.c.status == status.value)
    if workflow is not None:
        stmt = stmt.where(runs.c.workflow == workflow)
    if created_after is not None:
        stmt = stmt.where(runs.c.created_at > created_after)
    if created_before is not None:
        stmt = stmt.where(runs.c.created_at < created_before)
    if before is not None:
        at, last_id = before
        stmt = stmt.where(
            or_(runs.c.created_at < at, and_(runs.c.created_at == at, runs.c.id < last_id))
        )
    stmt = stmt.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
    return [RunRecord.model_validate(r._mapping) for r in await conn.execute(stmt)]


async def set_run_status(
    conn: AsyncConnection,
    *,
    run_id: uuid.UUID,
    status: RunStatus,
    only_from: Iterable[RunStatus] | None = None,
    generation: int | None = None,
    bump_generation: bool = False,
    clear_error: bool = False,
    error: dict[str, Any] | None = None,
    started: bool = False,
    finished: bool = False,
) -> int | None:
    """Move the run to `status` from one of `only_from` (default: every declared source),
    and only if it is at `generation` when one is given; returns its generation afterwards,
    or None when a guard refused the move."""
    sources = run_sources(status) if only_from is None else frozenset(only_from)
    vals: dict[str, Any] = {"status": status.value, "updated_at": sa_func.now()}
    if bump_generation:
        vals["generation"] = runs.c.generation + 1
    if clear_error:
        vals["error"] = None
    if error is not None:
        vals["error"] = error
    if status is RunStatus.PENDING:
        vals["finished_at"] = None
    if started:
        vals["started_at"] = sa_func.coalesce(runs.c.started_at, sa_func.now())
    if finished:
        vals["finished_at"] = sa_func.now()
    stmt = update(runs).where(runs.c.id == run_id, runs.c.status.in_(values(sources)))
    if generation is not None:
        stmt = stmt.where(runs.c.generation == generation)
    stmt = stmt.values(**vals).returning(runs.c.generation)
    after: int | None = (await conn.execute(stmt)).scalar_one_or_none()
    return after


async def fail_run(
    conn: AsyncConnection,
    *,
    run_id: uuid.UUID,
    error: dict[str, Any],
    only_from: Iterable[RunStatus] = (RunStatus.RUNNING,),
) -> bool:
    """Fail a run for a reason no step row owns (a map that could not expand, a workflow
    that no longer exists)."""
    done = await set_run_status(
        conn, run_id=run_id, status=RunStatus.FAILED, only_from=only_from, error=error,
        finished=True,
    )  # fmt: skip
    return done is not None


async def set_maps(
    conn: AsyncConnection, *, run_id: uuid.UUID, expanded: dict[str, int], removed: Iterable[str]
) -> None:
    """Record maps as expanded (step -> width) and forget others (their source reruns)."""
    gone = list(removed)
    await conn.execute(
        text(
            "UPDATE workflow_runs SET maps = (maps - CAST(:gone AS text[])) || CAST(:new AS jsonb)"
            " WHERE id = :run_id"
        ),
        {"gone": gone, "new": json.dumps(expanded), "run_id": run_id},
    )


async def add_event(
    conn: AsyncConnection,
    *,
    run_id: uuid.UUID,
    kind: str,
    actor: str,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        insert(events).values(run_id=run_id, kind=kind, actor=actor, detail=detail or {})
    )


async def ping(conn: AsyncConnection) -> None:
    await conn.execute(text("SELECT 1"))


async def latest_changes(
    conn: AsyncConnection, *, run_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, datetime]:
    """When each run or one of its steps last changed: one query for any number of runs."""
    if not run_ids:
        return {}
    rows = await conn.execute(
        text(
            "SELECT r.id, greatest(r.updated_at, (SELECT max(s.updated_at) FROM step_runs s"
            " WHERE s.run_id = r.id)) AS at FROM workflow_runs r WHERE r.id = ANY(:ids)"
        ),
        {"ids": list(run_ids)},
    )
    return {r.id: r.at for r in rows}
