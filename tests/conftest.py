"""Shared fixtures: real PostgreSQL and Redis (the machine's when TEST_DATABASE_URL and
TEST_REDIS_URL are set, embedded otherwise), a migrated template database cloned per test
module, and a real Celery worker process.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from reelflow.settings import async_database_url
from tests import transitions
from tests.support import (
    DEFAULT_AMQP_URL,
    ApiProcess,
    Services,
    WorkerProcess,
    admin_sql,
    amqp_url,
    clear_amqp_queues,
    database_url_for,
    migrate,
    own_redis_db,
    patched_environment,
    reload_celery_app,
    start_embedded_services,
)


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    db, rd = os.environ.get("TEST_DATABASE_URL"), os.environ.get("TEST_REDIS_URL")
    if db and rd:  # every xdist worker its own Redis database; databases are per module
        yield Services(admin_url=async_database_url(db), redis_url=own_redis_db(rd))
        return
    services, stop = start_embedded_services(tmp_path_factory.mktemp("services"))
    try:
        yield services
    finally:
        _close_celery_clients()
        stop()


def _close_celery_clients() -> None:
    """Stop the result listener and pools of this process's Celery app before Redis goes."""
    import gc

    from reelflow.celery_app import app

    if not app.configured:  # nothing in this process used it: nothing to close
        return
    gc.collect()  # AsyncResult.__del__ unsubscribes over Redis: let it happen while Redis runs
    consumer = getattr(app.backend, "result_consumer", None)
    if consumer is not None and getattr(consumer, "_pubsub", None) is not None:
        consumer.stop()
    app.close()


@pytest.fixture(scope="session")
def template_db(services: Services) -> Iterator[str]:
    name = f"rf_tpl_{uuid.uuid4().hex[:8]}"
    admin_sql(services.admin_url, f'CREATE DATABASE "{name}"')
    migrate(database_url_for(services.admin_url, name))
    transitions.install(database_url_for(services.admin_url, name))
    yield name
    admin_sql(services.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_database(services: Services, template: str) -> str:
    name = f"rf_{uuid.uuid4().hex[:10]}"
    admin_sql(services.admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


@pytest.fixture(scope="module")
def broker_url(services: Services, request: pytest.FixtureRequest) -> str:
    """The module's broker: Redis, unless a module runs on both (`on_both_brokers`)."""
    kind = getattr(request, "param", "redis")
    if kind == "redis":
        return services.redis_url
    url = amqp_url()
    if url is None:
        pytest.skip(f"no RabbitMQ answers at {DEFAULT_AMQP_URL} and TEST_AMQP_URL is unset")
    clear_amqp_queues(url)
    return url


@pytest.fixture(scope="module")
def env(
    services: Services,
    broker_url: str,
    template_db: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[dict[str, str]]:
    """A fresh database for the module, and the environment pointing at it."""
    name = fresh_database(services, template_db)
    artifacts = tmp_path_factory.mktemp("artifacts")
    values = {
        "DATABASE_URL": database_url_for(services.admin_url, name),
        "REDIS_URL": services.redis_url,
        "ARTIFACT_ROOT": str(artifacts),
        "PUBLISH_DIR": str(artifacts / "published"),
        "STEP_LEASE_SECONDS": "30",
        "LOG_FORMAT": "json",
        "ALLOW_FAULT_INJECTION": "true",
        "RATE_LIMIT": "",  # the suite sends bursts on purpose; test_admission sets its own
        # Four modules at once, each with an API and workers, share one max_connections=100.
        "DATABASE_POOL_SIZE": "1",
        "DATABASE_MAX_OVERFLOW": "4",
        "WORKFLOW_MODULES": "tests.workflows",  # workflows only the tests run
        # Redis: the broker is REDIS_URL's (a module that swaps REDIS_URL swaps both)
        **({"CELERY_BROKER_URL": broker_url} if broker_url != services.redis_url else {}),
    }
    services.flush_redis()
    try:
        with patched_environment(values):
            reload_celery_app()
            yield values
    finally:
        transitions.collect(values["DATABASE_URL"], request.module.__name__)
        admin_sql(services.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def worker(
    env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """A real `celery worker` process on both queues, for the module."""
    log = Path(tmp_path_factory.mktemp("worker")) / "worker.log"
    proc = WorkerProcess(env, log, name=f"test-{uuid.uuid4().hex[:6]}", concurrency=2)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def api(
    env: dict[str, str], worker: WorkerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    """The HTTP API in its own process, against the module's database and worker."""
    proc = ApiProcess(env, Path(tmp_path_factory.mktemp("api")) / "api.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def pytest_unconfigure(config: pytest.Config) -> None:
    """After the summary, nothing more: pgserver's exit handlers (one per embedded
    PostgreSQL a chaos test started) log a farewell line each, into a stream pytest has
    already closed. Send late lines to the real stderr, and keep pgserver's notes out."""
    import logging
    import sys

    logging.getLogger("pgserver").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is not sys.__stderr__:
            handler.setStream(sys.__stderr__)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, the workers (started after this) record the moves they saw in
    one file the controller names, and read at the end (`pytest_sessionfinish`)."""
    import tempfile

    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        handle, path = tempfile.mkstemp(prefix="reelflow-transitions-", suffix=".jsonl")
        os.close(handle)
        os.environ[transitions.SHARED] = path
        config.stash[_TRANSITIONS] = path


_TRANSITIONS = pytest.StashKey[str]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite made every declared move (the xdist form of test_state_machine's last
    test): checked by the controller over every worker's records, once the whole suite ran."""
    path = session.config.stash.get(_TRANSITIONS, None)
    if path is None:
        return
    from tests.test_state_machine import declared_moves

    seen, ran = transitions.read_shared(Path(path))
    Path(path).unlink(missing_ok=True)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not ran >= transitions.NEEDED:
        return  # a partial run: nothing to say about the whole
    missing, refused = sorted(declared_moves() - seen), sorted(seen - declared_moves())
    if missing or refused:
        if reporter is not None:
            reporter.write_line(
                f"state machine: declared moves no test made: {missing};"
                f" moves the guards should have refused: {refused}",
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter is not None:
        reporter.write_line(f"state machine: the suite made all {len(seen)} declared moves")
