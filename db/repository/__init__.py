"""All SQL outside the claim protocol, one module per concern.

Functions take an open connection and keyword-only arguments; the caller owns the
transaction, so an operation that changes several rows does it atomically. Every status
write is guarded by a set named in `db/states.py`.
"""

from db.repository.metrics import bump_counter, counters, in_flight
from db.repository.outbox import (
    add_intent,
    intent_of,
    lock_due_intents,
    lock_intent,
    mark_intent,
    postpone_intent,
)
from db.repository.prune import (
    PrunedRun,
    finished_before,
    forget_deletion,
    pending_deletions,
    prune_run,
)
from db.repository.reconcile import (
    database_now,
    dead_running_steps,
    orphan_pending_runs,
    release_advisory_lock,
    stalled_runs,
    try_advisory_lock,
    unsettled_runs,
)
from db.repository.runs import (
    active_runs,
    add_event,
    create_run,
    fail_run,
    find_by_key,
    get_run,
    latest_changes,
    list_runs,
    ping,
    require_run,
    set_maps,
    set_run_status,
)
from db.repository.steps import (
    attach_items,
    close_running_attempts,
    count_steps,
    get_attempts,
    get_step_output,
    get_steps,
    lose_attempts,
    mark_queued,
    open_steps,
    renew_budgets,
    set_steps_status,
    step_states,
    supersede_items,
)
from db.repository.views import run_events, step_progress, workers_with_steps
from db.repository.workers import beat, forget_worker, live_workers

__all__ = [
    "PrunedRun",
    "active_runs",
    "add_event",
    "add_intent",
    "attach_items",
    "beat",
    "bump_counter",
    "close_running_attempts",
    "count_steps",
    "counters",
    "create_run",
    "database_now",
    "dead_running_steps",
    "fail_run",
    "find_by_key",
    "finished_before",
    "forget_deletion",
    "forget_worker",
    "get_attempts",
    "get_run",
    "get_step_output",
    "get_steps",
    "in_flight",
    "intent_of",
    "latest_changes",
    "list_runs",
    "live_workers",
    "lock_due_intents",
    "lock_intent",
    "lose_attempts",
    "mark_intent",
    "mark_queued",
    "open_steps",
    "orphan_pending_runs",
    "pending_deletions",
    "ping",
    "postpone_intent",
    "prune_run",
    "release_advisory_lock",
    "renew_budgets",
    "require_run",
    "run_events",
    "set_maps",
    "set_run_status",
    "set_steps_status",
    "stalled_runs",
    "step_progress",
    "step_states",
    "supersede_items",
    "try_advisory_lock",
    "unsettled_runs",
    "workers_with_steps",
]
