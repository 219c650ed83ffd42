"""slot pools in PostgreSQL (pool_slots, held as leases; slot_waits: steps held back for a
slot, with what to publish when granted; pool_tenants: the round-robin's memory), a run's
priority and tenant, a step's pool and progress, and checkpoints of long steps.

Revision ID: b7d1e3f5a9c2
Revises: a9c3e5f7b2d4
Create Date: 2026-11-30 18:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'b7d1e3f5a9c2'
down_revision: str | None = 'a9c3e5f7b2d4'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSONB = postgresql.JSONB(astext_type=sa.Text())
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column('workflow_runs', sa.Column('priority', sa.Integer(),
                  server_default=sa.text('5'), nullable=False))
    op.add_column('workflow_runs', sa.Column('tenant', sa.String(length=100),
                  server_default='default', nullable=False))
    op.add_column('step_runs', sa.Column('progress', JSONB, nullable=True))
    op.create_table(
        'pool_slots',
        sa.Column('pool', sa.String(length=64), nullable=False),
        sa.Column('slot', sa.Integer(), nullable=False),
        sa.Column('holder_step_id', sa.BigInteger(), nullable=True),
        sa.Column('holder_attempt', sa.Integer(), nullable=True),
        sa.Column('holder_run_id', sa.UUID(), nullable=True),
        sa.Column('holder_key', sa.String(length=200), nullable=True),
        sa.Column('holder_worker', sa.String(length=200), nullable=True),
        sa.Column('tenant', sa.String(length=100), nullable=True),
        sa.Column('since', TS, nullable=True),
        sa.Column('lease_expires_at', TS, nullable=True),
        sa.Column('reserved_for', sa.BigInteger(), nullable=True),
        sa.Column('reserved_until', TS, nullable=True),
        sa.PrimaryKeyConstraint('pool', 'slot', name=op.f('pk_pool_slots')),
    )
    op.create_table(
        'slot_waits',
        sa.Column('step_id', sa.BigInteger(), nullable=False),
        sa.Column('run_id', sa.UUID(), nullable=False),
        sa.Column('step_key', sa.String(length=200), nullable=False),
        sa.Column('pool', sa.String(length=64), nullable=False),
        sa.Column('tenant', sa.String(length=100), nullable=False),
        sa.Column('priority', sa.Integer(), nullable=False),
        sa.Column('generation', sa.Integer(), nullable=False),
        sa.Column('enqueued_at', TS, server_default=sa.text('now()'), nullable=False),
        sa.Column('signature', JSONB, nullable=False),
        sa.Column('granted_slot', sa.Integer(), nullable=True),
        sa.Column('granted_at', TS, nullable=True),
        sa.Column('sent_at', TS, nullable=True),
        sa.ForeignKeyConstraint(['step_id'], ['step_runs.id'],
                                name=op.f('fk_slot_waits_step_id_step_runs'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('step_id', name=op.f('pk_slot_waits')),
    )
    op.create_index('ix_slot_waits_pool', 'slot_waits', ['pool', 'priority', 'enqueued_at'],
                    unique=False)
    op.create_table(
        'pool_tenants',
        sa.Column('pool', sa.String(length=64), nullable=False),
        sa.Column('tenant', sa.String(length=100), nullable=False),
        sa.Column('last_granted', TS, nullable=False),
        sa.PrimaryKeyConstraint('pool', 'tenant', name=op.f('pk_pool_tenants')),
    )
    op.create_table(
        'step_checkpoints',
        sa.Column('step_id', sa.BigInteger(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('piece', sa.Integer(), nullable=False),
        sa.Column('input_key', sa.String(length=64), nullable=False),
        sa.Column('attempt', sa.Integer(), nullable=False),
        sa.Column('artifact', JSONB, nullable=False),
        sa.Column('created_at', TS, server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(['step_id'], ['step_runs.id'],
                                name=op.f('fk_step_checkpoints_step_id_step_runs'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('step_id', 'name', 'piece', name=op.f('pk_step_checkpoints')),
    )


def downgrade() -> None:
    op.drop_table('step_checkpoints')
    op.drop_table('pool_tenants')
    op.drop_index('ix_slot_waits_pool', table_name='slot_waits')
    op.drop_table('slot_waits')
    op.drop_table('pool_slots')
    op.drop_column('step_runs', 'progress')
    op.drop_column('workflow_runs', 'tenant')
    op.drop_column('workflow_runs', 'priority')
