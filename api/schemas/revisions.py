"""Request and response models of revisions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.schemas.runs import RunOut, _no_nul


class RevisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(
        default_factory=dict,
        description="a JSON merge patch (RFC 7386) of the run's params: null removes a field",
        examples=[{"voice": False}],
    )
    outputs: dict[str, Any] = Field(
        default_factory=dict,
        description="step key -> its replacement output (checked against the step's output"
        " model; the step then counts as succeeded, marked as edited)",
        examples=[{}],
    )
    reason: str = Field(min_length=1, max_length=2000, examples=["fix the typo in scene 3"])

    @field_validator("params", "outputs", "reason")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        return _no_nul(value)


class RevisionOut(BaseModel):
    """A revision's plan (dry run) or what it did: the steps that rerun and why, in words,
    those whose results stand, the outputs it replaced, and the map items it dropped."""

    run_id: uuid.UUID
    dry_run: bool
    revision: int | None = Field(None, description="its number (none for a dry run)")
    rerun: dict[str, str] = Field(description="step key -> why it reruns")
    reuse: list[str] = Field(description="step keys whose results stand (or are reused)")
    edited: list[str] = Field(description="step keys whose outputs it replaced")
    superseded: list[str] = Field(description="map items the new output no longer has")
    run: RunOut | None = Field(None, description="the run after the revision")


class RevisionRecordOut(BaseModel):
    """An applied revision, as recorded (immutable)."""

    number: int
    actor: str
    reason: str
    created_at: datetime
    params_patch: dict[str, Any]
    params_before: dict[str, Any]
    params_after: dict[str, Any]
    outputs_before: dict[str, Any]
    outputs_after: dict[str, Any]
    plan: dict[str, Any]
