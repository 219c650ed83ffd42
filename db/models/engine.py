"""What keeps the engine going: the dispatch outbox, worker heartbeats, counters, the
files prune still has to delete, and a testing aid's fault plans."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
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


class DispatchIntent(Base):
    """The outbox: a generation of a run to publish, written with the state change that
    asked for it, and published (then marked sent) by a relay."""

    __tablename__ = "dispatch_intents"
    __table_args__ = (
        UniqueConstraint("run_id", "generation"),
        Index(
            "ix_dispatch_intents_due",
            "available_at",
            postgresql_where=text("sent_at IS NULL AND discarded_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workflow_runs.id", ondelete="CASCADE")
    )
    generation: Mapped[int] = mapped_column(Integer)
    canvas: Mapped[dict[str, Any]] = mapped_column(JSONB)
    reason: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    available_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    discarded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    publish_attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    #: W3C trace context of the request that wrote it (`traceparent`...), when traced.
    trace: Mapped[dict[str, str] | None] = mapped_column(JSONB)


class WorkerHeartbeat(Base):
    """One row per running worker (main process), refreshed every few seconds: a lease
    whose worker stopped beating is released without waiting for the lease to expire."""

    __tablename__ = "worker_heartbeats"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class EngineCounter(Base):
    """Monotonic counters of engine events that leave no row behind (an ignored delivery)."""

    __tablename__ = "engine_counters"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    label: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class ArtifactDeletion(Base):
    """Files of a pruned run still to delete, written in the transaction that deletes the
    run's rows: rows go first, so a crash can leave files nothing points to (deleted by
    the next prune), never rows that point to missing files."""

    __tablename__ = "artifact_deletions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    #: A key prefix in the artifact store (`<run_id>/`): everything under it goes ...
    prefix: Mapped[str] = mapped_column(String(300))
    #: ... but these keys, which other runs still use (they reused its results) ...
    keep: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    #: ... and these keys go too (files of runs pruned before, which only it still used).
    keys: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class InjectedFault(Base):
    """A testing aid's own storage: attempts of a step that the run asked to fail
    (`faults`, accepted only with ALLOW_FAULT_INJECTION). Never read on the claim path."""

    __tablename__ = "injected_faults"

    run_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workflow_runs.id", ondelete="CASCADE"), primary_key=True
    )
    step_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
