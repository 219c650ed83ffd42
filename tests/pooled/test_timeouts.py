"""Timeouts through PgBouncer in transaction mode, where no session setting survives from
one transaction to the next: both timeouts on every transaction (`SET LOCAL` with its
BEGIN), a stuck statement stopped, a lock held past lock_timeout delays a step and the run
succeeds, a full pool waits and retries."""

from __future__ import annotations

import pytest

from tests.integration.test_timeouts import (
    test_a_full_pool_waits_then_retries_and_says_so_once,
    test_a_lock_held_past_the_lock_timeout_delays_the_step_not_fails_it,
    test_a_stuck_statement_is_stopped_and_transient,
    test_every_transaction_carries_both_timeouts,
    timed_worker,
)

pytestmark = pytest.mark.slow

__all__ = [
    "test_a_full_pool_waits_then_retries_and_says_so_once",
    "test_a_lock_held_past_the_lock_timeout_delays_the_step_not_fails_it",
    "test_a_stuck_statement_is_stopped_and_transient",
    "test_every_transaction_carries_both_timeouts",
    "timed_worker",
]
