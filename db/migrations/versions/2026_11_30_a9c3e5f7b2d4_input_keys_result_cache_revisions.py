"""input keys and the result cache: every step execution is keyed by what it depends on
(step_runs.input_key and its parts, digests of items, outputs and the params each step
reads), succeeded results are kept per (workflow, step, key) in step_results (a run reuses
one instead of running), artifact_refs counts which runs use which stored files, and
run_revisions audits every change an operator makes to a run. Reuses and misses are
counted: reuses by a trigger into engine_counters, misses (executions of steps that may
reuse) from the attempt counters when metrics are read. A step may now move to succeeded from pending,
queued, retrying (a reused result), failed or cancelled (a replaced output).

Revision ID: a9c3e5f7b2d4
Revises: f41b8d2c6e07
Create Date: 2026-11-30 14:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'a9c3e5f7b2d4'
down_revision: str | None = 'f41b8d2c6e07'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONB = postgresql.JSONB(astext_type=sa.Text())

#: A reused result, or an output a revision replaced, moves a step to succeeded from
#: pending, queued, retrying, failed or cancelled.
STEP_GUARD = """
CREATE OR REPLACE FUNCTION reelflow_step_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (OLD.status || '>' || NEW.status) = ANY (ARRAY['cancelled>pending', 'cancelled>succeeded', 'cancelled>superseded', 'failed>pending', 'failed>succeeded', 'failed>superseded', 'pending>cancelled', 'pending>queued', 'pending>running', 'pending>succeeded', 'pending>superseded', 'queued>cancelled', 'queued>pending', 'queued>running', 'queued>succeeded', 'retrying>cancelled', 'retrying>pending', 'retrying>running', 'retrying>succeeded', 'running>cancelled', 'running>failed', 'running>pending', 'running>retrying', 'running>succeeded', 'succeeded>pending', 'succeeded>superseded', 'superseded>pending']) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'step_runs: % -> % is not a move of the state machine', OLD.status, NEW.status
        USING ERRCODE = 'check_violation';
END $$;

"""

OLD_STEP_GUARD = """
CREATE OR REPLACE FUNCTION reelflow_step_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (OLD.status || '>' || NEW.status) = ANY (ARRAY['cancelled>pending', 'cancelled>superseded', 'failed>pending', 'failed>superseded', 'pending>cancelled', 'pending>queued', 'pending>running', 'pending>superseded', 'queued>cancelled', 'queued>pending', 'queued>running', 'retrying>cancelled', 'retrying>pending', 'retrying>running', 'running>cancelled', 'running>failed', 'running>pending', 'running>retrying', 'running>succeeded', 'succeeded>pending', 'succeeded>superseded', 'superseded>pending']) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'step_runs: % -> % is not a move of the state machine', OLD.status, NEW.status
        USING ERRCODE = 'check_violation';
