"""fault injection (a testing aid) gets storage of its own, off the claim path: the runs
table's `faults` column moves to `injected_faults` (run, step key, failures).

Revision ID: f41b8d2c6e07
Revises: e2a7c4d9b1f3
Create Date: 2026-11-30 12:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'f41b8d2c6e07'
down_revision: str | None = 'e2a7c4d9b1f3'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'injected_faults',
        sa.Column('run_id', sa.UUID(), nullable=False),
        sa.Column('step_key', sa.String(length=200), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['workflow_runs.id'],
                                name=op.f('fk_injected_faults_run_id_workflow_runs'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('run_id', 'step_key', name=op.f('pk_injected_faults')),
    )
    op.execute(
        "INSERT INTO injected_faults (run_id, step_key, failures)"
        " SELECT r.id, f.key, f.value::int FROM workflow_runs r, jsonb_each_text(r.faults) f"
        " WHERE r.faults IS NOT NULL"
    )
    op.drop_column('workflow_runs', 'faults')


def downgrade() -> None:
    op.add_column('workflow_runs', sa.Column('faults', postgresql.JSONB(astext_type=sa.Text()),
                                             nullable=True))
    op.execute(
        "UPDATE workflow_runs r SET faults = f.plan FROM (SELECT run_id,"
        " jsonb_object_agg(step_key, failures) AS plan FROM injected_faults GROUP BY run_id) f"
        " WHERE f.run_id = r.id"
    )
    op.drop_table('injected_faults')
