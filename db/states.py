"""The run and step state machines: every status, every allowed move, and the named sets.

The move tables below are the only statement of the machines. Every SQL guard in `db/` is
built from the named sets, each of which is checked against the tables at import, and the
database enforces the tables themselves: a trigger on each table refuses any status
change not listed here (`transition_guard_sql`, installed by migration; a test compares the
installed function with this module). A self-move (the status unchanged) is not a move.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum


class RunStatus(StrEnum):
    PENDING = "pending"  # accepted; its dispatch intent is not published yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"  # its message is (being) sent
    RUNNING = "running"
    RETRYING = "retrying"  # a transient failure; Celery redelivers it after a countdown
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"  # a map item its source no longer produces; kept as history


class AttemptStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYING = "retrying"
    LOST = "lost"
    CANCELLED = "cancelled"


R, S = RunStatus, StepStatus

#: src -> the statuses it may move to, and which operation makes each move.
RUN_TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = {
    # relay published / first claim; cancel; reconciler fails a run it cannot handle
    R.PENDING: frozenset({R.RUNNING, R.CANCELLED, R.FAILED}),
    # last step completes; a step fails; cancel; reconciler requeues a new generation
    R.RUNNING: frozenset({R.SUCCEEDED, R.FAILED, R.CANCELLED, R.PENDING}),
    R.SUCCEEDED: frozenset({R.PENDING}),  # retry a step of a finished run
    R.FAILED: frozenset({R.PENDING, R.CANCELLED}),  # resume or retry; cancel its stragglers
    R.CANCELLED: frozenset({R.PENDING}),  # resume or retry
}

STEP_TRANSITIONS: Mapping[StepStatus, frozenset[StepStatus]] = {
    # dispatch marks heads queued; claim; cancel; its map's source reran; a result with
    # its input key stands in (reused), or a revision replaces its output
    S.PENDING: frozenset({S.QUEUED, S.RUNNING, S.CANCELLED, S.SUPERSEDED, S.SUCCEEDED}),
    # claim; reconciler requeue; cancel; reused at its claim
    S.QUEUED: frozenset({S.RUNNING, S.PENDING, S.CANCELLED, S.SUCCEEDED}),
    # complete; fail; transient failure; cancel; reconciler releases a dead attempt
    S.RUNNING: frozenset({S.SUCCEEDED, S.FAILED, S.RETRYING, S.CANCELLED, S.PENDING}),
    # the retry message claims it; cancel; reconciler requeue (its message was lost);
    # reused at that claim
    S.RETRYING: frozenset({S.RUNNING, S.CANCELLED, S.PENDING, S.SUCCEEDED}),
    S.SUCCEEDED: frozenset({S.PENDING, S.SUPERSEDED}),  # retry; its map's source reran
    # resume or retry; source reran; a revision replaces its output
    S.FAILED: frozenset({S.PENDING, S.SUPERSEDED, S.SUCCEEDED}),
    S.CANCELLED: frozenset({S.PENDING, S.SUPERSEDED, S.SUCCEEDED}),
    S.SUPERSEDED: frozenset({S.PENDING}),  # the map expands again over this index
}


def run_can_move(src: RunStatus, dst: RunStatus) -> bool:
    return src == dst or dst in RUN_TRANSITIONS[src]


def step_can_move(src: StepStatus, dst: StepStatus) -> bool:
    return src == dst or dst in STEP_TRANSITIONS[src]


def run_sources(dst: RunStatus) -> frozenset[RunStatus]:
    """Every run status with a declared move to `dst`."""
    return frozenset(s for s, dsts in RUN_TRANSITIONS.items() if dst in dsts)


def step_sources(dst: StepStatus) -> frozenset[StepStatus]:
    """Every step status with a declared move to `dst`."""
    return frozenset(s for s, dsts in STEP_TRANSITIONS.items() if dst in dsts)


RUN_TERMINAL = frozenset({R.SUCCEEDED, R.FAILED, R.CANCELLED})
#: Resume: a run that stopped (failed or cancelled). A pending run is already on its way.
RUN_RESUMABLE = frozenset({R.FAILED, R.CANCELLED})
#: Retry a step: a stopped run, or a finished one (rerun one branch).
RUN_RETRYABLE = RUN_RESUMABLE | {R.SUCCEEDED}
#: Steps of a run in these states may be claimed: a pending run's current generation may
#: already be out (the relay publishes before it records the move), and siblings of a
#: failed step finish their work, so a resume does not redo it.
RUN_CLAIMABLE = frozenset({R.PENDING, R.RUNNING, R.FAILED})
#: Operations that dispatch a new generation leave the run pending for the relay.
RUN_DISPATCHING = frozenset({R.PENDING})
#: Cancel: anything not already over (a failed run may still have stragglers running).
RUN_CANCELLABLE = frozenset({R.PENDING, R.RUNNING, R.FAILED})
#: Runs a relay may still publish for.
RUN_LIVE = frozenset({R.PENDING, R.RUNNING})

STEP_TERMINAL = frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED})
#: A message for a step in these states may claim it outright.
STEP_CLAIMABLE = frozenset({S.PENDING, S.QUEUED, S.RETRYING})
#: In somebody's hands (a worker, or a message in the broker).
STEP_IN_FLIGHT = frozenset({S.QUEUED, S.RUNNING, S.RETRYING})
STEP_CANCELLABLE = frozenset({S.PENDING, S.QUEUED, S.RUNNING, S.RETRYING})
#: Resume puts these back to pending.
STEP_RESUMABLE = frozenset({S.FAILED, S.CANCELLED})
#: Retry puts these back to pending (a succeeded one reruns on request).
STEP_RESETTABLE = STEP_RESUMABLE | {S.SUCCEEDED, S.PENDING}
#: Map items that a rerun of their source supersedes (nothing in flight: reset refuses it).
STEP_SUPERSEDABLE = frozenset({S.PENDING, S.SUCCEEDED, S.FAILED, S.CANCELLED})
#: The reconciler puts these back to pending when their messages or workers are gone.
STEP_REQUEUABLE = frozenset({S.QUEUED, S.RETRYING, S.RUNNING})
#: A result with the same input key stands in for running these (at dispatch or claim).
STEP_REUSABLE = frozenset({S.PENDING, S.QUEUED, S.RETRYING, S.RUNNING})
#: A revision may replace the output of these (then they count as succeeded).
STEP_REPLACEABLE = frozenset({S.PENDING, S.SUCCEEDED, S.FAILED, S.CANCELLED})

#: How a group of steps (a map's items) reads at a glance: the first of these any has.
STEP_PRECEDENCE = (S.FAILED, S.RUNNING, S.RETRYING, S.QUEUED, S.PENDING, S.CANCELLED,
                   S.SUCCEEDED, S.SUPERSEDED)  # fmt: skip

ATTEMPT_OPEN = AttemptStatus.RUNNING
#: How an attempt can end (every one a label of the attempts counter, zeros included).
ATTEMPT_OUTCOMES = tuple(s.value for s in AttemptStatus if s is not AttemptStatus.RUNNING)
#: How a `lost` attempt is recorded, whoever finds it lost (a new claim or the reconciler).
LOST_ERROR_TYPE = "WorkerLost"
LOST_MESSAGE = "its worker died, hung or stopped answering before it finished"


def _check_run_moves(srcs: Iterable[RunStatus], dst: RunStatus) -> None:
    bad = [s for s in srcs if not run_can_move(s, dst)]
    assert not bad, f"undeclared run moves {bad} -> {dst}"


def _check_step_moves(srcs: Iterable[StepStatus], dst: StepStatus) -> None:
    bad = [s for s in srcs if not step_can_move(s, dst)]
    assert not bad, f"undeclared step moves {bad} -> {dst}"


# Every named set is a set of declared moves into the status its guard writes.
_check_run_moves(RUN_RESUMABLE | RUN_RETRYABLE, R.PENDING)
_check_run_moves(RUN_CANCELLABLE, R.CANCELLED)
_check_run_moves(RUN_DISPATCHING, R.RUNNING)
_check_step_moves(STEP_CLAIMABLE, S.RUNNING)
_check_step_moves(STEP_CANCELLABLE, S.CANCELLED)
_check_step_moves(STEP_RESETTABLE, S.PENDING)
_check_step_moves(STEP_SUPERSEDABLE, S.SUPERSEDED)
_check_step_moves(STEP_REQUEUABLE, S.PENDING)
_check_step_moves(STEP_REUSABLE, S.SUCCEEDED)
_check_step_moves(STEP_REPLACEABLE, S.SUCCEEDED)


def sql_in(states: Iterable[StepStatus] | Iterable[RunStatus] | Iterable[AttemptStatus]) -> str:
    """A SQL literal list of the states, for guards written in `text()` SQL."""
    return "(" + ", ".join(f"'{s.value}'" for s in sorted(states)) + ")"


def values(states: Iterable[StepStatus] | Iterable[RunStatus]) -> list[str]:
    """The states as plain strings, for bound parameters and `IN` clauses."""
    return sorted(s.value for s in states)


#: (table, guard function) the migration installs a trigger for.
GUARDED = {"workflow_runs": "reelflow_run_transition", "step_runs": "reelflow_step_transition"}


def transition_pairs(table: str) -> list[str]:
    """The declared moves of a table as 'src>dst' strings, as the trigger function lists them."""
    if table == "workflow_runs":
        return sorted(f"{a.value}>{b.value}" for a, bs in RUN_TRANSITIONS.items() for b in bs)
    return sorted(f"{a.value}>{b.value}" for a, bs in STEP_TRANSITIONS.items() for b in bs)


def transition_guard_sql(table: str) -> str:
    """The trigger function that refuses an undeclared status change on `table`."""
    allowed = ", ".join(f"'{p}'" for p in transition_pairs(table))
    return f"""
CREATE OR REPLACE FUNCTION {GUARDED[table]}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (OLD.status || '>' || NEW.status) = ANY (ARRAY[{allowed}]) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '{table}: % -> % is not a move of the state machine', OLD.status, NEW.status
        USING ERRCODE = 'check_violation';
END $$;
"""
