"""Recovery with nothing but the API's process and workers: dead workers found by their
heartbeats, live workers never robbed (not even after a database outage longer than the
lease), a broker that refuses the requeue's publish, and a run no worker can handle."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from sqlalchemy import text

from db.engine import get_engine
from db.states import RunStatus, StepStatus
from tests.chaos.conftest import Chaos
from tests.support import attempt_rows, run_row, step_rows, wait_run, wait_step

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


async def _sql(statement: str, **params: object) -> list[dict[str, object]]:
    async with get_engine().begin() as conn:
        result = await conn.execute(text(statement), params)
        return [dict(r._mapping) for r in result] if result.returns_rows else []


def _succeeded_once(attempts: dict[str, list[str]]) -> bool:
    return all(statuses.count("succeeded") == 1 for statuses in attempts.values())


# Default lease (60 s) and stall window (120 s): what a deployment that changed nothing has.
@pytest.mark.chaos_env(step_lease_seconds=60, stall_after_seconds=120)
@pytest.mark.parametrize("chaos", ["redis", "amqp"], indirect=True)
async def test_a_sigkilled_worker_is_replaced_within_seconds_with_default_settings(
    chaos: Chaos,
) -> None:
    run_id = chaos.start_run("probe", width=2, sleep_ms=4000)
    doomed = chaos.worker("doomed")  # after the run: its first step is seen running
    await wait_step(run_id, "a", lambda s: s.status is StepStatus.RUNNING, timeout=30)
    doomed.kill()  # the whole worker: main process and pool
    chaos.worker("rescuer")
    started = time.monotonic()

    run = await wait_run(run_id, timeout=90)
    recovery = time.monotonic() - started
    assert run.status is RunStatus.SUCCEEDED, run.error
    attempts = {
        k: [a.status for a in await attempt_rows(run_id, k)] for k in await step_rows(run_id)
    }
    assert attempts["a"] == ["lost", "succeeded"], attempts
    assert _succeeded_once(attempts), attempts
    # a (4 s) + b (4 s) + c (4 s) + d + e run after the rescue: about 20 s of work
    assert recovery < 30 + 20, recovery
    print(f"recovery: run finished {recovery:.1f} s after the new worker started")


@pytest.mark.chaos_env(step_lease_seconds=5)
async def test_a_live_worker_keeps_a_step_finished_during_a_long_database_outage(
    chaos: Chaos,
) -> None:
    chaos.worker("steady")
    chaos.start_reconciler()
    run_id = chaos.start_run("probe", width=1, sleep_ms=6000)
    await wait_step(run_id, "a", lambda s: s.status is StepStatus.RUNNING, timeout=30)
    await asyncio.sleep(2)
    chaos.stop_postgres()
    await asyncio.sleep(15)  # three leases: a finishes meanwhile, and cannot say so
    chaos.start_postgres()

    run = await wait_run(run_id, timeout=120)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert [a.status for a in await attempt_rows(run_id, "a")] == ["succeeded"]
    assert {k: s.attempts for k, s in (await step_rows(run_id)).items()}["a"] == 1


@pytest.mark.chaos_env(worker_dead_after_seconds=3, reconcile_interval_seconds=1)
async def test_a_requeue_the_broker_refuses_is_published_when_it_accepts_again(
    chaos: Chaos,
) -> None:
    admin = redis.Redis.from_url(chaos.redis.url)
    admin.execute_command("ACL", "SETUSER", "relay", "on", ">relay", "~*", "&*", "+@all")
    port = chaos.redis.port
    chaos.start_reconciler(CELERY_BROKER_URL=f"redis://relay:relay@127.0.0.1:{port}/0")
    run_id = chaos.start_run("probe", width=1, sleep_ms=6000)
    doomed = chaos.worker("doomed")  # after the run: its step is seen running
    await wait_step(run_id, "a", lambda s: s.status is StepStatus.RUNNING, timeout=30)
    doomed.kill()
    # The broker stops taking the reconciler's messages (its pushes are refused).
    admin.execute_command("ACL", "SETUSER", "relay", "-lpush", "-rpush")

    deadline = time.monotonic() + 60
    while True:
        rows = await _sql(
            "SELECT generation, sent_at, publish_attempts FROM dispatch_intents"
            " WHERE run_id = :r ORDER BY generation DESC LIMIT 1",
            r=run_id,
        )
        if rows and rows[0]["generation"] == 1 and int(str(rows[0]["publish_attempts"])) >= 1:
            break  # requeued, and its publish refused
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.3)
    assert rows[0]["sent_at"] is None
    run = await run_row(run_id)
    assert run.status is RunStatus.PENDING and run.generation == 1

    admin.execute_command("ACL", "SETUSER", "relay", "+@all")  # the broker is back
    chaos.worker("rescuer")
    run = await wait_run(run_id, timeout=90)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert [a.status for a in await attempt_rows(run_id, "a")] == ["lost", "succeeded"]


async def test_a_run_the_reconciler_cannot_handle_does_not_block_the_others(
    chaos: Chaos,
) -> None:
    broken = chaos.start_run("probe", width=1)  # no worker yet: the messages wait
    healthy = chaos.start_run("probe", width=1)
    chaos.restart_redis()  # the queues are gone: both runs are stalled
    # A deploy renamed the workflow of one of them.
    await _sql("UPDATE workflow_runs SET workflow = 'renamed_away' WHERE id = :r", r=broken)
    chaos.worker("after-deploy")

    run = await wait_run(healthy, timeout=90)
    assert run.status is RunStatus.SUCCEEDED, run.error
    failed = await wait_run(broken, timeout=30)
    assert failed.status is RunStatus.FAILED
    assert failed.error and "renamed_away" in str(failed.error["message"])
    events = await _sql(
        "SELECT detail FROM run_events WHERE run_id = :r AND kind = 'reconciled'", r=broken
    )
    assert any(e["detail"] and "failed" in str(e["detail"]) for e in events), events


@pytest.mark.chaos_env(worker_dead_after_seconds=3)
async def test_a_step_waiting_to_retry_on_a_dead_worker_is_requeued(chaos: Chaos) -> None:
    doomed = chaos.worker("doomed")
    run_id = chaos.start_run("probe", width=1, max_attempts=8, faults={"b": 5})
    await wait_step(run_id, "b", lambda s: s.status is StepStatus.RETRYING, timeout=30)
    doomed.kill()  # the retry's message dies with the worker that held it for its countdown
    chaos.worker("rescuer")
    run = await wait_run(run_id, timeout=90)
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert run.generation >= 1
    statuses = [a.status for a in await attempt_rows(run_id, "b")]
    assert statuses[-1] == "succeeded" and statuses.count("succeeded") == 1, statuses


@pytest.mark.chaos_env(worker_dead_after_seconds=3)
async def test_a_failed_runs_straggler_on_a_dead_worker_is_released_and_superseded(
    chaos: Chaos,
) -> None:
    doomed = chaos.worker("doomed")
    run_id = chaos.start_run("probe", width=2, sleep_ms=4000, max_attempts=1, faults={"c[0]": 1})
    await wait_step(run_id, "c[1]", lambda s: s.status is StepStatus.RUNNING, timeout=60)
    await wait_run(run_id, frozenset({RunStatus.FAILED}), timeout=30)
    doomed.kill()  # c[1] was still running for the failed run
    chaos.worker("rescuer")
    await wait_step(run_id, "c[1]", lambda s: s.status is StepStatus.PENDING, timeout=60)

    chaos.cli("retry", str(run_id), "a")  # the map's source reruns: both items superseded
    run = await wait_run(run_id, timeout=120)
    assert run.status is RunStatus.SUCCEEDED, run.error
    c1 = [a.status for a in await attempt_rows(run_id, "c[1]")]
    assert c1 == ["lost", "succeeded"], c1
    steps = await step_rows(run_id)
    assert steps["d"].output["seen"] == ["c[0]", "c[1]"]


async def test_runs_an_older_version_left_pending_are_dispatched_or_failed(
    chaos: Chaos,
) -> None:
    """Before the outbox, a crash between commit and dispatch left runs pending with
    nothing to dispatch them; the reconciler gives each an intent (or fails it)."""
    orphans = {}
    for workflow in ("probe", "renamed_away"):
        rows = await _sql(
            "INSERT INTO workflow_runs (id, workflow, workflow_version, params, status,"
            " updated_at) VALUES (gen_random_uuid(), :w, 1, CAST(:p AS jsonb), 'pending',"
            " now() - interval '1 hour') RETURNING id",
            w=workflow,
            p='{"width": 1, "sleep_ms": 0, "max_attempts": null, "grow": 0}',
        )
        run_id = rows[0]["id"]
        for key in ("a", "b", "d", "e"):
            await _sql(
                "INSERT INTO step_runs (run_id, key, step, max_attempts) VALUES (:r, :k, :k, 3)",
                r=run_id,
                k=key,
            )
        orphans[workflow] = run_id
    chaos.worker("upgraded")

    run = await wait_run(orphans["probe"], timeout=60)  # type: ignore[arg-type]
    assert run.status is RunStatus.SUCCEEDED, run.error
    failed = await wait_run(orphans["renamed_away"], timeout=30)  # type: ignore[arg-type]
    assert failed.status is RunStatus.FAILED
    assert failed.error and "renamed_away" in str(failed.error["message"])
