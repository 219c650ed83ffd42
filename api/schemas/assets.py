"""Response models of uploaded assets."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from db.records import AssetRecord


class AssetOut(BaseModel):
    """An uploaded file: name it by `id` in a run's params (short_video's `images`,
    `music`)."""

    id: uuid.UUID
    sha256: str = Field(description="of its bytes: equal bytes are one asset")
    kind: Literal["image", "audio"]
    size: int = Field(description="bytes")
    media_type: str = Field(description="read from its bytes, not from its name")
    created_at: datetime

    @classmethod
    def of(cls, asset: AssetRecord) -> AssetOut:
        return cls.model_validate(asset.model_dump(exclude={"key"}))
