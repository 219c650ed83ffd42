"""time waited in the queue recorded, and metrics labelled by workflow, step and queue:
`step_attempts.enqueued_at` (when the message that started the attempt became
deliverable; NULL for attempts from before), a queue-wait histogram counted as each attempt
starts, and the engine counters of attempts, durations, reuses and finished runs keyed by
workflow (and step and queue) under new names. The new counters are counted again from
the history the database holds (a pruned run's attempts are no longer in them: Prometheus
reads the drop as a counter reset); downgrading folds them back into the old ones.

Revision ID: 6d9c3d7eb9de
Revises: c3f8a1d5e7b9
Create Date: 2026-12-01 14:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '6d9c3d7eb9de'
down_revision: str | None = 'c3f8a1d5e7b9'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Upper bounds (ms) of the duration and queue-wait buckets: `api.metrics.BUCKETS_MS`.
BUCKETS = "ARRAY[10, 50, 100, 500, 1000, 5000, 10000, 30000, 60000, 300000, 900000, 3600000]"
OLD_BUCKETS = "ARRAY[10, 50, 100, 500, 1000, 5000, 10000, 30000, 60000, 300000, 900000]"

#: An attempt's series: workflow|step|queue (the step's name: map items fold into it).
SERIES = (
    "coalesce((SELECT r.workflow FROM workflow_runs r WHERE r.id = NEW.run_id), '')"
    " || '|' || NEW.step || '|' || coalesce(NEW.queue, '')"
)

COUNT_ATTEMPT = f"""
CREATE OR REPLACE FUNCTION reelflow_count_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE series text := {SERIES};
BEGIN
    INSERT INTO engine_counters (name, label, value)
    VALUES ('step_attempts', series || '|' || NEW.status, 1)
    ON CONFLICT (name, label) DO UPDATE SET value = engine_counters.value + 1;
    IF NEW.duration_ms IS NOT NULL THEN
        INSERT INTO engine_counters (name, label, value)
        VALUES ('step_duration_bucket', series || '|' || coalesce((SELECT b::text
                FROM unnest({BUCKETS}) b WHERE b >= NEW.duration_ms ORDER BY b LIMIT 1), '+Inf'), 1),
               ('step_duration_ms_sum', series, round(NEW.duration_ms)::bigint)
        ON CONFLICT (name, label) DO UPDATE SET value = engine_counters.value + EXCLUDED.value;
    END IF;
    RETURN NULL;
END $$;
"""

#: Counted as the attempt starts (its row is inserted by the claim): microseconds summed.
COUNT_QUEUE_WAIT = f"""
CREATE OR REPLACE FUNCTION reelflow_count_queue_wait() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    series text := {SERIES};
    waited double precision := greatest(0, extract(epoch FROM NEW.started_at - NEW.enqueued_at));
BEGIN
    INSERT INTO engine_counters (name, label, value)
    VALUES ('queue_wait_bucket', series || '|' || coalesce((SELECT b::text
            FROM unnest({BUCKETS}) b WHERE b >= waited * 1000 ORDER BY b LIMIT 1), '+Inf'), 1),
           ('queue_wait_us_sum', series, round(waited * 1000000)::bigint)
    ON CONFLICT (name, label) DO UPDATE SET value = engine_counters.value + EXCLUDED.value;
    RETURN NULL;
END $$;
"""

COUNT_RUN = """
CREATE OR REPLACE FUNCTION reelflow_count_run() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO engine_counters (name, label, value)
    VALUES ('workflow_runs_finished', NEW.workflow || '|' || NEW.status, 1)
    ON CONFLICT (name, label) DO UPDATE SET value = engine_counters.value + 1;
    RETURN NULL;
END $$;
"""

COUNT_REUSE = """
CREATE OR REPLACE FUNCTION reelflow_count_reuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO engine_counters (name, label, value)
    SELECT 'step_reused', r.workflow || '|' || NEW.step || '|' || NEW.queue, 1
    FROM workflow_runs r WHERE r.id = NEW.run_id
    ON CONFLICT (name, label) DO UPDATE SET value = engine_counters.value + 1;
    RETURN NULL;
END $$;
"""

_ENDED = "a.status <> 'running'"
BACKFILL = f"""
INSERT INTO engine_counters (name, label, value)
SELECT 'step_attempts', r.workflow || '|' || a.step || '|' || coalesce(a.queue, '') || '|'
       || a.status, count(*)
FROM step_attempts a JOIN workflow_runs r ON r.id = a.run_id WHERE {_ENDED} GROUP BY 2
UNION ALL
SELECT 'step_duration_bucket', r.workflow || '|' || a.step || '|' || coalesce(a.queue, '') || '|'
       || coalesce((SELECT b::text FROM unnest({BUCKETS}) b WHERE b >= a.duration_ms
                    ORDER BY b LIMIT 1), '+Inf'), count(*)
FROM step_attempts a JOIN workflow_runs r ON r.id = a.run_id
WHERE {_ENDED} AND a.duration_ms IS NOT NULL GROUP BY 2
UNION ALL
SELECT 'step_duration_ms_sum', r.workflow || '|' || a.step || '|' || coalesce(a.queue, ''),
       round(sum(a.duration_ms))::bigint
