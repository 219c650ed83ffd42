"""fenced generations, dispatch outbox, worker heartbeats, enforced state machine

Rename resume_count to generation (the reconciler bumps it too); add the request hash,
faults and expanded maps of a run; the lease's worker; the dispatch outbox; worker
heartbeats; engine counters; the `superseded` step status; and triggers that refuse any
status change the state machine of `db/states.py` does not declare (the function bodies
below are that table as of this revision; a test compares them with the module).

Revision ID: 5b0c2e7a9f41
Revises: d068f3b4d276
Create Date: 2026-11-23 11:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '5b0c2e7a9f41'
down_revision: str | None = 'd068f3b4d276'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUN_GUARD = """
CREATE OR REPLACE FUNCTION reelflow_run_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (OLD.status || '>' || NEW.status) = ANY (ARRAY['cancelled>pending', 'failed>cancelled', 'failed>pending', 'pending>cancelled', 'pending>failed', 'pending>running', 'running>cancelled', 'running>failed', 'running>pending', 'running>succeeded', 'succeeded>pending']) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'workflow_runs: % -> % is not a move of the state machine', OLD.status, NEW.status
        USING ERRCODE = 'check_violation';
END $$;
"""

STEP_GUARD = """
CREATE OR REPLACE FUNCTION reelflow_step_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (OLD.status || '>' || NEW.status) = ANY (ARRAY['cancelled>pending', 'cancelled>superseded', 'failed>pending', 'failed>superseded', 'pending>cancelled', 'pending>queued', 'pending>running', 'pending>superseded', 'queued>cancelled', 'queued>pending', 'queued>running', 'retrying>cancelled', 'retrying>pending', 'retrying>running', 'running>cancelled', 'running>failed', 'running>pending', 'running>retrying', 'running>succeeded', 'succeeded>pending', 'succeeded>superseded', 'superseded>pending']) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'step_runs: % -> % is not a move of the state machine', OLD.status, NEW.status
        USING ERRCODE = 'check_violation';
END $$;
"""

STEP_STATUSES = "('pending', 'queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled', 'superseded')"
OLD_STEP_STATUSES = "('pending', 'queued', 'running', 'retrying', 'succeeded', 'failed', 'cancelled')"


def upgrade() -> None:
    op.alter_column('workflow_runs', 'resume_count', new_column_name='generation')
    op.add_column('workflow_runs', sa.Column('request_hash', sa.String(length=64), nullable=True))
    op.add_column('workflow_runs', sa.Column('faults', postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column('workflow_runs', sa.Column('maps', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False))
    # Runs from before this revision: every map with item rows counts as expanded.
    op.execute("""
        UPDATE workflow_runs r SET maps = m.maps FROM (
            SELECT run_id, jsonb_object_agg(step, n) AS maps FROM (
                SELECT run_id, step, count(*) AS n FROM step_runs
                WHERE item_index IS NOT NULL GROUP BY run_id, step) x
            GROUP BY run_id) m
        WHERE m.run_id = r.id
    """)
    op.add_column('step_runs', sa.Column('lease_worker', sa.String(length=64), nullable=True))
    op.drop_constraint(op.f('ck_step_runs_status'), 'step_runs', type_='check')
    op.create_check_constraint(op.f('ck_step_runs_status'), 'step_runs', f"status IN {STEP_STATUSES}")
    op.drop_index('ix_step_runs_open', table_name='step_runs', postgresql_where=sa.text("status <> 'succeeded'"))
    op.create_index('ix_step_runs_open', 'step_runs', ['run_id'], unique=False, postgresql_where=sa.text("status NOT IN ('succeeded', 'superseded')"))
    op.create_table('dispatch_intents',
    sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.UUID(), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('canvas', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('reason', sa.String(length=50), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('available_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('discarded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('publish_attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['workflow_runs.id'], name=op.f('fk_dispatch_intents_run_id_workflow_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dispatch_intents')),
    sa.UniqueConstraint('run_id', 'generation', name=op.f('uq_dispatch_intents_run_id_generation'))
    )
    op.create_index('ix_dispatch_intents_due', 'dispatch_intents', ['available_at'], unique=False, postgresql_where=sa.text('sent_at IS NULL AND discarded_at IS NULL'))
    op.create_table('worker_heartbeats',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('hostname', sa.String(length=200), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('queues', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_worker_heartbeats'))
    )
    op.create_table('engine_counters',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=False),
    sa.Column('value', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.PrimaryKeyConstraint('name', 'label', name=op.f('pk_engine_counters'))
    )
    # Runs left pending by the old two-transaction dispatch get no intent here: the
    # reconciler writes one for any pending run that has none.
    op.execute(RUN_GUARD)
    op.execute(STEP_GUARD)
    for table, fn in (('workflow_runs', 'reelflow_run_transition'), ('step_runs', 'reelflow_step_transition')):
        op.execute(
            f"CREATE TRIGGER {fn} BEFORE UPDATE OF status ON {table} FOR EACH ROW "
            f"WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION {fn}()"
        )


def downgrade() -> None:
    for table, fn in (('workflow_runs', 'reelflow_run_transition'), ('step_runs', 'reelflow_step_transition')):
        op.execute(f"DROP TRIGGER IF EXISTS {fn} ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {fn}()")
    op.drop_table('engine_counters')
    op.drop_table('worker_heartbeats')
    op.drop_index('ix_dispatch_intents_due', table_name='dispatch_intents', postgresql_where=sa.text('sent_at IS NULL AND discarded_at IS NULL'))
    op.drop_table('dispatch_intents')
    op.drop_index('ix_step_runs_open', table_name='step_runs', postgresql_where=sa.text("status NOT IN ('succeeded', 'superseded')"))
    op.create_index('ix_step_runs_open', 'step_runs', ['run_id'], unique=False, postgresql_where=sa.text("status <> 'succeeded'"))
    op.execute("UPDATE step_runs SET status = 'cancelled' WHERE status = 'superseded'")
    op.drop_constraint(op.f('ck_step_runs_status'), 'step_runs', type_='check')
    op.create_check_constraint(op.f('ck_step_runs_status'), 'step_runs', f"status IN {OLD_STEP_STATUSES}")
    op.drop_column('step_runs', 'lease_worker')
    op.drop_column('workflow_runs', 'maps')
    op.drop_column('workflow_runs', 'faults')
    op.drop_column('workflow_runs', 'request_hash')
    op.alter_column('workflow_runs', 'generation', new_column_name='resume_count')
