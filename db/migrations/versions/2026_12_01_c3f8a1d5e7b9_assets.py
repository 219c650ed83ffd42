"""user uploads (assets: one row per content, keyed by sha256) and which runs use them
(asset_refs), so prune keeps an asset a kept run names.

Revision ID: c3f8a1d5e7b9
Revises: b7d1e3f5a9c2
Create Date: 2026-12-01 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'c3f8a1d5e7b9'
down_revision: str | None = 'b7d1e3f5a9c2'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'assets',
        sa.Column('id', sa.UUID(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('media_type', sa.String(length=100), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('key', sa.String(length=500), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        sa.CheckConstraint("kind IN ('image', 'audio')", name=op.f('ck_assets_kind')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_assets')),
        sa.UniqueConstraint('sha256', name=op.f('uq_assets_sha256')),
    )
    op.create_index('ix_assets_created_at', 'assets', ['created_at'], unique=False)
    op.create_table(
        'asset_refs',
        sa.Column('asset_id', sa.UUID(), nullable=False),
        sa.Column('run_id', sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(['asset_id'], ['assets.id'],
                                name=op.f('fk_asset_refs_asset_id_assets'), ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['run_id'], ['workflow_runs.id'],
                                name=op.f('fk_asset_refs_run_id_workflow_runs'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('asset_id', 'run_id', name=op.f('pk_asset_refs')),
    )
    op.create_index('ix_asset_refs_run', 'asset_refs', ['run_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_asset_refs_run', table_name='asset_refs')
    op.drop_table('asset_refs')
    op.drop_index('ix_assets_created_at', table_name='assets')
    op.drop_table('assets')