END $$;
"""

COUNT_REUSE = """
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
    op.add_column('workflow_runs', sa.Column('param_digests', JSONB,
                  server_default=sa.text("'{}'::jsonb"), nullable=False))
    op.add_column('workflow_runs', sa.Column('cache', sa.Boolean(),
                  server_default=sa.text('true'), nullable=False))
    op.add_column('step_runs', sa.Column('input_key', sa.String(length=64), nullable=True))
    op.add_column('step_runs', sa.Column('key_parts', JSONB, nullable=True))
    op.add_column('step_runs', sa.Column('item_digest', sa.String(length=64), nullable=True))
    op.add_column('step_runs', sa.Column('output_digest', sa.String(length=64), nullable=True))
    op.add_column('step_runs', sa.Column('reused_from', JSONB, nullable=True))
    op.add_column('step_runs', sa.Column('force_rerun', sa.Boolean(),
                  server_default=sa.text('false'), nullable=False))
    op.add_column('step_attempts', sa.Column('input_key', sa.String(length=64), nullable=True))
    op.create_table(
        'step_results',
        sa.Column('workflow', sa.String(length=100), nullable=False),
        sa.Column('step', sa.String(length=100), nullable=False),
        sa.Column('input_key', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('run_id', sa.UUID(), nullable=False),
        sa.Column('step_key', sa.String(length=200), nullable=False),
        sa.Column('attempt', sa.Integer(), nullable=False),
        sa.Column('output', JSONB, nullable=True),
        sa.Column('output_digest', sa.String(length=64), nullable=True),
        sa.Column('artifacts', JSONB, server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column('key_parts', JSONB, nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        sa.CheckConstraint("state IN ('computing', 'succeeded')",
                           name=op.f('ck_step_results_state')),
        sa.PrimaryKeyConstraint('workflow', 'step', 'input_key', name=op.f('pk_step_results')),
    )
    op.create_index('ix_step_results_latest', 'step_results', ['workflow', 'step', 'updated_at'],
                    unique=False)

    op.create_table(
        'artifact_refs',
        sa.Column('artifact_key', sa.String(length=500), nullable=False),
        sa.Column('run_id', sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['workflow_runs.id'],
                                name=op.f('fk_artifact_refs_run_id_workflow_runs'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('artifact_key', 'run_id', name=op.f('pk_artifact_refs')),
    )
    op.create_index('ix_artifact_refs_run', 'artifact_refs', ['run_id'], unique=False)
    op.create_table(
        'run_revisions',
        sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column('run_id', sa.UUID(), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('actor', sa.String(length=100), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        sa.Column('params_patch', JSONB, nullable=False),
        sa.Column('params_before', JSONB, nullable=False),
        sa.Column('params_after', JSONB, nullable=False),
        sa.Column('outputs_before', JSONB, nullable=False),
        sa.Column('outputs_after', JSONB, nullable=False),
        sa.Column('plan', JSONB, nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['workflow_runs.id'],
                                name=op.f('fk_run_revisions_run_id_workflow_runs'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_run_revisions')),
        sa.UniqueConstraint('run_id', 'number', name=op.f('uq_run_revisions_run_id_number')),
    )
    op.execute(STEP_GUARD)
    op.execute(COUNT_REUSE)
    op.execute(
        "CREATE TRIGGER reelflow_count_reuse AFTER UPDATE OF status ON step_runs"
        " FOR EACH ROW WHEN (NEW.status = 'succeeded' AND OLD.status <> 'succeeded'"
        " AND NEW.reused_from ? 'run_id') EXECUTE FUNCTION reelflow_count_reuse()"
    )
    op.create_index('ix_step_runs_running_key', 'step_runs', ['input_key'], unique=False,
                    postgresql_where=sa.text("status = 'running' AND input_key IS NOT NULL"))


def downgrade() -> None:
    op.execute(OLD_STEP_GUARD)
    op.drop_index('ix_step_runs_running_key', table_name='step_runs',
                  postgresql_where=sa.text("status = 'running' AND input_key IS NOT NULL"))
    op.execute("DROP TRIGGER IF EXISTS reelflow_count_reuse ON step_runs")
    op.execute("DROP FUNCTION IF EXISTS reelflow_count_reuse()")
    op.execute("DELETE FROM engine_counters WHERE name IN ('cache_reused', 'cache_missed')")
    op.drop_table('run_revisions')
    op.drop_index('ix_artifact_refs_run', table_name='artifact_refs')
    op.drop_table('artifact_refs')

    op.drop_index('ix_step_results_latest', table_name='step_results')
    op.drop_table('step_results')
    op.drop_column('step_attempts', 'input_key')
    for column in ('force_rerun', 'reused_from', 'output_digest', 'item_digest', 'key_parts',
                   'input_key'):
        op.drop_column('step_runs', column)
    op.drop_column('workflow_runs', 'cache')
    op.drop_column('workflow_runs', 'param_digests')
