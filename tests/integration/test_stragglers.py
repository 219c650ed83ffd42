"""A resume or retry the moment a run fails, while its sibling steps still run: accepted
(no 409), the plan names the steps it stops, and the run ends with each step succeeded
once, the stopped attempts recorded as cancelled."""

from __future__ import annotations

import uuid

import pytest

from db.states import STEP_IN_FLIGHT, RunStatus, StepStatus
from tests.support import WorkerProcess, attempt_rows, run_row, step_rows, wait_run, wait_step
from workflows.runs.operations import resume_run, retry_step, start_run
from workflows.runs.plans import Plan

pytestmark = pytest.mark.usefixtures("worker")


async def _failed_with_siblings_running() -> uuid.UUID:
    """c[0] fails for good at once while c[1] sleeps 6 s on the other worker process."""
    started = await start_run(
        "probe", {"width": 2, "sleep_ms": 6000, "max_attempts": 1}, faults={"c[0]": 1}
    )
    run_id = started.run.id
    await wait_step(run_id, "c[0]", lambda s: s.status is StepStatus.FAILED, timeout=60)
    run = await run_row(run_id)
    assert run.status is RunStatus.FAILED
    steps = await step_rows(run_id)
    assert steps["c[1]"].status in STEP_IN_FLIGHT, steps["c[1]"]
    return run_id


async def test_a_resume_right_after_the_failure_is_accepted(worker: WorkerProcess) -> None:
    run_id = await _failed_with_siblings_running()
    dry = await resume_run(run_id, dry_run=True)
    assert isinstance(dry, Plan) and dry.stops == ["c[1]"] and "c[1]" in dry.run, dry
    resumed = await resume_run(run_id, actor="test")  # no RunBusy
    assert not isinstance(resumed, Plan) and resumed.generation == 1
    run = await wait_run(run_id, worker=worker, timeout=90)
    assert run.status is RunStatus.SUCCEEDED, run.error
    steps = await step_rows(run_id)
    assert all(s.status is StepStatus.SUCCEEDED for s in steps.values()), steps
    c1 = [a.status for a in await attempt_rows(run_id, "c[1]")]
    assert c1 == ["cancelled", "succeeded"], c1  # the straggler stopped, then ran once
    assert steps["d"].output["seen"] == ["c[0]", "c[1]"]
    assert [a.status for a in await attempt_rows(run_id, "d")] == ["succeeded"]


async def test_a_retry_right_after_the_failure_is_accepted(worker: WorkerProcess) -> None:
    run_id = await _failed_with_siblings_running()
    retried = await retry_step(run_id, "c[0]", actor="test")
    assert not isinstance(retried, Plan)
    run = await wait_run(run_id, worker=worker, timeout=90)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert [a.status for a in await attempt_rows(run_id, "c[1]")] == ["cancelled", "succeeded"]
    assert [a.status for a in await attempt_rows(run_id, "e")] == ["succeeded"]
