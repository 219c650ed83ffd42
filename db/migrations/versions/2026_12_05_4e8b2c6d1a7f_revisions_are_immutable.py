"""run revisions are immutable: no UPDATE, and no DELETE but the cascade of their run's
deletion (prune), enforced by the database, not by convention.

Revision ID: 4e8b2c6d1a7f
Revises: 6d9c3d7eb9de
Create Date: 2026-12-05 09:10:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '4e8b2c6d1a7f'
down_revision: str | None = '6d9c3d7eb9de'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUARD = """
CREATE OR REPLACE FUNCTION reelflow_revision_immutable() RETURNS trigger AS $$
BEGIN
    -- a run's deletion (prune) cascades to its revisions: the run is gone by then
    IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM workflow_runs WHERE id = OLD.run_id) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'run_revisions: revision % of run % is immutable (% refused)',
        OLD.number, OLD.run_id, TG_OP USING ERRCODE = 'check_violation';
END
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.execute(GUARD)
    op.execute(
        "CREATE TRIGGER reelflow_revision_immutable BEFORE UPDATE OR DELETE ON run_revisions"
        " FOR EACH ROW EXECUTE FUNCTION reelflow_revision_immutable()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS reelflow_revision_immutable ON run_revisions")
    op.execute("DROP FUNCTION IF EXISTS reelflow_revision_immutable()")
