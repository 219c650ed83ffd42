"""dispatch intents remember the trace they were written in (W3C trace context), so a run
published later by a background relay still continues the request's trace.

Revision ID: c7e19a2f5d30
Revises: a41f9c03d7e2
Create Date: 2026-11-23 13:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'c7e19a2f5d30'
down_revision: str | None = 'a41f9c03d7e2'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('dispatch_intents', sa.Column('trace', postgresql.JSONB(astext_type=sa.Text()), nullable=True))


def downgrade() -> None:
    op.drop_column('dispatch_intents', 'trace')
