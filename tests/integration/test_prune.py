"""Prune never deletes what a resume needs: it decides run by run under the run's lock,
so a run resumed, or finished again, after prune selected it is left whole, and the
report counts only what was deleted. A crash between deleting rows and files leaves
files nothing points to (deleted by the next prune), never rows pointing to nothing."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from db import repository as repo
from db.engine import get_engine
from db.states import STEP_IN_FLIGHT, RunStatus
from reelflow.errors import RunNotFound
from tests.support import WorkerProcess, run_row, step_rows, wait_run
from workflows.runs import retention as history
from workflows.runs.operations import resume_run, start_run

pytestmark = pytest.mark.usefixtures("worker")


async def _finished(faults: dict[str, int] | None = None, **params: object) -> uuid.UUID:
    run_id = (await start_run("probe", {"width": 2, **params}, faults=faults)).run.id
    run = await wait_run(run_id, timeout=60)
    assert run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)
    for _ in range(100):  # siblings of a failed step finish their work
        steps = (await step_rows(run_id)).values()
        if not any(s.status in STEP_IN_FLIGHT for s in steps):
            break
        await asyncio.sleep(0.1)
    return run_id


async def _gone(run_id: uuid.UUID) -> bool:
    async with get_engine().connect() as conn:
        return await repo.get_run(conn, run_id=run_id) is None


def _artifacts(env: dict[str, str], run_id: uuid.UUID) -> Path:
    return Path(env["ARTIFACT_ROOT"]) / str(run_id)


async def test_prune_paused_after_selecting_leaves_a_resumed_and_refinished_run_whole(
    worker: WorkerProcess, env: dict[str, str]
) -> None:
    old = await _finished()
    failed = await _finished(faults={"e": 1}, max_attempts=1)
    for run_id in (old, failed):  # something on disk for each, as a real step writes
        folder = _artifacts(env, run_id) / "a"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "out.bin").write_bytes(b"x" * 10)

    cutoff = datetime.now(UTC)
    selected = await history.select_prunable(cutoff, limit=100)
    assert {old, failed} <= {run_id for run_id, _, _ in selected}

    # Prune pauses here. Meanwhile an operator resumes the failed run, and it finishes
    # again (after the cutoff), its upstream outputs reused from the rows prune selected.
    await resume_run(failed)
    assert (await wait_run(failed, timeout=60)).status is RunStatus.SUCCEEDED

    report = await history.prune_selected(
        [run_id for run_id, _, _ in selected], before=cutoff, older_than="0s"
    )
    assert report.runs == len(selected) - 1, report  # everything selected but the resumed run
    assert await _gone(old)
    assert not _artifacts(env, old).exists()
    kept = await run_row(failed)
    assert kept.status is RunStatus.SUCCEEDED and kept.finished_at and kept.finished_at > cutoff
    assert (_artifacts(env, failed) / "a" / "out.bin").exists()
    assert {k: s.status.value for k, s in (await step_rows(failed)).items()} == dict.fromkeys(
        ["a", "b", "c[0]", "c[1]", "d", "e"], "succeeded"
    )


async def test_prune_skips_a_run_resumed_before_it_locks_it(
    worker: WorkerProcess, env: dict[str, str]
) -> None:
    """Resumed between the selection and the lock: it is running, not finished."""
    failed = await _finished(faults={"e": 1}, max_attempts=1, sleep_ms=300)
    cutoff = datetime.now(UTC)
    await resume_run(failed)  # pending/running now
    report = await history.prune_selected([failed], before=cutoff, older_than="0s")
    assert report.runs == 0 and report.steps == 0 and report.artifacts == 0
    assert (await wait_run(failed, timeout=60)).status is RunStatus.SUCCEEDED


async def test_a_resume_waits_for_prune_and_never_sees_half_a_run(worker: WorkerProcess) -> None:
    """Prune holds the run's lock from its check to its commit: a resume racing it waits,
    then finds the run gone (404), never a run without its steps."""
    failed = await _finished(faults={"e": 1}, max_attempts=1)
    cutoff = datetime.now(UTC)
    async with get_engine().begin() as conn:  # prune's transaction, held open
        pruned = await repo.prune_run(conn, run_id=failed, before=cutoff, prefix=f"{failed}/")
        assert pruned is not None
        racing = asyncio.create_task(resume_run(failed))
        await asyncio.sleep(0.5)
        assert not racing.done()  # waiting on the row lock
    with pytest.raises(RunNotFound):
        await racing


async def test_files_left_by_a_prune_that_stopped_are_deleted_by_the_next(
    worker: WorkerProcess, env: dict[str, str]
) -> None:
    run_id = await _finished()
    folder = _artifacts(env, run_id) / "a"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "out.bin").write_bytes(hashlib.sha256(b"x").digest())
    async with get_engine().begin() as conn:  # rows deleted, then the process died
        assert await repo.prune_run(
            conn, run_id=run_id, before=datetime.now(UTC), prefix=f"{run_id}/"
        )
    assert _artifacts(env, run_id).exists()
    await history.prune("3650d", dry_run=False)  # prunes nothing new, finishes the old
    assert not _artifacts(env, run_id).exists()
    async with get_engine().connect() as conn:
        assert await repo.pending_deletions(conn) == []
