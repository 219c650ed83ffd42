"""Typed read models of the rows, the shape every layer above `db/` sees."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from db.states import RunStatus, StepStatus


class _Record(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class RunRecord(_Record):
    id: uuid.UUID
    workflow: str
    workflow_version: int
    params: dict[str, Any]
    status: RunStatus
    idempotency_key: str | None = None
    error: dict[str, Any] | None = None
    generation: int
    request_hash: str | None = None
    maps: dict[str, int] = {}
    param_digests: dict[str, str] = {}
    cache: bool = True
    priority: int = 5
    tenant: str = "default"
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime


class StepRecord(_Record):
    id: int
    run_id: uuid.UUID
    key: str
    step: str
    item_index: int | None = None
    status: StepStatus
    attempts: int
    max_attempts: int
    queue: str
    output: Any = None
    error: dict[str, Any] | None = None
    celery_task_id: str | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    lease_worker: str | None = None
    input_key: str | None = None
    key_parts: dict[str, Any] | None = None
    item_digest: str | None = None
    output_digest: str | None = None
    reused_from: dict[str, Any] | None = None
    force_rerun: bool = False
    progress: dict[str, int] | None = None
    created_at: datetime
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime

    @property
    def duration_ms(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds() * 1000
        return None


class AttemptRecord(_Record):
    id: int
    step_run_id: int
    run_id: uuid.UUID
    step_key: str
    step: str
    attempt: int
    status: str
    celery_task_id: str | None = None
    worker_hostname: str | None = None
    queue: str | None = None
    enqueued_at: datetime | None = None
    started_at: datetime
    finished_at: datetime | None = None
    duration_ms: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    input_key: str | None = None


AssetKind = Literal["image", "audio"]


class AssetRecord(_Record):
    """An uploaded file: `key` locates its bytes in the artifact store."""

    id: uuid.UUID
    sha256: str
    kind: AssetKind
    media_type: str
    size: int
    key: str
    created_at: datetime


class OpenStep(_Record):
    """The little the compiler and the operations need of a step that is not finished."""

    key: str
    step: str
    status: StepStatus
    item_index: int | None = None
    celery_task_id: str | None = None


class NewStep(BaseModel):
    """A step row to create: at run creation, or when a map expands."""

    key: str
    step: str
    queue: str
    max_attempts: int
    item_index: int | None = None
    item: Any = None
    #: The item's digest (a part of its input key).
    item_digest: str | None = None
