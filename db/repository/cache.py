"""The result cache, outside the claim: what a dispatch, a revision or a plan needs to
know about keys (the digests of a run's steps) and results (a succeeded execution per
workflow, step and input key), and reusing one for a step that has not run."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func as sa_func
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from db.repository.tables import refs, results, steps
from db.states import STEP_REUSABLE, StepStatus, values


@dataclass(frozen=True)
class KeyRow:
    """What a step row contributes to keys: its own and its dependents'."""

    id: int
    key: str
    step: str
    status: StepStatus
    item_index: int | None
    item_digest: str | None
    output_digest: str | None
    input_key: str | None
    key_parts: dict[str, Any] | None
    force_rerun: bool


@dataclass(frozen=True)
class Result:
    run_id: uuid.UUID
    step_key: str
    attempt: int
    output: Any
    output_digest: str | None
    artifacts: list[str]
    key_parts: dict[str, Any] | None

    @property
    def origin(self) -> dict[str, Any]:
        # `key` as step rows name it; `step_key` as the API's readers may look for it
        return {"run_id": str(self.run_id), "key": self.step_key, "step_key": self.step_key,
                "attempt": self.attempt}  # fmt: skip


async def key_rows(
    conn: AsyncConnection, *, run_id: uuid.UUID, names: list[str] | None = None
) -> list[KeyRow]:
    """The live (not superseded) rows of the run's steps with these names (all: None), in
    creation order, with what keys are made of."""
    stmt = select(
        steps.c.id, steps.c.key, steps.c.step, steps.c.status, steps.c.item_index,
        steps.c.item_digest, steps.c.output_digest, steps.c.input_key, steps.c.key_parts,
        steps.c.force_rerun,
    ).where(steps.c.run_id == run_id, steps.c.status != StepStatus.SUPERSEDED.value)  # fmt: skip
    if names is not None:
        stmt = stmt.where(steps.c.step.in_(names))
    rows = await conn.execute(stmt.order_by(steps.c.id))
    return [KeyRow(**{**r._mapping, "status": StepStatus(r.status)}) for r in rows]


async def find_result(
    conn: AsyncConnection, *, workflow: str, step: str, input_key: str
) -> Result | None:
    """The succeeded result of this key, if any run of the workflow produced one, locked
    (key share) until the transaction ends: a prune deleting it waits for the reuse to
    commit its refs, so the files it references are kept."""
    stmt = (
        select(results)
        .where(
            results.c.workflow == workflow,
            results.c.step == step,
            results.c.input_key == input_key,
            results.c.state == "succeeded",
        )
        .with_for_update(read=True, key_share=True)
    )
    row = (await conn.execute(stmt)).one_or_none()
    if row is None:
        return None
    return Result(row.run_id, row.step_key, row.attempt, row.output, row.output_digest,
                  list(row.artifacts or []), row.key_parts)  # fmt: skip


async def reuse(
    conn: AsyncConnection, *, run_id: uuid.UUID, step_id: int, input_key: str, result: Result
) -> bool:
    """The step succeeds with the result (its files referenced, not copied); False when
    the step is no longer in a state a result may stand in for."""
    stmt = (
        update(steps)
        .where(
            steps.c.id == step_id,
            steps.c.status.in_(values(STEP_REUSABLE - {StepStatus.RUNNING})),
        )
        .values(
            status=StepStatus.SUCCEEDED.value,
            output=result.output,
            output_digest=result.output_digest,
            input_key=input_key,
            key_parts=result.key_parts,
            reused_from=result.origin,
            force_rerun=False,
            error=None,
            started_at=sa_func.now(),
            finished_at=sa_func.now(),
            updated_at=sa_func.now(),
            lease_owner=None,
            lease_worker=None,
            lease_expires_at=None,
        )
        .returning(steps.c.id)
    )
    if (await conn.execute(stmt)).one_or_none() is None:
        return False
    await add_refs(conn, run_id=run_id, keys=result.artifacts)
    return True


async def add_refs(conn: AsyncConnection, *, run_id: uuid.UUID, keys: list[str]) -> None:
    """The run uses these stored files (prune keeps a file while any run uses it)."""
    if keys:
        stmt = pg_insert(refs).values([{"artifact_key": k, "run_id": run_id} for k in keys])
        await conn.execute(stmt.on_conflict_do_nothing())


async def replace_output(
    conn: AsyncConnection,
    *,
    run_id: uuid.UUID,
    key: str,
    output: Any,
    output_digest: str,
    artifacts: list[str],
    origin: dict[str, Any],
) -> None:
    """A revision sets a step's output: it counts as succeeded, marked where it came from."""
    await conn.execute(
        update(steps)
        .where(steps.c.run_id == run_id, steps.c.key == key)
        .values(
            status=StepStatus.SUCCEEDED.value,
            output=output,
            output_digest=output_digest,
            reused_from=origin,
            input_key=None,
            error=None,
            force_rerun=False,
            finished_at=sa_func.now(),
            updated_at=sa_func.now(),
        )
    )
    await add_refs(conn, run_id=run_id, keys=artifacts)


async def force_rerun(conn: AsyncConnection, *, run_id: uuid.UUID, keys: list[str]) -> None:
    """These steps run again even if a result with their key exists (a retry asked)."""
    if keys:
        await conn.execute(
            update(steps)
            .where(steps.c.run_id == run_id, steps.c.key.in_(keys))
            .values(force_rerun=True)
        )


async def set_param_digests(
    conn: AsyncConnection, *, run_id: uuid.UUID, params: dict[str, Any], digests: dict[str, str]
) -> None:
    await conn.execute(
        text(
            "UPDATE workflow_runs SET params = CAST(:params AS jsonb),"
            " param_digests = CAST(:digests AS jsonb), updated_at = now() WHERE id = :run_id"
        ),
        {"params": json.dumps(params), "digests": json.dumps(digests), "run_id": run_id},
    )
