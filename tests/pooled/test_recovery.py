"""Recovery through PgBouncer in transaction mode: one reconciler pass at a time under a
transaction's lock (never a session's, which the pooler would strand on one server
connection), and a killed worker's run recovered by the reconciler of another."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from db.states import RunStatus, StepStatus
from tests.integration.test_reconciler_lock import (
    test_a_holder_that_dies_frees_the_lock,
    test_a_pass_is_skipped_while_another_holds_the_lock,
    test_concurrent_passes_leave_the_lock_and_connections_free,
    test_passes_one_after_another_are_never_skipped,
)
from tests.pooled.conftest import no_prepared_statement_errors
from tests.support import WorkerProcess, attempt_rows, counter_values, wait_run, wait_step
from workflows.runs.operations import start_run

pytestmark = [pytest.mark.usefixtures("env"), pytest.mark.slow]

__all__ = [
    "test_a_holder_that_dies_frees_the_lock",
    "test_a_pass_is_skipped_while_another_holds_the_lock",
    "test_concurrent_passes_leave_the_lock_and_connections_free",
    "test_passes_one_after_another_are_never_skipped",
]

#: A dead worker is found in seconds: frequent heartbeats and reconciler passes.
QUICK = {
    "WORKER_HEARTBEAT_SECONDS": "1",
    "WORKER_DEAD_AFTER_SECONDS": "3",
    "RECONCILE_INTERVAL_SECONDS": "1",
    "STEP_LEASE_SECONDS": "5",
}


async def test_a_killed_workers_run_is_recovered_by_the_reconciler(
    env: dict[str, str], tmp_path: Path
) -> None:
    def worker(name: str) -> WorkerProcess:
        proc = WorkerProcess(
            {**env, **QUICK}, tmp_path / f"{name}.log", name=f"{name}-{uuid.uuid4().hex[:6]}"
        )
        proc.start()
        return proc

    doomed = worker("doomed")
    rescuer = None
    try:
        requeued = sum((await counter_values("runs_requeued")).values())
        run_id = (await start_run("probe", {"width": 1, "sleep_ms": 3000})).run.id
        await wait_step(run_id, "a", lambda s: s.status is StepStatus.RUNNING)
        doomed.kill()  # the whole worker, main process and pool: its message stays unacked
        rescuer = worker("rescuer")

        run = await wait_run(run_id, timeout=90, worker=rescuer)
        assert run.status is RunStatus.SUCCEEDED, run.error
        assert [a.status for a in await attempt_rows(run_id, "a")] == ["lost", "succeeded"]
        assert sum((await counter_values("runs_requeued")).values()) > requeued
        no_prepared_statement_errors(doomed.tail(2_000_000), rescuer.tail(2_000_000))
    finally:
        doomed.kill()
        if rescuer is not None:
            rescuer.stop()
