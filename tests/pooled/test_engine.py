"""The engine's integration tests, through PgBouncer in transaction mode: a run succeeds
once per step, a failed map item resumes alone, transient failures retry, a retried step
reruns with its dependents, a killed pool process's step is redelivered and completes
once; the API answers; and no "prepared statement" error is logged anywhere."""

from __future__ import annotations

import pytest

from tests.integration.test_engine import (
    test_failed_map_item_resumes_without_rerunning_upstream,
    test_killed_worker_process_is_redelivered_and_completes_once,
    test_probe_run_succeeds_once_per_step,
    test_retry_step_reruns_it_and_downstream_only,
    test_transient_failures_retry_with_backoff,
)
from tests.pgbouncer import PgBouncer
from tests.pooled.conftest import no_prepared_statement_errors
from tests.support import ApiProcess, WorkerProcess

pytestmark = [pytest.mark.usefixtures("worker"), pytest.mark.slow]

__all__ = [
    "test_failed_map_item_resumes_without_rerunning_upstream",
    "test_killed_worker_process_is_redelivered_and_completes_once",
    "test_probe_run_succeeds_once_per_step",
    "test_retry_step_reruns_it_and_downstream_only",
    "test_transient_failures_retry_with_backoff",
]


def test_the_api_answers_through_the_pooler(api: ApiProcess, env: dict[str, str]) -> None:
    with api.client() as client:
        health = client.get("/health")
        assert health.status_code == 200, health.text
        assert health.json()["connections"]["pooler"] == "transaction"
        for _ in range(3):  # each request's transactions on whichever server connection
            runs = client.get("/runs")
            assert runs.status_code == 200, runs.text
            assert runs.json()["items"], "the runs of the tests above"
        assert client.get("/metrics").status_code == 200
    assert api.proc is not None


def test_nothing_logged_a_prepared_statement_error(
    worker: WorkerProcess, api: ApiProcess, pgbouncer: PgBouncer
) -> None:
    no_prepared_statement_errors(
        worker.tail(2_000_000), api.log.read_text(), pgbouncer.tail(200_000)
    )
