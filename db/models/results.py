"""What results depend on and who uses them: the result cache by input key, which runs
use which stored files, and the audited revisions of runs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base


class StepResult(Base):
    """The result cache: per workflow, step and input key, the output of the execution that
    produced it, which a run reuses instead of running. (An execution of the same key in
    progress is found by its running step row: `ix_step_runs_running_key`.)"""

    __tablename__ = "step_results"
    __table_args__ = (
        CheckConstraint("state IN ('computing', 'succeeded')", name="state"),
        # "the step's latest result": what a first execution's miss is compared with
        Index("ix_step_results_latest", "workflow", "step", "updated_at"),
    )

    workflow: Mapped[str] = mapped_column(String(100), primary_key=True)
    step: Mapped[str] = mapped_column(String(100), primary_key=True)
    input_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    #: The execution that produced it (or computes it now).
    run_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    step_key: Mapped[str] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    output_digest: Mapped[str | None] = mapped_column(String(64))
    #: Artifact-store keys its output references.
    artifacts: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    key_parts: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ArtifactRef(Base):
    """Which runs use which stored files: a run that reuses another's result refers to its
    files instead of copying them, so prune deletes a file only once no run refers to it."""

    __tablename__ = "artifact_refs"
    __table_args__ = (Index("ix_artifact_refs_run", "run_id"),)

    artifact_key: Mapped[str] = mapped_column(String(500), primary_key=True)
    run_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workflow_runs.id", ondelete="CASCADE"), primary_key=True
    )


class RunRevision(Base):
    """A change an operator made to a run (its params, or the output of a step), audited
    and immutable: who, when, why, the change, and what it was before and after."""

    __tablename__ = "run_revisions"
    __table_args__ = (UniqueConstraint("run_id", "number"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workflow_runs.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    params_patch: Mapped[dict[str, Any]] = mapped_column(JSONB)
    params_before: Mapped[dict[str, Any]] = mapped_column(JSONB)
    params_after: Mapped[dict[str, Any]] = mapped_column(JSONB)
    outputs_before: Mapped[dict[str, Any]] = mapped_column(JSONB)
    outputs_after: Mapped[dict[str, Any]] = mapped_column(JSONB)
    #: What it dispatched: {"rerun": {key: reason}, "reuse": [keys]}.
    plan: Mapped[dict[str, Any]] = mapped_column(JSONB)
