"""The state machine and retry policy: pure logic."""

from __future__ import annotations

import random

import pytest
from pydantic import BaseModel

from db.states import (
    RUN_CLAIMABLE,
    STEP_CLAIMABLE,
    STEP_TERMINAL,
    RunStatus,
    StepStatus,
    run_can_move,
    sql_in,
    step_can_move,
)
from reelflow.errors import InjectedFailure, PermanentStepError
from steps.engine.retry import RetryPolicy
from workflows.definition.spec import chain
from workflows.definition.workflow import Workflow


def test_step_lifecycle_moves() -> None:
    assert step_can_move(StepStatus.PENDING, StepStatus.QUEUED)
    assert step_can_move(StepStatus.RUNNING, StepStatus.RETRYING)
    assert step_can_move(StepStatus.RETRYING, StepStatus.RUNNING)
    assert step_can_move(StepStatus.FAILED, StepStatus.PENDING)
    assert step_can_move(StepStatus.SUPERSEDED, StepStatus.PENDING)
    assert not step_can_move(StepStatus.SUCCEEDED, StepStatus.RUNNING)
    assert step_can_move(StepStatus.PENDING, StepStatus.SUCCEEDED)  # a result reused
    assert step_can_move(StepStatus.FAILED, StepStatus.SUCCEEDED)  # an output replaced
    assert not step_can_move(StepStatus.SUPERSEDED, StepStatus.SUCCEEDED)
    assert not step_can_move(StepStatus.RUNNING, StepStatus.SUPERSEDED)  # never in flight
    for terminal in STEP_TERMINAL - {StepStatus.CANCELLED}:
        assert not step_can_move(terminal, StepStatus.CANCELLED)


def test_run_lifecycle_moves() -> None:
    # Every new dispatch goes through pending: the relay (or the first claim) makes it run.
    assert run_can_move(RunStatus.FAILED, RunStatus.PENDING)
    assert run_can_move(RunStatus.CANCELLED, RunStatus.PENDING)
    assert run_can_move(RunStatus.RUNNING, RunStatus.PENDING)  # the reconciler requeues
    assert not run_can_move(RunStatus.FAILED, RunStatus.RUNNING)
    assert not run_can_move(RunStatus.SUCCEEDED, RunStatus.FAILED)
    assert not run_can_move(RunStatus.CANCELLED, RunStatus.RUNNING)


def test_claimable_sets_exclude_terminal_states() -> None:
    assert not STEP_CLAIMABLE & STEP_TERMINAL
    assert RunStatus.CANCELLED not in RUN_CLAIMABLE
    assert sql_in(frozenset({StepStatus.QUEUED, StepStatus.PENDING})) == "('pending', 'queued')"


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    policy = RetryPolicy(max_attempts=5, backoff_base=1.0, backoff_max=10.0)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 10.0)]:
        for _ in range(50):
            delay = policy.countdown(attempt, rng)
            assert ceiling / 2 <= delay <= ceiling
    assert RetryPolicy(jitter=False, backoff_base=0.5).countdown(3) == 2.0


def test_transient_versus_permanent() -> None:
    policy = RetryPolicy()
    assert policy.is_transient(InjectedFailure())
    assert policy.is_transient(RuntimeError("CUDA out of memory"))
    assert not policy.is_transient(PermanentStepError())
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_workflow_rejects_inputs_that_do_not_run_before() -> None:
    class P(BaseModel):
        pass

    import steps.probe  # noqa: F401  (registers steps a and b, run alone too)

    with pytest.raises(ValueError, match="reads"):
        Workflow(name="bad", version=1, canvas=chain("b", "a"), params_model=P)
    with pytest.raises(ValueError, match="unknown step"):
        Workflow(name="bad", version=1, canvas=chain("nope"), params_model=P)


def test_rabbitmq_delayed_delivery_gets_whole_seconds_from_one() -> None:
    from steps.engine.retry import broker_countdown

    assert broker_countdown(0.2, whole_seconds=True) == 1.0
    assert broker_countdown(1.0, whole_seconds=True) == 1.0
    assert broker_countdown(2.01, whole_seconds=True) == 3.0
    assert broker_countdown(0.2, whole_seconds=False) == 0.2


def test_what_a_later_try_gets_past_and_what_it_does_not() -> None:
    """Outages, deadlocks and timeouts are retried; a certificate the CA refuses is not,
    but a blip that interrupts handling one (its `__context__`) still is."""
    import ssl

    import asyncpg

    from db.errors import is_unavailable

    assert is_unavailable(ConnectionRefusedError())
    assert is_unavailable(FileNotFoundError("the socket is gone while PostgreSQL restarts"))
    assert is_unavailable(asyncpg.exceptions.DeadlockDetectedError("deadlock detected"))
    assert is_unavailable(asyncpg.exceptions.SerializationError("could not serialize"))
    refused = ssl.SSLCertVerificationError("certificate verify failed")
    assert not is_unavailable(refused)
    wrapped = ConnectionError("connecting")
    wrapped.__cause__ = refused
    assert not is_unavailable(wrapped)
    try:
        try:
            raise refused
        except ssl.SSLError:
            raise ConnectionResetError("a blip while recording it") from None
    except ConnectionResetError as blip:
        blip.__context__ = refused  # what `raise` inside `except` leaves
        assert is_unavailable(blip)
