"""The claim protocol: the only way a step's status changes while it executes.

Each operation is one SQL statement (CTEs), so it is atomic and costs one round trip:
claim-and-read-inputs, complete-and-close-attempt, fail-and-close-attempt, renew-lease.
They run on asyncpg directly (prepared statements, no ORM layer): they are the hot path,
paid on every step, where SQLAlchemy's per-statement overhead was several times the
database's own time.
Every write after the claim is guarded by `attempts = :attempt AND status = 'running'`, so
a zombie attempt whose lease expired cannot overwrite the attempt that replaced it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import asyncpg

from db.states import (
    RUN_CLAIMABLE,
    STEP_CLAIMABLE,
    AttemptStatus,
    RunStatus,
    StepStatus,
    sql_in,
)


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"
    ALREADY_SUCCEEDED = "already_succeeded"
    BUSY = "busy"  # running under a live lease: a duplicate delivery
    NOT_RUNNABLE = "not_runnable"  # run cancelled, step failed/cancelled, or no such step


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: ClaimOutcome
    step_id: int = 0
    status: StepStatus | None = None
    run_status: RunStatus | None = None
    attempt: int = 0
    max_attempts: int = 1
    lease_owner: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    item: Any = None
    #: Recorded outputs of the dependencies: step name -> [(item_index, output), ...].
    inputs: dict[str, list[tuple[int | None, Any]]] = field(default_factory=dict)


_CLAIM = f"""
WITH cur AS (
    SELECT s.id, s.status, s.attempts, s.max_attempts, s.lease_owner, s.item,
           r.status AS run_status, r.params
    FROM step_runs s JOIN workflow_runs r ON r.id = s.run_id
    WHERE s.run_id = $1 AND s.key = $2
), claimed AS (
    UPDATE step_runs s
    SET status = 'running', attempts = s.attempts + 1, lease_owner = $4,
        lease_expires_at = now() + make_interval(secs => $8), celery_task_id = $6,
        started_at = now(), finished_at = NULL, error = NULL, updated_at = now()
    FROM cur
    WHERE s.id = cur.id AND cur.run_status IN {sql_in(RUN_CLAIMABLE)}
      AND (s.status IN {sql_in(STEP_CLAIMABLE)}
           OR (s.status = 'running'
               AND (s.lease_expires_at < now() OR s.lease_owner = $9::text)))
    RETURNING s.id, s.attempts
), lost AS (
    UPDATE step_attempts a SET status = 'lost', finished_at = now(),
        duration_ms = extract(epoch FROM now() - a.started_at) * 1000,
        error_type = 'WorkerLost', error_message = 'lease expired or worker died'
    FROM claimed
    WHERE a.step_run_id = claimed.id AND a.status = 'running' AND a.attempt < claimed.attempts
), att AS (
    INSERT INTO step_attempts (step_run_id, run_id, step_key, attempt, status,
                               celery_task_id, worker_hostname, queue, started_at)
    SELECT id, $1::uuid, $2::text, attempts, 'running',
           $6::text, $5::text, $7::text, now()
    FROM claimed
)
SELECT cur.id, cur.status, cur.run_status, cur.max_attempts, cur.lease_owner,
       (SELECT attempts FROM claimed) AS claimed_attempt,
       CASE WHEN EXISTS (SELECT 1 FROM claimed) THEN cur.params END AS params,
       cur.item,
       CASE WHEN EXISTS (SELECT 1 FROM claimed) THEN (
           SELECT coalesce(jsonb_agg(jsonb_build_array(i.step, i.item_index, i.output)
                                     ORDER BY i.step, i.item_index), '[]'::jsonb)
           FROM (
               -- single steps by key (an index lookup each) ...
               SELECT u.step, u.item_index, u.output
               FROM unnest($3::text[]) AS k(key)
               CROSS JOIN LATERAL (SELECT * FROM step_runs v
                                   WHERE v.run_id = $1 AND v.key = k.key) u
               UNION ALL
               -- ... and every item of a mapped step, scanned only when one is read
               SELECT u.step, u.item_index, u.output FROM step_runs u
               WHERE cardinality($10::text[]) > 0 AND u.run_id = $1
                 AND u.step = ANY($10::text[]) AND u.item_index IS NOT NULL
           ) i
       ) END AS inputs
