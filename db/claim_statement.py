"""The claim statement: one SQL statement (CTEs) that fences a delivery by generation and
dependencies, computes the step's input key from the recorded digests (`db.keys` defines
the form), and either reuses a succeeded result with that key, waits while another live
attempt computes the same key (its running step row, found by its key, says so), or takes
the step for an attempt, and returns the inputs the attempt needs. `db.claims` runs it and
reads its row."""

from __future__ import annotations

from db.keys import KEY_FORMAT
from db.models import OPEN_STEP
from db.pools import slot_free
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

_KEYED_RUN_OK = sql_in(RUN_CLAIMABLE)
_CLAIMABLE = sql_in(STEP_CLAIMABLE)
_SLOT_FREE = slot_free("q", dead_after="$13")

# $1 run, $2 key, $3 single deps, $4 owner, $5 hostname, $6 task id, $7 queue, $8 lease s,
# $9 dead same-host owner to take over, $10 mapped deps, $11 generation, $12 worker id,
# $13 seconds after which a silent worker counts as dead, $14 whether the step reads params,
# $15 the step's code version ('': it never reuses a result), $16 its pool ('': none),
# $17 seconds its message waited to be taken, as the worker measured it (NULL: unknown).
CLAIM = f"""
WITH cur AS (
    SELECT s.id, s.step, s.status, s.attempts, s.max_attempts, s.lease_owner, s.item,
           s.item_index, s.item_digest, s.force_rerun, s.key_parts AS previous_parts,
           s.lease_expires_at, s.lease_worker,
           r.status AS run_status, r.generation, r.params, r.workflow, r.cache AS run_cache,
           r.param_digests ->> s.step AS params_digest, r.priority, r.tenant,
           (r.maps ?& $10::text[])
           AND NOT EXISTS (SELECT 1 FROM step_runs d WHERE d.run_id = $1
                           AND d.key = ANY($3::text[]) AND d.status <> '{_S.SUCCEEDED}')
           AND NOT EXISTS (SELECT 1 FROM step_runs d
                           WHERE cardinality($10::text[]) > 0 AND d.run_id = $1
                             AND d.step = ANY($10::text[]) AND d.item_index IS NOT NULL
                             AND d.{OPEN_STEP}) AS ready
    FROM step_runs s JOIN workflow_runs r ON r.id = s.run_id
    WHERE s.run_id = $1 AND s.key = $2
    -- locked, and read as it is now: a duplicate delivery claiming at the same moment
    -- waits here, then sees this claim's attempt (a plain read would let both take it)
    FOR NO KEY UPDATE OF s
), deps AS (
    -- the digests of what it reads, as `steps.engine.keys.input_key` joins them
    SELECT string_agg(d.name || '=' || coalesce(d.digest, ''), E'\n' ORDER BY d.name COLLATE "C")
               AS text,
           jsonb_object_agg(d.name, d.digest) AS parts,
           bool_and(d.digest IS NOT NULL) AS known
    FROM (
        SELECT u.step AS name, u.output_digest AS digest
        FROM step_runs u WHERE u.run_id = $1 AND u.key = ANY($3::text[])
        UNION ALL
        SELECT md.name,
               CASE WHEN bool_and(m.id IS NULL OR m.output_digest IS NOT NULL)
                    THEN encode(sha256(convert_to(coalesce(string_agg(m.output_digest, ','
                         ORDER BY m.item_index), ''), 'UTF8')), 'hex') END
        FROM unnest($10::text[]) AS md(name)
        LEFT JOIN step_runs m ON m.run_id = $1 AND m.step = md.name
             AND m.item_index IS NOT NULL AND m.status <> '{_S.SUPERSEDED}'
        GROUP BY md.name
    ) d
), keyed AS (
    SELECT CASE WHEN $15 <> '' AND cur.params_digest IS NOT NULL
                 AND coalesce((SELECT known FROM deps), true)
                 AND (cur.item_index IS NULL OR cur.item_digest IS NOT NULL)
           THEN encode(sha256(convert_to(concat_ws(E'\n', '{KEY_FORMAT}', cur.step, $15,
                cur.params_digest, coalesce(cur.item_digest, ''),
                coalesce((SELECT text FROM deps), '')), 'UTF8')), 'hex') END AS input_key,
           jsonb_build_object('code', $15, 'params', coalesce(cur.params_digest, ''),
                              'item', coalesce(cur.item_digest, ''),
                              'inputs', coalesce((SELECT parts FROM deps), '{{}}'::jsonb)) AS parts,
           ($15 <> '' AND cur.run_cache AND NOT cur.force_rerun) AS may_reuse
    FROM cur
), hit AS (
    SELECT c.run_id, c.step_key, c.attempt, c.output, c.output_digest, c.artifacts,
           c.key_parts
    FROM step_results c, cur, keyed
    WHERE keyed.input_key IS NOT NULL AND keyed.may_reuse AND c.workflow = cur.workflow
      AND c.step = cur.step AND c.input_key = keyed.input_key
    -- held until the claim commits its refs: a prune deleting the result waits, and
    -- then sees the refs and keeps the files (or this claim finds it gone and runs)
    FOR KEY SHARE OF c
), elsewhere AS (
    -- the same key being computed right now by another live attempt: wait for its result
    SELECT 1 FROM step_runs o
    WHERE o.input_key = (SELECT input_key FROM keyed WHERE may_reuse)
      AND o.status = '{_S.RUNNING}' AND o.input_key IS NOT NULL
      AND o.id <> (SELECT id FROM cur) AND o.step = (SELECT step FROM cur)
      AND o.lease_expires_at > now()
      AND (SELECT w.workflow FROM workflow_runs w WHERE w.id = o.run_id)
          = (SELECT workflow FROM cur)
), takeable AS (
    SELECT cur.id FROM cur
    WHERE cur.generation = $11 AND cur.ready AND cur.run_status IN {_KEYED_RUN_OK}
      AND (cur.status IN {_CLAIMABLE}
           OR (cur.status = '{_S.RUNNING}'
               AND (cur.lease_owner = $9::text
                    OR (cur.lease_expires_at < now()
                        -- a live worker keeps its step, even if its lease lapsed in an outage
                        AND NOT EXISTS (SELECT 1 FROM worker_heartbeats w
                                        WHERE w.id = cur.lease_worker
                                          AND w.last_seen > now() - make_interval(secs => $13))
                    ))))
), reused AS (
    UPDATE step_runs s
    SET status = '{_S.SUCCEEDED}', output = hit.output, output_digest = hit.output_digest,
        input_key = keyed.input_key, key_parts = hit.key_parts, force_rerun = false,
        reused_from = jsonb_build_object('run_id', hit.run_id, 'key', hit.step_key,
                                         'step_key', hit.step_key, 'attempt', hit.attempt),
        lease_owner = NULL, lease_worker = NULL, lease_expires_at = NULL, error = NULL,
        celery_task_id = $6, started_at = now(), finished_at = now(), updated_at = now()
    FROM takeable, hit, keyed
    WHERE s.id = takeable.id
    RETURNING s.id
), refs AS (
    INSERT INTO artifact_refs (artifact_key, run_id)
    SELECT a.key, $1 FROM reused, hit, jsonb_array_elements_text(hit.artifacts) AS a(key)
    ON CONFLICT DO NOTHING
), slot AS (
    -- a slot of the step's pool, taken with the claim: one granted to it, its own while
    -- its lease lives (a redelivery) or whatever its lease when taking over from its dead
    -- same-host owner (a restarted worker), or a free one when
    -- no step waits for the pool ahead of it (a lapsed lease of a dead worker frees a
    -- slot for all; a live worker keeps its slot through an outage, as its step)
    UPDATE pool_slots p
    SET holder_step_id = cur.id, holder_attempt = cur.attempts + 1, holder_run_id = $1,
        holder_key = $2, holder_worker = $4, tenant = cur.tenant, since = now(),
        lease_expires_at = now() + make_interval(secs => $8),
        reserved_for = NULL, reserved_until = NULL
    FROM cur
    WHERE $16 <> '' AND p.pool = $16 AND p.slot = (
        SELECT q.slot FROM pool_slots q
        WHERE q.pool = $16
          AND ((q.reserved_for = cur.id AND {_SLOT_FREE})
               OR (q.holder_step_id = cur.id
                   AND (q.lease_expires_at >= now() OR cur.lease_owner = $9::text))
               OR ({_SLOT_FREE}
                   AND (q.reserved_for IS NULL OR q.reserved_until < now())
                   AND NOT EXISTS (SELECT 1 FROM slot_waits w WHERE w.pool = $16
                                   AND w.granted_at IS NULL AND w.step_id <> cur.id)))
        ORDER BY coalesce(q.reserved_for = cur.id OR q.holder_step_id = cur.id, false) DESC,
                 q.slot
        LIMIT 1 FOR UPDATE SKIP LOCKED)
      AND EXISTS (SELECT 1 FROM takeable)
      AND NOT EXISTS (SELECT 1 FROM hit) AND NOT EXISTS (SELECT 1 FROM elsewhere)
    RETURNING p.slot
), unwaited AS (
    DELETE FROM slot_waits w USING slot, cur WHERE w.step_id = cur.id
), served AS (
    INSERT INTO pool_tenants (pool, tenant, last_granted)
    SELECT $16, cur.tenant, now() FROM slot, cur
    ON CONFLICT (pool, tenant) DO UPDATE SET last_granted = now()
), claimed AS (
    UPDATE step_runs s
    SET status = '{_S.RUNNING}', attempts = s.attempts + 1, lease_owner = $4,
        lease_worker = nullif($12::text, ''),
        lease_expires_at = now() + make_interval(secs => $8), celery_task_id = $6,
        input_key = keyed.input_key, key_parts = keyed.parts, reused_from = NULL,
        started_at = now(), finished_at = NULL, error = NULL, progress = NULL,
        updated_at = now()
    FROM takeable, keyed
    WHERE s.id = takeable.id
      AND NOT EXISTS (SELECT 1 FROM hit) AND NOT EXISTS (SELECT 1 FROM elsewhere)
      AND ($16 = '' OR EXISTS (SELECT 1 FROM slot))
    RETURNING s.id, s.attempts
), started AS (
    UPDATE workflow_runs r
    SET status = '{RunStatus.RUNNING}', started_at = coalesce(r.started_at, now()),
        updated_at = now()
    WHERE r.id = $1 AND r.status || '' IN {sql_in(RUN_DISPATCHING)}
      AND (EXISTS (SELECT 1 FROM claimed) OR EXISTS (SELECT 1 FROM reused))
), finished AS (
    -- a reused result may be the run's last step, as a completion may
    UPDATE workflow_runs r
    SET status = '{RunStatus.SUCCEEDED}', finished_at = now(), updated_at = now(), error = NULL
    WHERE r.id = $1 AND r.status || '' = '{RunStatus.RUNNING}' AND EXISTS (SELECT 1 FROM reused)
      AND NOT EXISTS (SELECT 1 FROM step_runs s, cur
                      WHERE s.run_id = $1 AND s.id <> cur.id AND s.{OPEN_STEP})
    RETURNING r.id
), lost AS (
    UPDATE step_attempts a SET status = '{_A.LOST}', finished_at = now(),
        duration_ms = extract(epoch FROM now() - a.started_at) * 1000,
        error_type = '{LOST_ERROR_TYPE}', error_message = '{LOST_MESSAGE}'
    FROM claimed
    WHERE a.step_run_id = claimed.id AND a.status = '{_A.RUNNING}'
      AND a.attempt < claimed.attempts
), att AS (
    INSERT INTO step_attempts (step_run_id, run_id, step_key, step, attempt, status,
                               celery_task_id, worker_hostname, queue, started_at, input_key,
                               enqueued_at)
    SELECT claimed.id, $1::uuid, $2::text, cur.step, claimed.attempts, '{_A.RUNNING}',
           $6::text, $5::text, $7::text, now(), keyed.input_key,
           now() - $17::float8 * interval '1 second'
    FROM claimed, cur, keyed
)
SELECT cur.id, cur.status, cur.run_status, cur.generation, cur.ready, cur.max_attempts,
       cur.attempts,
       cur.lease_owner, (SELECT attempts FROM claimed) AS claimed_attempt,
       EXISTS (SELECT 1 FROM reused) AS reused,
       EXISTS (SELECT 1 FROM takeable) AND EXISTS (SELECT 1 FROM elsewhere)
           AND NOT EXISTS (SELECT 1 FROM reused) AS awaiting,
       EXISTS (SELECT 1 FROM finished) AS run_finished,
       $16 <> '' AND EXISTS (SELECT 1 FROM takeable) AND NOT EXISTS (SELECT 1 FROM hit)
           AND NOT EXISTS (SELECT 1 FROM elsewhere) AND NOT EXISTS (SELECT 1 FROM slot)
           AS no_slot,
       (SELECT slot FROM slot) AS slot, cur.priority, cur.tenant,
       (SELECT jsonb_build_object('run_id', run_id, 'key', step_key, 'step_key', step_key,
                                  'attempt', attempt) FROM hit) AS reused_from,
       keyed.input_key, keyed.parts AS key_parts,
       cur.previous_parts,  -- what a miss is compared with: the step's last key
       cur.workflow,
       -- params only to a step that reads them: a large blob is not copied to every step
       CASE WHEN EXISTS (SELECT 1 FROM claimed) AND $14 THEN cur.params END AS params,
       cur.item,
       CASE WHEN EXISTS (SELECT 1 FROM claimed) THEN (
           SELECT coalesce(jsonb_agg(jsonb_build_array(i.step, i.item_index, i.output)
                                     ORDER BY i.step, i.item_index), '[]'::jsonb)
           FROM (
               -- single steps by key (one index scan on (run_id, key)) ...
               SELECT u.step, u.item_index, u.output
               FROM step_runs u WHERE u.run_id = $1 AND u.key = ANY($3::text[])
               UNION ALL
               -- ... and every live item of a mapped step, scanned only when one is read
               SELECT u.step, u.item_index, u.output FROM step_runs u
               WHERE cardinality($10::text[]) > 0 AND u.run_id = $1
                 AND u.step = ANY($10::text[]) AND u.item_index IS NOT NULL
                 AND u.status <> '{_S.SUPERSEDED}'
           ) i
       ) END AS inputs
FROM cur, keyed
"""

#: Taken (until the claim's transaction ends) before a claim that may reuse: executions
#: of one step with the same params and item, whose input keys may be equal, claim one at
#: a time. $1 run, $2 key.
KEY_LOCK = """
SELECT pg_advisory_xact_lock(hashtextextended(concat_ws('/', 'reelflow.key', r.workflow,
           s.step, coalesce(s.item_digest, ''), coalesce(r.param_digests ->> s.step, '')), 0))
FROM step_runs s JOIN workflow_runs r ON r.id = s.run_id
WHERE s.run_id = $1 AND s.key = $2
"""
