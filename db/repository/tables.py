"""The tables as SQLAlchemy Core objects, for the repository modules."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table

from db.models import (
    ArtifactDeletion,
    ArtifactRef,
    Asset,
    AssetRef,
    DispatchIntent,
    EngineCounter,
    InjectedFault,
    PoolSlot,
    PoolTenant,
    RunEvent,
    RunRevision,
    SlotWait,
    StepAttempt,
    StepCheckpoint,
    StepResult,
    StepRun,
    WorkerHeartbeat,
    WorkflowRun,
)

runs = cast(Table, WorkflowRun.__table__)
steps = cast(Table, StepRun.__table__)
attempts = cast(Table, StepAttempt.__table__)
events = cast(Table, RunEvent.__table__)
intents = cast(Table, DispatchIntent.__table__)
workers = cast(Table, WorkerHeartbeat.__table__)
counters = cast(Table, EngineCounter.__table__)
deletions = cast(Table, ArtifactDeletion.__table__)
faults = cast(Table, InjectedFault.__table__)
results = cast(Table, StepResult.__table__)
refs = cast(Table, ArtifactRef.__table__)
revisions = cast(Table, RunRevision.__table__)
slots = cast(Table, PoolSlot.__table__)
waits = cast(Table, SlotWait.__table__)
pool_tenants = cast(Table, PoolTenant.__table__)
checkpoints = cast(Table, StepCheckpoint.__table__)
assets = cast(Table, Asset.__table__)
asset_refs = cast(Table, AssetRef.__table__)
