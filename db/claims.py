"""The claim protocol: the only way a step's status changes while it executes.

Each operation is one SQL statement (CTEs), so it is atomic and costs one round trip:
claim-and-read-inputs, complete-and-close-attempt, fail-and-close-attempt, renew-lease.
Every write after the claim is guarded by `attempts = :attempt AND status = 'running'`, so
a zombie attempt whose lease expired cannot overwrite the attempt that replaced it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

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
    status: StepStatus | None = None
    run_status: RunStatus | None = None
    attempt: int = 0
    max_attempts: int = 1
    lease_owner: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    item: Any = None
    #: Recorded outputs of the dependencies: step name -> [(item_index, output), ...].
    inputs: dict[str, list[tuple[int | None, Any]]] = field(default_factory=dict)


_CLAIM = text(f"""
WITH cur AS (
    SELECT s.id, s.status, s.attempts, s.max_attempts, s.lease_owner, s.item,
           r.status AS run_status, r.params
    FROM step_runs s JOIN workflow_runs r ON r.id = s.run_id
    WHERE s.run_id = :run_id AND s.key = :key
), claimed AS (
    UPDATE step_runs s
    SET status = 'running', attempts = s.attempts + 1, lease_owner = :owner,
        lease_expires_at = now() + make_interval(secs => :lease), celery_task_id = :task_id,
        started_at = now(), finished_at = NULL, error = NULL, updated_at = now()
    FROM cur
    WHERE s.id = cur.id AND cur.run_status IN {sql_in(RUN_CLAIMABLE)}
      AND (s.status IN {sql_in(STEP_CLAIMABLE)}
           OR (s.status = 'running'
               AND (s.lease_expires_at < now() OR s.lease_owner = CAST(:steal_from AS text))))
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
    SELECT id, CAST(:run_id AS uuid), CAST(:key AS text), attempts, 'running',
           CAST(:task_id AS text), CAST(:hostname AS text), CAST(:queue AS text), now()
    FROM claimed
)
SELECT cur.status, cur.run_status, cur.max_attempts, cur.lease_owner,
       (SELECT attempts FROM claimed) AS claimed_attempt,
       CASE WHEN EXISTS (SELECT 1 FROM claimed) THEN cur.params END AS params,
       cur.item,
       CASE WHEN EXISTS (SELECT 1 FROM claimed) THEN (
           SELECT coalesce(jsonb_agg(jsonb_build_array(u.step, u.item_index, u.output)
                                     ORDER BY u.step, u.item_index), '[]'::jsonb)
           FROM step_runs u WHERE u.run_id = :run_id AND u.step = ANY(CAST(:deps AS text[]))
       ) END AS inputs
FROM cur
""")

_COMPLETE = text("""
WITH done AS (
    UPDATE step_runs
    SET status = 'succeeded', output = CAST(:output AS jsonb), error = NULL,
        finished_at = now(),
        lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE run_id = :run_id AND key = :key AND attempts = :attempt AND status = 'running'
    RETURNING id
), att AS (
    UPDATE step_attempts a
    SET status = 'succeeded', finished_at = now(),
        duration_ms = extract(epoch FROM now() - a.started_at) * 1000
    FROM done WHERE a.step_run_id = done.id AND a.attempt = :attempt
), fin AS (
    UPDATE workflow_runs r
    SET status = 'succeeded', finished_at = now(), updated_at = now(), error = NULL
    WHERE r.id = :run_id AND r.status = 'running' AND EXISTS (SELECT 1 FROM done)
      AND NOT EXISTS (SELECT 1 FROM step_runs s
                      WHERE s.run_id = :run_id AND s.key <> :key AND s.status <> 'succeeded')
    RETURNING r.id
)
SELECT (SELECT count(*) FROM done) AS done, (SELECT count(*) FROM fin) AS finished,
       (SELECT status FROM step_runs WHERE run_id = :run_id AND key = :key) AS status,
       (SELECT attempts FROM step_runs WHERE run_id = :run_id AND key = :key) AS attempts
""")

_FAIL = text("""
WITH f AS (
    UPDATE step_runs
    SET status = CAST(:status AS text), error = CAST(:error AS jsonb),
        lease_owner = NULL, lease_expires_at = NULL,
        updated_at = now(), finished_at = CASE WHEN CAST(:status AS text) = 'failed' THEN now() END
    WHERE run_id = :run_id AND key = :key AND attempts = :attempt AND status = 'running'
    RETURNING id
), att AS (
    UPDATE step_attempts a
    SET status = :attempt_status, finished_at = now(),
        duration_ms = extract(epoch FROM now() - a.started_at) * 1000,
        error_type = :error_type, error_message = :error_message, traceback = :traceback
    FROM f WHERE a.step_run_id = f.id AND a.attempt = :attempt
), fr AS (
    UPDATE workflow_runs
    SET status = 'failed', error = CAST(:run_error AS jsonb), finished_at = now(),
        updated_at = now()
    WHERE id = :run_id AND CAST(:status AS text) = 'failed' AND status = 'running'
      AND EXISTS (SELECT 1 FROM f)
    RETURNING id
)
SELECT (SELECT count(*) FROM f) AS changed, (SELECT count(*) FROM fr) AS run_failed
""")

_RENEW = text("""
UPDATE step_runs s SET lease_expires_at = now() + make_interval(secs => :lease)
FROM workflow_runs r
WHERE s.run_id = :run_id AND s.key = :key AND s.attempts = :attempt AND s.status = 'running'
  AND r.id = s.run_id
