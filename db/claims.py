"""The claim protocol: the only way a step's status changes while it executes.

Each operation is one SQL statement (CTEs), so it is atomic and costs one round trip:
claim-and-read-inputs here, and complete, fail and renew-lease in `db.outcomes`.
They run on asyncpg directly (prepared statements, no ORM layer): they are the hot path,
paid on every step, where SQLAlchemy's per-statement overhead was several times the
database's own time.
A claim is fenced twice: by the run's generation (a message sent under an earlier
dispatch never runs) and by the step's dependencies (all succeeded, checked in the same
statement). Every write after the claim is guarded by `attempts = :attempt AND status =
'running'`, so a zombie attempt whose lease expired cannot overwrite its successor.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import asyncpg

from db.claim_statement import CLAIM, KEY_LOCK
from db.states import (
    RUN_CLAIMABLE,
    STEP_CLAIMABLE,
    AttemptStatus,
    RunStatus,
    StepStatus,
)

_S, _A = StepStatus, AttemptStatus


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"
    REUSED = "reused"  # a result with the same input key stood in: nothing to run
    AWAITING = "awaiting"  # another execution computes the same key now: try again shortly
    NO_SLOT = "no_slot"  # its pool has no slot for it now: it waits in PostgreSQL
    ALREADY_SUCCEEDED = "already_succeeded"  # a redelivery of this generation's message
    BUSY = "busy"  # running under a live lease: a duplicate delivery
    STALE = "stale"  # sent under an earlier generation of the run
    NOT_READY = "not_ready"  # a dependency has not succeeded (or its map is not expanded)
    NOT_RUNNABLE = "not_runnable"  # run over or cancelled; step failed/cancelled/superseded


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: ClaimOutcome
    step_id: int = 0
    status: StepStatus | None = None
    run_status: RunStatus | None = None
    generation: int = 0
    attempt: int = 0
    max_attempts: int = 1
    lease_owner: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    item: Any = None
    #: Recorded outputs of the dependencies: step name -> [(item_index, output), ...].
    inputs: dict[str, list[tuple[int | None, Any]]] = field(default_factory=dict)
    #: The execution's input key (None: the step never reuses, or a part is unknown),
    #: its parts, and the parts of the key the step held before (to say what changed).
    input_key: str | None = None
    key_parts: dict[str, Any] | None = None
    previous_parts: dict[str, Any] | None = None
    workflow: str = ""
    #: Its pool's slot while it runs; NO_SLOT: what it waits with (priority, tenant).
    slot: int | None = None
    priority: int = 5
    tenant: str = "default"
    #: REUSED: where the result came from; whether the run finished with it.
    reused_from: dict[str, Any] | None = None
    run_finished: bool = False


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def claim(
    conn: asyncpg.Connection,
    *,
    run_id: uuid.UUID,
    key: str,
    generation: int,
    deps: list[str],
    mapped_deps: list[str],
    owner: str,
    worker_id: str | None,
    hostname: str,
    task_id: str,
    queue: str,
    lease_seconds: int,
    worker_dead_after: float,
    wants_params: bool = True,
    steal_from: str | None = None,
    code_version: str | None = None,
    pool: str | None = None,
    queued_for: float | None = None,
) -> Claim:
    """Take the step for one attempt of `generation`, if that is the run's current one and
    every dependency has succeeded; then also return its inputs and params. With a
    `code_version` (a step that may reuse), its input key is computed in the same
    statement: a succeeded result with that key stands in for running it (REUSED), and
    one being computed elsewhere makes this delivery wait (AWAITING). `queued_for`: how
    long the message waited to be taken (seconds, as the worker measured it); the attempt
    records when it was enqueued in the database's clock, so `started_at - enqueued_at`
    is that wait whatever the clocks of the database and the sender say."""
    args = (run_id, key, deps, owner, hostname, task_id, queue, float(lease_seconds),
            steal_from or "", mapped_deps, generation, worker_id or "", float(worker_dead_after),
            wants_params, code_version or "", pool or "", queued_for)  # fmt: skip
    if code_version:
        # Executions that may share an input key take their claims one at a time, and the
        # claim reads in a statement of its own after the lock: one that committed a
        # moment ago as computing the key is seen (AWAITING), never computed twice.
        async with conn.transaction():
            await conn.execute(KEY_LOCK, run_id, key)
            row = await conn.fetchrow(CLAIM, *args)
    else:
        row = await conn.fetchrow(CLAIM, *args)
    if row is None:
        return Claim(ClaimOutcome.NOT_RUNNABLE)
    status, run_status = StepStatus(row["status"]), RunStatus(row["run_status"])
    keyed = {
        "workflow": row["workflow"],
        "slot": row["slot"],
        "priority": row["priority"],
        "tenant": row["tenant"],
        "input_key": row["input_key"],
        "key_parts": _loads(row["key_parts"]),
        "previous_parts": _loads(row["previous_parts"]),
    }
    if row["reused"]:
        return Claim(
            ClaimOutcome.REUSED, step_id=row["id"], status=StepStatus.SUCCEEDED,
            run_status=run_status, generation=generation, attempt=row["attempts"],
            reused_from=_loads(row["reused_from"]), run_finished=bool(row["run_finished"]),
            **keyed,
        )  # fmt: skip
    if row["no_slot"]:
        return Claim(ClaimOutcome.NO_SLOT, step_id=row["id"], status=status,
                     run_status=run_status, generation=generation, **keyed)  # fmt: skip
    if row["awaiting"]:
        return Claim(ClaimOutcome.AWAITING, step_id=row["id"], status=status,
                     run_status=run_status, generation=generation, **keyed)  # fmt: skip
    if row["claimed_attempt"] is not None:
        inputs: dict[str, list[tuple[int | None, Any]]] = {}
        for step, index, output in _loads(row["inputs"]):
            inputs.setdefault(step, []).append((index, output))
        return Claim(
            ClaimOutcome.CLAIMED,
            step_id=row["id"],
            status=status,
            run_status=run_status,
            generation=generation,
            attempt=row["claimed_attempt"],
            max_attempts=row["max_attempts"],
            params=_loads(row["params"]) or {},
            item=_loads(row["item"]),
            inputs=inputs,
            **keyed,
        )
    return Claim(
        _refusal(row, generation, status, run_status),
        step_id=row["id"],
        attempt=row["attempts"],  # the step's latest attempt, for the log line
        status=status,
        run_status=run_status,
        generation=row["generation"],
        lease_owner=row["lease_owner"],
    )


def _refusal(
    row: asyncpg.Record, generation: int, status: StepStatus, run_status: RunStatus
) -> ClaimOutcome:
    """Why a claim took nothing: the first of these that holds."""
    if row["generation"] != generation:
        return ClaimOutcome.STALE
    if status is StepStatus.SUCCEEDED:
        return ClaimOutcome.ALREADY_SUCCEEDED
    if run_status not in RUN_CLAIMABLE or not (status in STEP_CLAIMABLE or status is _S.RUNNING):
        return ClaimOutcome.NOT_RUNNABLE
    if not row["ready"]:
        return ClaimOutcome.NOT_READY
    # Running under a live lease, or claimed by a concurrent duplicate in between.
    return ClaimOutcome.BUSY


_LATEST = """
SELECT key_parts FROM step_results WHERE workflow = $1 AND step = $2
ORDER BY updated_at DESC LIMIT 1
"""


async def latest_parts(
    conn: asyncpg.Connection, *, workflow: str, step: str
) -> dict[str, Any] | None:
    """The key parts of the step's latest result in the workflow (any run): what a first
    execution's miss is compared with when the step has no key of its own yet."""
    return _loads(await conn.fetchval(_LATEST, workflow, step))  # type: ignore[no-any-return]
