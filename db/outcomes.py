"""The claim protocol's writes after a claim: complete, fail, renew the lease, and the
checkpoints of long steps (the finished pieces of an execution, such as a render's chunks,
kept per step and input key so a later attempt of the same key does only the rest).

Each is one SQL statement, guarded by `attempts = :attempt AND status = 'running'`, so a
zombie attempt whose lease expired cannot overwrite the attempt that replaced it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from db.models import OPEN_STEP
from db.states import AttemptStatus, RunStatus, StepStatus

_S, _A = StepStatus, AttemptStatus

#: The attempt's pool slot goes back, in the statement that ends the attempt.
_RELEASE = """released AS (
    UPDATE pool_slots SET holder_step_id = NULL, holder_attempt = NULL, holder_run_id = NULL,
        holder_key = NULL, holder_worker = NULL, tenant = NULL, since = NULL,
        lease_expires_at = NULL
    WHERE holder_step_id = $1 AND holder_attempt = $3 AND EXISTS (SELECT 1 FROM {guard})
    RETURNING pool
)"""

_COMPLETE = f"""
WITH done AS (
    UPDATE step_runs
    SET status = '{_S.SUCCEEDED}', output = $4::jsonb, output_digest = $5, error = NULL,
        finished_at = now(), force_rerun = false, reused_from = NULL,
        lease_owner = NULL, lease_worker = NULL, lease_expires_at = NULL, updated_at = now()
    WHERE id = $1 AND attempts = $3 AND status = '{_S.RUNNING}'
    RETURNING id, key, step, input_key, key_parts
), att AS (
    UPDATE step_attempts a
    SET status = '{_A.SUCCEEDED}', finished_at = now(),
        duration_ms = extract(epoch FROM now() - a.started_at) * 1000
    WHERE a.step_run_id = $1 AND a.attempt = $3 AND EXISTS (SELECT 1 FROM done)
), fin AS (
    UPDATE workflow_runs r
    SET status = '{RunStatus.SUCCEEDED}', finished_at = now(), updated_at = now(), error = NULL
    -- `status || ''`: look the run up by primary key, never by scanning running runs
    WHERE r.id = $2 AND r.status || '' = '{RunStatus.RUNNING}' AND EXISTS (SELECT 1 FROM done)
      AND NOT EXISTS (SELECT 1 FROM step_runs s
                      WHERE s.run_id = $2 AND s.id <> $1 AND s.{OPEN_STEP})
    RETURNING r.id
), result AS (
    -- the result cache: this key's output, for any run of the workflow to reuse
    INSERT INTO step_results AS c (workflow, step, input_key, state, run_id, step_key, attempt,
                                   output, output_digest, artifacts, key_parts)
    SELECT r.workflow, done.step, done.input_key, 'succeeded', $2, done.key, $3, $4::jsonb,
           $5, $6::jsonb, done.key_parts
    FROM done JOIN workflow_runs r ON r.id = $2
    WHERE done.input_key IS NOT NULL
    ON CONFLICT (workflow, step, input_key) DO UPDATE
    SET state = 'succeeded', run_id = EXCLUDED.run_id, step_key = EXCLUDED.step_key,
        attempt = EXCLUDED.attempt, output = EXCLUDED.output,
        output_digest = EXCLUDED.output_digest, artifacts = EXCLUDED.artifacts,
        key_parts = EXCLUDED.key_parts, updated_at = now()
), refs AS (
    INSERT INTO artifact_refs (artifact_key, run_id)
    SELECT a.key, $2 FROM done, jsonb_array_elements_text($6::jsonb) AS a(key)
    ON CONFLICT DO NOTHING
), pieces AS (
    -- its checkpoints served their purpose: the finished result replaces them
    DELETE FROM step_checkpoints WHERE step_id = $1 AND EXISTS (SELECT 1 FROM done)
    RETURNING name
), {_RELEASE.format(guard="done")}
SELECT (SELECT count(*) FROM done) AS done, (SELECT count(*) FROM fin) AS finished,
       (SELECT pool FROM released) AS pool,
       (SELECT coalesce(array_agg(DISTINCT name), '{{}}') FROM pieces) AS checkpoints
"""

_STEP_STATE = "SELECT status, attempts FROM step_runs WHERE id = $1"

_FAIL = f"""
WITH f AS (
    UPDATE step_runs
    SET status = $4::text, error = $6::jsonb, lease_owner = NULL, lease_worker = NULL,
        lease_expires_at = NULL, updated_at = now(),
        finished_at = CASE WHEN $4::text = '{_S.FAILED}' THEN now() END
    WHERE id = $1 AND attempts = $3 AND status = '{_S.RUNNING}'
    RETURNING id
), att AS (
    UPDATE step_attempts a
    SET status = $5, finished_at = now(),
        duration_ms = extract(epoch FROM now() - a.started_at) * 1000,
        error_type = $8, error_message = $9, traceback = $10
    WHERE a.step_run_id = $1 AND a.attempt = $3 AND EXISTS (SELECT 1 FROM f)
), fr AS (
    UPDATE workflow_runs
    SET status = '{RunStatus.FAILED}', error = $7::jsonb, finished_at = now(), updated_at = now()
    WHERE id = $2 AND $4::text = '{_S.FAILED}' AND status || '' = '{RunStatus.RUNNING}'
      AND EXISTS (SELECT 1 FROM f)
    RETURNING id
), {_RELEASE.format(guard="f")}
SELECT (SELECT count(*) FROM f) AS changed, (SELECT count(*) FROM fr) AS run_failed,
       (SELECT pool FROM released) AS pool