FROM step_attempts a JOIN workflow_runs r ON r.id = a.run_id
WHERE {_ENDED} AND a.duration_ms IS NOT NULL GROUP BY 2
UNION ALL
SELECT 'workflow_runs_finished', workflow || '|' || status, count(*) FROM workflow_runs
WHERE status IN ('succeeded', 'failed', 'cancelled') GROUP BY 2
UNION ALL
-- reuses left no history of their own: the old counts, each step given its queue
SELECT 'step_reused', c.label || '|' || coalesce((SELECT s.queue FROM step_runs s
       WHERE s.step = split_part(c.label, '|', 2) LIMIT 1), 'default'), c.value
FROM engine_counters c WHERE c.name = 'cache_reused'
"""
OLD_NAMES = "('attempts', 'duration_bucket', 'duration_ms_sum', 'runs_finished', 'cache_reused')"
NEW_NAMES = ("('step_attempts', 'step_duration_bucket', 'step_duration_ms_sum',"
             " 'workflow_runs_finished', 'step_reused', 'queue_wait_bucket', 'queue_wait_us_sum')")

#: The old counters, folded from the new ones (workflow and queue summed over).
FOLD = f"""
INSERT INTO engine_counters (name, label, value)
SELECT 'attempts', split_part(label, '|', 2) || '|' || split_part(label, '|', 4), sum(value)
FROM engine_counters WHERE name = 'step_attempts' GROUP BY 2
UNION ALL
SELECT 'duration_bucket', split_part(label, '|', 2) || '|' || CASE
       WHEN split_part(label, '|', 4) = ANY ({OLD_BUCKETS}::text[]) THEN split_part(label, '|', 4)
       ELSE '+Inf' END, sum(value)
FROM engine_counters WHERE name = 'step_duration_bucket' GROUP BY 2
UNION ALL
SELECT 'duration_ms_sum', split_part(label, '|', 2), sum(value)
FROM engine_counters WHERE name = 'step_duration_ms_sum' GROUP BY 2
UNION ALL
SELECT 'runs_finished', split_part(label, '|', 2), sum(value)
FROM engine_counters WHERE name = 'workflow_runs_finished' GROUP BY 2
UNION ALL
SELECT 'cache_reused', split_part(label, '|', 1) || '|' || split_part(label, '|', 2), sum(value)
FROM engine_counters WHERE name = 'step_reused' GROUP BY 2
"""

OLD_COUNT_ATTEMPT = f"""
CREATE OR REPLACE FUNCTION reelflow_count_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE bucket text;
BEGIN
    INSERT INTO engine_counters (name, label, value)
    VALUES ('attempts', NEW.step || '|' || NEW.status, 1)
    ON CONFLICT (name, label) DO UPDATE SET value = engine_counters.value + 1;
    IF NEW.duration_ms IS NOT NULL THEN
        bucket := coalesce((SELECT b::text FROM unnest({OLD_BUCKETS}) b
                            WHERE b >= NEW.duration_ms ORDER BY b LIMIT 1), '+Inf');
        INSERT INTO engine_counters (name, label, value)
        VALUES ('duration_bucket', NEW.step || '|' || bucket, 1),
               ('duration_ms_sum', NEW.step, round(NEW.duration_ms)::bigint)
        ON CONFLICT (name, label) DO UPDATE
        SET value = engine_counters.value + EXCLUDED.value;
    END IF;
    RETURN NULL;
END $$;
"""

OLD_COUNT_RUN = """
CREATE OR REPLACE FUNCTION reelflow_count_run() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO engine_counters (name, label, value) VALUES ('runs_finished', NEW.status, 1)
    ON CONFLICT (name, label) DO UPDATE SET value = engine_counters.value + 1;
    RETURN NULL;
END $$;
"""

OLD_COUNT_REUSE = """
CREATE OR REPLACE FUNCTION reelflow_count_reuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO engine_counters (name, label, value)
    SELECT 'cache_reused', r.workflow || '|' || NEW.step, 1 FROM workflow_runs r
    WHERE r.id = NEW.run_id
    ON CONFLICT (name, label) DO UPDATE SET value = engine_counters.value + 1;
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.add_column('step_attempts',
                  sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=True))
    for function in (COUNT_ATTEMPT, COUNT_QUEUE_WAIT, COUNT_RUN, COUNT_REUSE):
        op.execute(function)
    op.execute(
        "CREATE TRIGGER reelflow_count_queue_wait AFTER INSERT ON step_attempts"
        " FOR EACH ROW WHEN (NEW.enqueued_at IS NOT NULL)"
        " EXECUTE FUNCTION reelflow_count_queue_wait()"
    )
    op.execute(BACKFILL)
    op.execute(f"DELETE FROM engine_counters WHERE name IN {OLD_NAMES}")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS reelflow_count_queue_wait ON step_attempts")
    op.execute("DROP FUNCTION IF EXISTS reelflow_count_queue_wait()")
    for function in (OLD_COUNT_ATTEMPT, OLD_COUNT_RUN, OLD_COUNT_REUSE):
        op.execute(function)
    op.execute(FOLD)
    op.execute(f"DELETE FROM engine_counters WHERE name IN {NEW_NAMES}")
    op.drop_column('step_attempts', 'enqueued_at')
