"""Response models of what the service is made of: workflows, the state vocabulary,
workers, health, and the problem+json error body."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class RunningStepOut(BaseModel):
    run_id: uuid.UUID
    key: str
    attempt: int
    started_at: datetime | None


class WorkerOut(BaseModel):
    hostname: str
    pid: int
    queues: list[str]
    started_at: datetime
    last_seen: datetime
    running: list[RunningStepOut]


class WorkersPage(BaseModel):
    workers: list[WorkerOut] = Field(description="workers whose heartbeat is fresh")
    queues: dict[str, int | None] = Field(
        description="messages waiting in each queue (null: the broker did not answer)"
    )


class StepInfo(BaseModel):
    name: str
    queue: str
    max_attempts: int
    reads: list[str]
    mapped_over: str | None = None


class WorkflowOut(BaseModel):
    name: str
    version: int
    description: str
    steps: list[StepInfo]
    params_schema: dict[str, Any]
    asset_params: dict[str, str | None] = Field(
        default_factory=dict,
        description="params naming uploaded assets (POST /assets ids) -> the kind each"
        " takes (image, audio; null: either)",
    )
    layout: list[list[str]] = Field(
        description="the steps in columns, left to right: a step's column is one past the"
        " columns of the steps it waits for (what it reads, a map's source)"
    )
    graph: dict[str, Any] = Field(
        description="the canvas as a tree: {kind: chain|group|chord|step|map, ...}"
    )


class RunStates(BaseModel):
    statuses: list[str]
    terminal: list[str] = Field(description="a run in these has ended")
    live: list[str] = Field(description="pending or running: its events still come")
    resumable: list[str] = Field(description="POST /runs/{id}/resume accepts these")
    retryable: list[str] = Field(description="POST /runs/{id}/steps/{key}/retry accepts these")
    cancellable: list[str] = Field(description="POST /runs/{id}/cancel accepts these")


class StepStates(BaseModel):
    statuses: list[str]
    terminal: list[str]
    in_flight: list[str] = Field(description="in a worker's hands or in the broker")
    precedence: list[str] = Field(
        description="how a group of steps (a map's items) is summed up: the first status"
        " any of them has"
    )


class StatesOut(BaseModel):
    """The state machines' vocabulary, declared once in the engine (`db/states.py`)."""

    run: RunStates
    step: StepStates
    attempt: list[str]


class CheckOut(BaseModel):
    ok: bool
    detail: str | None = None


class WorkersOut(CheckOut):
    names: list[str] = []
    queues: dict[str, list[str]] = Field(default_factory=dict, description="queue -> workers")


class ProbeOut(BaseModel):
    status: str
    database: CheckOut | None = None
    broker: CheckOut | None = None


class ConnectionsOut(BaseModel):
    """This API process's database connections (each process has its own pool)."""

    pid: int
    in_use: int = Field(description="connections checked out of the pool now")
    open: int = Field(description="connections open, in use or idle in the pool")
    limit: int = Field(description="the most it may open: DATABASE_POOL_SIZE + MAX_OVERFLOW")
    pooler: str = Field(description="DATABASE_POOLER: none, or transaction")


class HealthOut(BaseModel):
    status: str
    database: CheckOut
    broker: CheckOut
    workers: WorkersOut
    connections: ConnectionsOut


class Problem(BaseModel):
    """An error, as RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    code: str = Field(description="stable machine-readable error code")
    errors: list[dict[str, str]] | None = Field(None, description="one per invalid field")
    run_status: str | None = Field(None, description="the run's state, on 409")


class SlotOut(BaseModel):
    slot: int
    run_id: uuid.UUID | None = Field(None, description="the run of the step holding it")
    step: str | None = Field(None, description="the step key holding it")
    worker: str | None = Field(None, description="the worker process holding it (host/pid)")
    tenant: str | None = None
    since: datetime | None = None
    lease_expires_at: datetime | None = None
    reserved_for_step: int | None = Field(None, description="granted to this waiting step")


class WaitingOut(BaseModel):
    tenant: str
    priority: int
    count: int
    oldest: datetime | None = None


class PoolOut(BaseModel):
    """A slot pool: its size, who holds each slot, and who waits (by tenant and priority)."""

    name: str
    size: int
    held: int
    slots: list[SlotOut]
    waiting: list[WaitingOut]
