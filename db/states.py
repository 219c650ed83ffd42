"""The run and step state machines: every status, every allowed move, and the named sets.

SQL guards in `db/claims.py` and `db/repository.py` are built from these sets, so the
machine lives here once (as Celery's `celery/states.py` names READY_STATES once).
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AttemptStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYING = "retrying"
    LOST = "lost"
    CANCELLED = "cancelled"


RUN_TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
#: A run in these states may be resumed (pending: it was never dispatched, e.g. broker down).
RUN_RESUMABLE = frozenset({RunStatus.PENDING, RunStatus.FAILED, RunStatus.CANCELLED})
#: A step of a run in one of these may be retried (a succeeded run too: rerun one branch).
RUN_RETRYABLE = RUN_RESUMABLE | {RunStatus.SUCCEEDED}
#: Steps of a run in these states may still be claimed: siblings of a failed step finish
#: their work, so a resume does not redo it. A cancelled run claims nothing.
RUN_CLAIMABLE = frozenset({RunStatus.RUNNING, RunStatus.FAILED})

STEP_TERMINAL = frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.CANCELLED})
#: A message for a step in these states may claim it outright.
STEP_CLAIMABLE = frozenset({StepStatus.PENDING, StepStatus.QUEUED, StepStatus.RETRYING})
#: A step in these states is in somebody's hands (a worker, or a message in the broker).
STEP_IN_FLIGHT = frozenset({StepStatus.QUEUED, StepStatus.RUNNING, StepStatus.RETRYING})
STEP_CANCELLABLE = frozenset(set(StepStatus) - STEP_TERMINAL)
#: Steps that resume puts back to pending.
STEP_RESUMABLE = frozenset({StepStatus.FAILED, StepStatus.CANCELLED})
#: Steps that retry puts back to pending (a succeeded one reruns on request).
STEP_RESETTABLE = STEP_RESUMABLE | {StepStatus.SUCCEEDED, StepStatus.PENDING}

RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED}),
    RunStatus.RUNNING: frozenset(
        {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.PENDING}
    ),
    RunStatus.SUCCEEDED: frozenset({RunStatus.RUNNING}),
    RunStatus.FAILED: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED}),
    RunStatus.CANCELLED: frozenset({RunStatus.RUNNING}),
}

STEP_TRANSITIONS: dict[StepStatus, frozenset[StepStatus]] = {
    StepStatus.PENDING: frozenset({StepStatus.QUEUED, StepStatus.RUNNING, StepStatus.CANCELLED}),
    StepStatus.QUEUED: frozenset({StepStatus.RUNNING, StepStatus.PENDING, StepStatus.CANCELLED}),
    StepStatus.RUNNING: frozenset(
        {
            StepStatus.SUCCEEDED,
            StepStatus.FAILED,
            StepStatus.RETRYING,
            StepStatus.RUNNING,  # a new attempt claims a step whose lease expired
            StepStatus.CANCELLED,
        }
    ),
    StepStatus.RETRYING: frozenset({StepStatus.RUNNING, StepStatus.CANCELLED}),
    StepStatus.SUCCEEDED: frozenset({StepStatus.PENDING}),
    StepStatus.FAILED: frozenset({StepStatus.PENDING}),
    StepStatus.CANCELLED: frozenset({StepStatus.PENDING}),
}


def run_can_move(src: RunStatus, dst: RunStatus) -> bool:
    return dst in RUN_TRANSITIONS[src]


def step_can_move(src: StepStatus, dst: StepStatus) -> bool:
    return dst in STEP_TRANSITIONS[src]


def sql_in(states: frozenset[StepStatus] | frozenset[RunStatus]) -> str:
    """A SQL literal list of the states, for guards written in `text()` SQL."""
    return "(" + ", ".join(f"'{s.value}'" for s in sorted(states)) + ")"
