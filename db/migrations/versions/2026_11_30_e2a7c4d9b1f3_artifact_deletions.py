"""prune deletes a run's rows and records its files for deletion in one transaction
(artifact_deletions), then deletes the files: a crash leaves no row pointing to a
missing file.

Revision ID: e2a7c4d9b1f3
Revises: c7e19a2f5d30
Create Date: 2026-11-30 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'e2a7c4d9b1f3'
down_revision: str | None = 'c7e19a2f5d30'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'artifact_deletions',
        sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column('prefix', sa.String(length=300), nullable=False),
        sa.Column('keep', postgresql.JSONB(astext_type=sa.Text()),
                  server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column('keys', postgresql.JSONB(astext_type=sa.Text()),
                  server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_artifact_deletions')),
    )


def downgrade() -> None:
    op.drop_table('artifact_deletions')