"""

_RENEW = f"""
WITH renewed AS (
    UPDATE step_runs s SET lease_expires_at = now() + make_interval(secs => $3)
    FROM workflow_runs r
    WHERE s.id = $1 AND s.attempts = $2 AND s.status = '{_S.RUNNING}' AND r.id = s.run_id
    RETURNING r.status
), slot AS (
    UPDATE pool_slots SET lease_expires_at = now() + make_interval(secs => $3)
    WHERE holder_step_id = $1 AND holder_attempt = $2 AND EXISTS (SELECT 1 FROM renewed)
)
SELECT status FROM renewed
"""

_WATCH = f"""
WITH mine AS (
    SELECT * FROM unnest($1::bigint[], $2::int[]) AS m(id, attempt)
), progressed AS (
    UPDATE step_runs s SET progress = p.progress
    FROM jsonb_each($3::jsonb) AS p(id, progress)
    WHERE s.id = p.id::bigint AND s.status = '{_S.RUNNING}'
)
SELECT s.id, s.attempts, r.status AS run_status
FROM mine JOIN step_runs s ON s.id = mine.id AND s.attempts = mine.attempt
                          AND s.status = '{_S.RUNNING}'
JOIN workflow_runs r ON r.id = s.run_id
"""

_COUNT = """
INSERT INTO engine_counters (name, label, value) VALUES ($1, $2, $3)
ON CONFLICT (name, label) DO UPDATE SET value = engine_counters.value + EXCLUDED.value
"""


@dataclass(frozen=True, slots=True)
class Completion:
    recorded: bool  # False: this attempt was superseded (a zombie) or already recorded
    run_finished: bool
    status: StepStatus | None
    attempts: int | None
    released_pool: str | None = None  # the pool whose slot it gave back
    #: Checkpoints the step no longer needs (their rows are gone; their files go next).
    checkpoints: tuple[str, ...] = ()


async def complete(
    conn: asyncpg.Connection,
    *,
    step_id: int,
    run_id: uuid.UUID,
    attempt: int,
    output: dict[str, Any],
    output_digest: str | None = None,
    artifacts: list[str] | None = None,
) -> Completion:
    """Record this attempt's output (and its digest, and the files it references); the
    run finishes if this was its last step; the result goes into the cache under the key
    the claim recorded (a step that never reuses has none)."""
    row = await conn.fetchrow(
        _COMPLETE, step_id, run_id, attempt, json.dumps(output), output_digest,
        json.dumps(artifacts or []),
    )  # fmt: skip
    assert row is not None
    if row["done"]:
        return Completion(True, bool(row["finished"]), StepStatus.SUCCEEDED, attempt, row["pool"],
                          tuple(row["checkpoints"]))  # fmt: skip
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
) -> tuple[bool, bool, str | None]:
    """Record a failed attempt; returns (recorded, run_failed, the pool whose slot it gave
    back)."""
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
    return bool(row["changed"]), bool(row["run_failed"]), row["pool"]


async def renew_lease(
    conn: asyncpg.Connection, *, step_id: int, attempt: int, lease_seconds: int
) -> RunStatus | None:
    """Extend this attempt's lease; None when the attempt no longer owns the step."""
    row = await conn.fetchrow(_RENEW, step_id, attempt, float(lease_seconds))
    return RunStatus(row["status"]) if row else None


async def watch(
    conn: asyncpg.Connection,
    *,
    leases: list[tuple[int, int]],
    progress: dict[int, dict[str, int] | None],
) -> dict[tuple[int, int], RunStatus]:
    """For each (step id, attempt) still running, its run's status (a lease missing from the
    answer was lost); and record the progress the steps reported."""
    rows = await conn.fetch(
        _WATCH, [i for i, _ in leases], [a for _, a in leases],
        json.dumps({str(k): v for k, v in progress.items()}),
    )  # fmt: skip
    return {(r["id"], r["attempts"]): RunStatus(r["run_status"]) for r in rows}


async def count(conn: asyncpg.Connection, *, name: str, label: str, by: int = 1) -> None:
    """Add `by` (one) to an engine counter (an ignored delivery, a database timeout)."""
    await conn.execute(_COUNT, name, label, by)


# --- checkpoints ---------------------------------------------------------------

_RECORD_CHECKPOINT = """
INSERT INTO step_checkpoints (step_id, name, piece, input_key, attempt, artifact)
VALUES ($1, $2, $3, $4, $5, $6::jsonb)
ON CONFLICT (step_id, name, piece) DO UPDATE
SET input_key = EXCLUDED.input_key, attempt = EXCLUDED.attempt, artifact = EXCLUDED.artifact,
    created_at = now()
"""

_LOAD_CHECKPOINTS = """
SELECT piece, artifact FROM step_checkpoints
WHERE step_id = $1 AND name = $2 AND input_key = $3 ORDER BY piece
"""


async def record_checkpoint(
    conn: asyncpg.Connection,
    *,
    step_id: int,
    name: str,
    piece: int,
    input_key: str,
    attempt: int,
    artifact: dict[str, Any],
) -> None:
    await conn.execute(
        _RECORD_CHECKPOINT, step_id, name, piece, input_key, attempt, json.dumps(artifact)
    )


async def load_checkpoints(
    conn: asyncpg.Connection, *, step_id: int, name: str, input_key: str
) -> dict[int, dict[str, Any]]:
    """The pieces recorded for this step under this input key: piece -> artifact."""
    rows = await conn.fetch(_LOAD_CHECKPOINTS, step_id, name, input_key)
    return {r["piece"]: json.loads(r["artifact"]) for r in rows}
