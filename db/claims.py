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

from db.models import OPEN_STEP
from db.states import (
    LOST_ERROR_TYPE,
    LOST_MESSAGE,
    RUN_CLAIMABLE,
    RUN_DISPATCHING,
    STEP_CLAIMABLE,
    AttemptStatus,
    RunStatus,
    StepStatus,
    sql_in,
)

_S, _A = StepStatus, AttemptStatus


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"
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


# $1 run, $2 key, $3 single deps, $4 owner, $5 hostname, $6 task id, $7 queue, $8 lease s,
# $9 dead same-host owner to take over, $10 mapped deps, $11 generation, $12 worker id,
# $13 seconds after which a silent worker counts as dead, $14 whether the step reads params.
_CLAIM = f"""
WITH cur AS (
    SELECT s.id, s.step, s.status, s.attempts, s.max_attempts, s.lease_owner, s.item,
           r.status AS run_status, r.generation, r.params,
           (r.maps ?& $10::text[])
           AND NOT EXISTS (SELECT 1 FROM step_runs d WHERE d.run_id = $1
                           AND d.key = ANY($3::text[]) AND d.status <> '{_S.SUCCEEDED}')
           AND NOT EXISTS (SELECT 1 FROM step_runs d
                           WHERE cardinality($10::text[]) > 0 AND d.run_id = $1
                             AND d.step = ANY($10::text[]) AND d.item_index IS NOT NULL
                             AND d.{OPEN_STEP}) AS ready
    FROM step_runs s JOIN workflow_runs r ON r.id = s.run_id
    WHERE s.run_id = $1 AND s.key = $2
), claimed AS (
    UPDATE step_runs s
    SET status = '{_S.RUNNING}', attempts = s.attempts + 1, lease_owner = $4,
        lease_worker = nullif($12::text, ''),
        lease_expires_at = now() + make_interval(secs => $8), celery_task_id = $6,
        started_at = now(), finished_at = NULL, error = NULL, updated_at = now()
    FROM cur
    WHERE s.id = cur.id AND cur.generation = $11 AND cur.ready
      AND cur.run_status IN {sql_in(RUN_CLAIMABLE)}
      AND (s.status IN {sql_in(STEP_CLAIMABLE)}
           OR (s.status = '{_S.RUNNING}'
               AND (s.lease_owner = $9::text
                    OR (s.lease_expires_at < now()
                        -- a live worker keeps its step, even if its lease lapsed in an outage
                        AND NOT EXISTS (SELECT 1 FROM worker_heartbeats w
                                        WHERE w.id = s.lease_worker
                                          AND w.last_seen > now() - make_interval(secs => $13))
                    ))))
    RETURNING s.id, s.attempts
), started AS (
    UPDATE workflow_runs r
    SET status = '{RunStatus.RUNNING}', started_at = coalesce(r.started_at, now()),
        updated_at = now()
    WHERE r.id = $1 AND r.status || '' IN {sql_in(RUN_DISPATCHING)}
      AND EXISTS (SELECT 1 FROM claimed)
), lost AS (
    UPDATE step_attempts a SET status = '{_A.LOST}', finished_at = now(),
        duration_ms = extract(epoch FROM now() - a.started_at) * 1000,
        error_type = '{LOST_ERROR_TYPE}', error_message = '{LOST_MESSAGE}'
    FROM claimed
    WHERE a.step_run_id = claimed.id AND a.status = '{_A.RUNNING}'
      AND a.attempt < claimed.attempts
), att AS (
    INSERT INTO step_attempts (step_run_id, run_id, step_key, step, attempt, status,
                               celery_task_id, worker_hostname, queue, started_at)
    SELECT claimed.id, $1::uuid, $2::text, cur.step, claimed.attempts, '{_A.RUNNING}',
           $6::text, $5::text, $7::text, now()
    FROM claimed, cur
)
SELECT cur.id, cur.status, cur.run_status, cur.generation, cur.ready, cur.max_attempts,
       cur.attempts,
       cur.lease_owner, (SELECT attempts FROM claimed) AS claimed_attempt,
       -- params only to a step that reads them: a large blob is not copied to every step
       CASE WHEN EXISTS (SELECT 1 FROM claimed) AND $14 THEN cur.params END AS params,
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
               -- ... and every live item of a mapped step, scanned only when one is read
               SELECT u.step, u.item_index, u.output FROM step_runs u
               WHERE cardinality($10::text[]) > 0 AND u.run_id = $1
                 AND u.step = ANY($10::text[]) AND u.item_index IS NOT NULL
                 AND u.status <> '{_S.SUPERSEDED}'
           ) i
       ) END AS inputs
FROM cur
"""


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
) -> Claim:
    """Take the step for one attempt of `generation`, if that is the run's current one and
    every dependency has succeeded; then also return its inputs and params."""
    row = await conn.fetchrow(
        _CLAIM, run_id, key, deps, owner, hostname, task_id, queue, float(lease_seconds),
        steal_from or "", mapped_deps, generation, worker_id or "", float(worker_dead_after),
        wants_params,
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
            generation=generation,
            attempt=row["claimed_attempt"],
            max_attempts=row["max_attempts"],
            params=_loads(row["params"]) or {},
            item=_loads(row["item"]),
            inputs=inputs,
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
