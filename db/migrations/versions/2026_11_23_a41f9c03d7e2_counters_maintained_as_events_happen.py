"""metrics maintained as events happen: attempt outcomes and durations, finished runs,
counted by triggers into engine_counters (backfilled once here), and an index for steps
in flight, so a scrape costs the same at a thousand attempts and at a million.

Revision ID: a41f9c03d7e2
Revises: 8e3d41c7b2a9
Create Date: 2026-11-23 12:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'a41f9c03d7e2'
down_revision: str | None = '8e3d41c7b2a9'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUCKETS = "ARRAY[10, 50, 100, 500, 1000, 5000, 10000, 30000, 60000, 300000, 900000]"

COUNT_ATTEMPT = f"""
CREATE OR REPLACE FUNCTION reelflow_count_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE bucket text;
BEGIN
    INSERT INTO engine_counters (name, label, value)
    VALUES ('attempts', NEW.step || '|' || NEW.status, 1)
    ON CONFLICT (name, label) DO UPDATE SET value = engine_counters.value + 1;
    IF NEW.duration_ms IS NOT NULL THEN
        bucket := coalesce((SELECT b::text FROM unnest({BUCKETS}) b
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

COUNT_RUN = """
CREATE OR REPLACE FUNCTION reelflow_count_run() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO engine_counters (name, label, value) VALUES ('runs_finished', NEW.status, 1)
    ON CONFLICT (name, label) DO UPDATE SET value = engine_counters.value + 1;
    RETURN NULL;
END $$;
"""

BACKFILL = f"""
INSERT INTO engine_counters (name, label, value)
SELECT 'attempts', step || '|' || status, count(*) FROM step_attempts
WHERE status <> 'running' GROUP BY 1, 2
UNION ALL
SELECT 'duration_bucket', step || '|' || coalesce((SELECT b::text FROM unnest({BUCKETS}) b
       WHERE b >= duration_ms ORDER BY b LIMIT 1), '+Inf'), count(*)
FROM step_attempts WHERE duration_ms IS NOT NULL AND status <> 'running' GROUP BY 1, 2
UNION ALL
SELECT 'duration_ms_sum', step, round(sum(duration_ms))::bigint FROM step_attempts
WHERE duration_ms IS NOT NULL AND status <> 'running' GROUP BY 1, 2
UNION ALL
SELECT 'runs_finished', status, count(*) FROM workflow_runs
WHERE status IN ('succeeded', 'failed', 'cancelled') GROUP BY 1, 2
ON CONFLICT (name, label) DO UPDATE SET value = engine_counters.value + EXCLUDED.value
"""


def upgrade() -> None:
    op.execute(COUNT_ATTEMPT)
    op.execute(COUNT_RUN)
    op.execute(
        "CREATE TRIGGER reelflow_count_attempt AFTER UPDATE OF status ON step_attempts"
        " FOR EACH ROW WHEN (OLD.status = 'running' AND NEW.status <> 'running')"
        " EXECUTE FUNCTION reelflow_count_attempt()"
    )
    op.execute(
        "CREATE TRIGGER reelflow_count_run AFTER UPDATE OF status ON workflow_runs"
        " FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status"
        " AND NEW.status IN ('succeeded', 'failed', 'cancelled'))"
        " EXECUTE FUNCTION reelflow_count_run()"
    )
    op.execute(BACKFILL)
    op.create_index('ix_step_runs_in_flight', 'step_runs', ['status'], unique=False, postgresql_where=sa.text("status IN ('queued', 'running', 'retrying')"))


def downgrade() -> None:
    op.drop_index('ix_step_runs_in_flight', table_name='step_runs', postgresql_where=sa.text("status IN ('queued', 'running', 'retrying')"))
    op.execute("DROP TRIGGER IF EXISTS reelflow_count_run ON workflow_runs")
    op.execute("DROP TRIGGER IF EXISTS reelflow_count_attempt ON step_attempts")
    op.execute("DROP FUNCTION IF EXISTS reelflow_count_run()")
    op.execute("DROP FUNCTION IF EXISTS reelflow_count_attempt()")
    op.execute("DELETE FROM engine_counters WHERE name IN ('attempts', 'duration_bucket', 'duration_ms_sum', 'runs_finished')")
