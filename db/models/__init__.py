"""ORM models, by concern. The state columns are guarded by CHECK constraints and by the
transition triggers `db/states.py` declares. Importing this package registers every table
on the metadata (Alembic's env does)."""

from db.models.assets import Asset, AssetRef
from db.models.engine import (
    ArtifactDeletion,
    DispatchIntent,
    EngineCounter,
    InjectedFault,
    PoolSlot,
    PoolTenant,
    SlotWait,
    StepCheckpoint,
    WorkerHeartbeat,
)
from db.models.results import ArtifactRef, RunRevision, StepResult
from db.models.runs import OPEN_STEP, RunEvent, StepAttempt, StepRun, WorkflowRun

__all__ = [
    "OPEN_STEP",
    "ArtifactDeletion",
    "ArtifactRef",
    "Asset",
    "AssetRef",
    "DispatchIntent",
    "EngineCounter",
    "InjectedFault",
    "PoolSlot",
    "PoolTenant",
    "RunEvent",
    "RunRevision",
    "SlotWait",
    "StepAttempt",
    "StepCheckpoint",
    "StepResult",
    "StepRun",
    "WorkerHeartbeat",
    "WorkflowRun",
]
