"""What users uploaded (images, audio), stored once per content, and which runs use each:
prune deletes an asset only once no kept run names it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, String, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base


class Asset(Base):
    """An uploaded file: its kind and media type sniffed from its bytes, and where it is
    in the artifact store (a key derived from its sha256, so equal bytes are one row)."""

    __tablename__ = "assets"
    __table_args__ = (
        CheckConstraint("kind IN ('image', 'audio')", name="kind"),
        Index("ix_assets_created_at", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    media_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AssetRef(Base):
    """A run names an asset in its params (at start, or in a revision). Written with the
    run; gone with it. An asset with a row here is never pruned (RESTRICT says so too)."""

    __tablename__ = "asset_refs"
    __table_args__ = (Index("ix_asset_refs_run", "run_id"),)

    asset_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("assets.id", ondelete="RESTRICT"), primary_key=True
    )
    run_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("workflow_runs.id", ondelete="CASCADE"), primary_key=True
    )