FROM cur
"""

_COMPLETE = """
WITH done AS (
    UPDATE step_runs
    SET status = 'succeeded', output = $4::jsonb, error = NULL, finished_at = now(),
        lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE id = $1 AND attempts = $3 AND status = 'running'
    RETURNING id
), att AS (
    UPDATE step_attempts a
    SET status = 'succeeded', finished_at = now(),
        duration_ms = extract(epoch FROM now() - a.started_at) * 1000
    WHERE a.step_run_id = $1 AND a.attempt = $3 AND EXISTS (SELECT 1 FROM done)
), fin AS (
    UPDATE workflow_runs r
    SET status = 'succeeded', finished_at = now(), updated_at = now(), error = NULL
    -- `status || ''`: look the run up by primary key, never by scanning running runs
    WHERE r.id = $2 AND r.status || '' = 'running' AND EXISTS (SELECT 1 FROM done)
      AND NOT EXISTS (SELECT 1 FROM step_runs s
                      WHERE s.run_id = $2 AND s.id <> $1 AND s.status <> 'succeeded')
    RETURNING r.id
)
SELECT (SELECT count(*) FROM done) AS done, (SELECT count(*) FROM fin) AS finished
"""

_STEP_STATE = "SELECT status, attempts FROM step_runs WHERE id = $1"

_FAIL = """
WITH f AS (
    UPDATE step_runs
    SET status = $4::text, error = $6::jsonb, lease_owner = NULL, lease_expires_at = NULL,
        updated_at = now(), finished_at = CASE WHEN $4::text = 'failed' THEN now() END
    WHERE id = $1 AND attempts = $3 AND status = 'running'
    RETURNING id
), att AS (
    UPDATE step_attempts a
    SET status = $5, finished_at = now(),
        duration_ms = extract(epoch FROM now() - a.started_at) * 1000,
        error_type = $8, error_message = $9, traceback = $10
    WHERE a.step_run_id = $1 AND a.attempt = $3 AND EXISTS (SELECT 1 FROM f)
), fr AS (
    UPDATE workflow_runs
    SET status = 'failed', error = $7::jsonb, finished_at = now(), updated_at = now()
    WHERE id = $2 AND $4::text = 'failed' AND status || '' = 'running'
      AND EXISTS (SELECT 1 FROM f)
    RETURNING id
)
SELECT (SELECT count(*) FROM f) AS changed, (SELECT count(*) FROM fr) AS run_failed
"""

_RENEW = """
UPDATE step_runs s SET lease_expires_at = now() + make_interval(secs => $3)
FROM workflow_runs r
WHERE s.id = $1 AND s.attempts = $2 AND s.status = 'running' AND r.id = s.run_id
RETURNING r.status
"""


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def claim(
    conn: asyncpg.Connection,
    *,
    run_id: uuid.UUID,
    key: str,
    deps: list[str],
    mapped_deps: list[str],
    owner: str,
    hostname: str,
    task_id: str,
    queue: str,
    lease_seconds: int,
    steal_from: str | None = None,
) -> Claim:
    """Try to take the step for one attempt; on success, also return its inputs and params."""
    row = await conn.fetchrow(
        _CLAIM, run_id, key, deps, owner, hostname, task_id, queue, float(lease_seconds),
        steal_from or "", mapped_deps,
    )  # fmt: skip
    if row is None:
        return Claim(ClaimOutcome.NOT_RUNNABLE)
    status, run_status = StepStatus(row["status"]), RunStatus(row["run_status"])
    if row["claimed_attempt"] is not None:
        inputs: dict[str, list[tuple[int | None, Any]]] = {}
        for step, index, output in _loads(row["inputs"]):
            inputs.setdefault(step, []).append((index, output))
        return Claim(
            ClaimOutcome.CLAIMED,
            step_id=row["id"],
            status=status,
            run_status=run_status,
            attempt=row["claimed_attempt"],
            max_attempts=row["max_attempts"],
            params=_loads(row["params"]) or {},
            item=_loads(row["item"]),
            inputs=inputs,
        )
    if status is StepStatus.SUCCEEDED:
        outcome = ClaimOutcome.ALREADY_SUCCEEDED
    elif status is StepStatus.RUNNING or (status in STEP_CLAIMABLE and run_status in RUN_CLAIMABLE):
        # Running under a live lease, or claimed by a concurrent duplicate in between.
        outcome = ClaimOutcome.BUSY
    else:
        outcome = ClaimOutcome.NOT_RUNNABLE
    return Claim(outcome, status=status, run_status=run_status, lease_owner=row["lease_owner"])


@dataclass(frozen=True, slots=True)
class Completion:
    recorded: bool  # False: this attempt was superseded (a zombie) or already recorded
    run_finished: bool
    status: StepStatus | None
    attempts: int | None


async def complete(
    conn: asyncpg.Connection,
    *,
    step_id: int,
    run_id: uuid.UUID,
    attempt: int,
    output: dict[str, Any],
) -> Completion:
    row = await conn.fetchrow(_COMPLETE, step_id, run_id, attempt, json.dumps(output))
    assert row is not None
    if row["done"]:
        return Completion(True, bool(row["finished"]), StepStatus.SUCCEEDED, attempt)
    # Not recorded: superseded by a later attempt, or cancelled. Say what happened instead.
    now = await conn.fetchrow(_STEP_STATE, step_id)
    return Completion(
        recorded=False,
        run_finished=False,
        status=StepStatus(now["status"]) if now else None,
        attempts=now["attempts"] if now else None,
    )


@dataclass(frozen=True, slots=True)
class FailureRecord:
    error_type: str
    message: str
    traceback: str
    retrying: bool


async def fail(
    conn: asyncpg.Connection,
    *,
    step_id: int,
    run_id: uuid.UUID,
    key: str,
    attempt: int,
    failure: FailureRecord,
) -> tuple[bool, bool]:
    """Record a failed attempt; returns (recorded, run_failed)."""
    error = {"type": failure.error_type, "message": failure.message, "attempt": attempt}
    status = StepStatus.RETRYING if failure.retrying else StepStatus.FAILED
    attempt_status = AttemptStatus.RETRYING if failure.retrying else AttemptStatus.FAILED
    row = await conn.fetchrow(
        _FAIL,
        step_id,
        run_id,
        attempt,
        status.value,
        attempt_status.value,
        json.dumps(error),
        json.dumps({**error, "step": key}),
        failure.error_type,
        failure.message,
        failure.traceback,
    )
    assert row is not None
    return bool(row["changed"]), bool(row["run_failed"])


async def renew_lease(
    conn: asyncpg.Connection, *, step_id: int, attempt: int, lease_seconds: int
) -> RunStatus | None:
    """Extend this attempt's lease; None when the attempt no longer owns the step."""
    row = await conn.fetchrow(_RENEW, step_id, attempt, float(lease_seconds))
    return RunStatus(row["status"]) if row else None
