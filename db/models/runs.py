"""The run, its steps and their attempts, and its events: the state of every run."""

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
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.base import Base
from db.states import STEP_IN_FLIGHT, AttemptStatus, RunStatus, StepStatus, sql_in

#: Steps not finished for good: the partial index every completion asks "anything left?".
OPEN_STEP = f"status NOT IN {sql_in({StepStatus.SUCCEEDED, StepStatus.SUPERSEDED})}"


def _check(column: str, enum: type[RunStatus] | type[StepStatus] | type[AttemptStatus]) -> str:
    return f"{column} IN ({', '.join(repr(s.value) for s in enum)})"


class WorkflowRun(Base):
    __tablename__ = "workflow_runs"
    __table_args__ = (
        CheckConstraint(_check("status", RunStatus), name="status"),
        Index("ix_workflow_runs_status_created", "status", "created_at"),
        Index("ix_workflow_runs_created_id", "created_at", "id"),
        Index("ix_workflow_runs_finished", "finished_at"),  # pruning old runs
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    workflow: Mapped[str] = mapped_column(String(100))
    workflow_version: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), server_default=RunStatus.PENDING.value)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    #: Bumped by every dispatch (start, resume, retry, reconciler requeue); a message runs
    #: only in the generation it was sent under.
    generation: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    #: sha256 of the request that created the run, so a reused Idempotency-Key is detected.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    #: Maps expanded for the current output of their source: mapped step -> width.
    maps: Mapped[dict[str, int]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    #: Per step, the digest of the params fields it reads (a part of its input key).
    param_digests: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    #: False: the run asked for fresh results (no step reuses one).
    cache: Mapped[bool] = mapped_column(server_default=text("true"))
    #: Who the run is for, and how urgent (0-9): a pool's free slot goes to the highest
    #: priority first, then round-robin across tenants, then the oldest.
    priority: Mapped[int] = mapped_column(Integer, server_default=text("5"))
    tenant: Mapped[str] = mapped_column(String(100), server_default="default")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    steps: Mapped[list[StepRun]] = relationship(back_populates="run", lazy="raise")


class StepRun(Base):
    __tablename__ = "step_runs"
    __table_args__ = (
        UniqueConstraint("run_id", "key"),
        CheckConstraint(_check("status", StepStatus), name="status"),
        CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
        CheckConstraint("max_attempts >= 1", name="max_attempts_positive"),
        # "stuck running steps": the reconciler's scan for expired leases.
        Index(
            "ix_step_runs_lease_running",
            "lease_expires_at",
            postgresql_where=text("status = 'running'"),
        ),
        # "is anything of this run left?", asked by every step's completion.
        Index("ix_step_runs_open", "run_id", postgresql_where=text(OPEN_STEP)),
        # "is this key being computed right now?": a second execution waits for the first
        Index(
            "ix_step_runs_running_key",
            "input_key",
            postgresql_where=text("status = 'running' AND input_key IS NOT NULL"),
        ),
        # "steps in flight by status", for metrics: bounded by the work in flight.
        Index(
            "ix_step_runs_in_flight",
            "status",
            postgresql_where=text(f"status IN {sql_in(STEP_IN_FLIGHT)}"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workflow_runs.id", ondelete="CASCADE")
    )
    key: Mapped[str] = mapped_column(String(200))
    step: Mapped[str] = mapped_column(String(100))
    item_index: Mapped[int | None] = mapped_column(Integer)
    item: Mapped[Any | None] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), server_default=StepStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer, server_default=text("3"))
    queue: Mapped[str] = mapped_column(String(50), server_default="default")
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    celery_task_id: Mapped[str | None] = mapped_column(String(64))
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The worker (its heartbeat row) whose process holds the lease.
    lease_worker: Mapped[str | None] = mapped_column(String(64))
    #: The key of the result it holds (or of its running attempt), its parts, and digests.
    input_key: Mapped[str | None] = mapped_column(String(64))
    key_parts: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    item_digest: Mapped[str | None] = mapped_column(String(64))
    output_digest: Mapped[str | None] = mapped_column(String(64))
    #: Where its output came from when it did not run: {run_id, key, attempt} of the
    #: execution that produced it, or {revision: n} for an output an operator replaced.
    reused_from: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    #: Rerun it even if a result with its key exists (a retry was asked for).
    force_rerun: Mapped[bool] = mapped_column(server_default=text("false"))
    #: How far its running attempt got ({"done": n, "total": m}), as the step reports it.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    run: Mapped[WorkflowRun] = relationship(back_populates="steps", lazy="raise")


class StepAttempt(Base):
    __tablename__ = "step_attempts"
    __table_args__ = (
        UniqueConstraint("step_run_id", "attempt"),
        CheckConstraint(_check("status", AttemptStatus), name="status"),
        Index("ix_step_attempts_run", "run_id"),
        # "attempts of one step, by time" (slowest steps, a step's failures)
        Index("ix_step_attempts_step_started", "step", "started_at"),
        # "failed attempts in the last hour"
        Index(
            "ix_step_attempts_failed_started",
            "started_at",
            postgresql_where=text("status = 'failed'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    step_run_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("step_runs.id", ondelete="CASCADE")
    )
    # Denormalised for "history of a run" queries; integrity comes through step_run_id
    # (a second foreign key here would cost every claim another trigger and row lock).
    run_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    step_key: Mapped[str] = mapped_column(String(200))
    step: Mapped[str] = mapped_column(String(100))
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    celery_task_id: Mapped[str | None] = mapped_column(String(64))
    worker_hostname: Mapped[str | None] = mapped_column(String(200))
    queue: Mapped[str | None] = mapped_column(String(50))
    #: When the message that started it became deliverable (sent, or its countdown over):
    #: `started_at - enqueued_at` is the time it waited in the queue. None: not known.
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[float | None] = mapped_column()
    error_type: Mapped[str | None] = mapped_column(String(200))
    error_message: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    #: The input key this attempt computed under (None: a step that never reuses).
    input_key: Mapped[str | None] = mapped_column(String(64))


class RunEvent(Base):
    __tablename__ = "run_events"
    __table_args__ = (Index("ix_run_events_run_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workflow_runs.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(50))
    actor: Mapped[str] = mapped_column(String(100), server_default="system")
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