RETURNING r.status
""")


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def claim(
    engine: AsyncEngine,
    *,
    run_id: uuid.UUID,
    key: str,
    deps: list[str],
    owner: str,
    hostname: str,
    task_id: str,
    queue: str,
    lease_seconds: int,
    steal_from: str | None = None,
) -> Claim:
    """Try to take the step for one attempt; on success, also return its inputs and params."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                _CLAIM,
                {
                    "run_id": run_id,
                    "key": key,
                    "deps": deps,
                    "owner": owner,
                    "hostname": hostname,
                    "task_id": task_id,
                    "queue": queue,
                    "lease": float(lease_seconds),
                    "steal_from": steal_from or "",
                },
            )
        ).one_or_none()
    if row is None:
        return Claim(ClaimOutcome.NOT_RUNNABLE)
    status, run_status = StepStatus(row.status), RunStatus(row.run_status)
    if row.claimed_attempt is not None:
        inputs: dict[str, list[tuple[int | None, Any]]] = {}
        for step, index, output in _loads(row.inputs):
            inputs.setdefault(step, []).append((index, output))
        return Claim(
            ClaimOutcome.CLAIMED,
            status=status,
            run_status=run_status,
            attempt=row.claimed_attempt,
            max_attempts=row.max_attempts,
            params=_loads(row.params) or {},
            item=_loads(row.item),
            inputs=inputs,
        )
    if status is StepStatus.SUCCEEDED:
        outcome = ClaimOutcome.ALREADY_SUCCEEDED
    elif status is StepStatus.RUNNING or (status in STEP_CLAIMABLE and run_status in RUN_CLAIMABLE):
        # Running under a live lease, or claimed by a concurrent duplicate in between.
        outcome = ClaimOutcome.BUSY
    else:
        outcome = ClaimOutcome.NOT_RUNNABLE
    return Claim(outcome, status=status, run_status=run_status, lease_owner=row.lease_owner)


@dataclass(frozen=True, slots=True)
class Completion:
    recorded: bool  # False: this attempt was superseded (a zombie) or already recorded
    run_finished: bool
    status: StepStatus | None
    attempts: int | None


async def complete(
    engine: AsyncEngine, *, run_id: uuid.UUID, key: str, attempt: int, output: dict[str, Any]
) -> Completion:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                _COMPLETE,
                {"run_id": run_id, "key": key, "attempt": attempt, "output": json.dumps(output)},
            )
        ).one()
    return Completion(
        recorded=bool(row.done),
        run_finished=bool(row.finished),
        status=StepStatus(row.status) if row.status else None,
        attempts=row.attempts,
    )


@dataclass(frozen=True, slots=True)
class FailureRecord:
    error_type: str
    message: str
    traceback: str
    retrying: bool


async def fail(
    engine: AsyncEngine, *, run_id: uuid.UUID, key: str, attempt: int, failure: FailureRecord
) -> tuple[bool, bool]:
    """Record a failed attempt; returns (recorded, run_failed)."""
    error = {"type": failure.error_type, "message": failure.message, "attempt": attempt}
    status = StepStatus.RETRYING if failure.retrying else StepStatus.FAILED
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                _FAIL,
                {
                    "run_id": run_id,
                    "key": key,
                    "attempt": attempt,
                    "status": status.value,
                    "attempt_status": (
                        AttemptStatus.RETRYING if failure.retrying else AttemptStatus.FAILED
                    ).value,
                    "error": json.dumps(error),
                    "run_error": json.dumps({**error, "step": key}),
                    "error_type": failure.error_type,
                    "error_message": failure.message,
                    "traceback": failure.traceback,
                },
            )
        ).one()
    return bool(row.changed), bool(row.run_failed)


async def renew_lease(
    engine: AsyncEngine, *, run_id: uuid.UUID, key: str, attempt: int, lease_seconds: int
) -> RunStatus | None:
    """Extend this attempt's lease; None when the attempt no longer owns the step."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                _RENEW,
                {"run_id": run_id, "key": key, "attempt": attempt, "lease": float(lease_seconds)},
            )
        ).one_or_none()
    return RunStatus(row.status) if row else None
