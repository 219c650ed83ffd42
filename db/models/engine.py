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


class PoolSlot(Base):
    """One slot of a pool (POOLS=gpu:4: four rows). A step holds one while it runs, as a
    lease (taken with its claim, renewed with its lease, freed by its end or its expiry);
    a slot may be reserved for a waiting step it was granted to."""

    __tablename__ = "pool_slots"

    pool: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder_step_id: Mapped[int | None] = mapped_column(BigInteger)
    holder_attempt: Mapped[int | None] = mapped_column(Integer)
    holder_run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    holder_key: Mapped[str | None] = mapped_column(String(200))
    holder_worker: Mapped[str | None] = mapped_column(String(200))
    tenant: Mapped[str | None] = mapped_column(String(100))
    since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reserved_for: Mapped[int | None] = mapped_column(BigInteger)
    reserved_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SlotWait(Base):
    """A step waiting for a slot of its pool, held back in PostgreSQL (its message was
    taken off the broker): what to publish again once it is granted a slot."""

    __tablename__ = "slot_waits"
    __table_args__ = (Index("ix_slot_waits_pool", "pool", "priority", "enqueued_at"),)

    step_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("step_runs.id", ondelete="CASCADE"), primary_key=True
    )
    run_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    step_key: Mapped[str] = mapped_column(String(200))
    pool: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str] = mapped_column(String(100))
    priority: Mapped[int] = mapped_column(Integer)
    generation: Mapped[int] = mapped_column(Integer)
    enqueued_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    #: The step's message (Celery's signature, chord and all) to publish when granted.
    signature: Mapped[dict[str, Any]] = mapped_column(JSONB)
    granted_slot: Mapped[int | None] = mapped_column(Integer)
    granted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PoolTenant(Base):
    """When each tenant was last given a slot of a pool: the round-robin's memory."""

    __tablename__ = "pool_tenants"

    pool: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_granted: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StepCheckpoint(Base):
    """A finished piece of a long step (a render's chunk): kept across attempts of the same
    input key, so a retry after a crash does only the rest."""

    __tablename__ = "step_checkpoints"

    step_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("step_runs.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    piece: Mapped[int] = mapped_column(Integer, primary_key=True)
    input_key: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer)
    artifact: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
