"""history: a step column on attempts (backfilled) and indexes for the queries operators
write: failed attempts by time, attempts of one step by time.

Revision ID: 8e3d41c7b2a9
Revises: 5b0c2e7a9f41
Create Date: 2026-11-23 12:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '8e3d41c7b2a9'
down_revision: str | None = '5b0c2e7a9f41'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('step_attempts', sa.Column('step', sa.String(length=100), nullable=True))
    op.execute(r"UPDATE step_attempts SET step = regexp_replace(step_key, '\[\d+\]$', '')")
    op.alter_column('step_attempts', 'step', nullable=False)
    op.create_index('ix_step_attempts_step_started', 'step_attempts', ['step', 'started_at'], unique=False)
    op.create_index('ix_step_attempts_failed_started', 'step_attempts', ['started_at'], unique=False, postgresql_where=sa.text("status = 'failed'"))
    op.create_index('ix_workflow_runs_finished', 'workflow_runs', ['finished_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_workflow_runs_finished', table_name='workflow_runs')
    op.drop_index('ix_step_attempts_failed_started', table_name='step_attempts', postgresql_where=sa.text("status = 'failed'"))
    op.drop_index('ix_step_attempts_step_started', table_name='step_attempts')
    op.drop_column('step_attempts', 'step')
