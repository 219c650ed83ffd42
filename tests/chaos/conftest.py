"""Chaos tests bring their own PostgreSQL, Redis, workers and reconciler, and break them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cli.embedded import EmbeddedPostgres, EmbeddedRedis, start_postgres, start_redis
from tests import transitions
from tests.support import (
    DEFAULT_AMQP_URL,
    ROOT,
    WorkerProcess,
    amqp_url,
    clear_amqp_queues,
    migrate,
    patched_environment,
)


@dataclass
class Chaos:
    base: Path
    pg: EmbeddedPostgres
    redis: EmbeddedRedis
    env: dict[str, str]
    workers: list[WorkerProcess] = field(default_factory=list)
    reconciler: subprocess.Popen[bytes] | None = None

    def worker(self, name: str, concurrency: int = 2, **extra_env: str) -> WorkerProcess:
        proc = WorkerProcess(
            {**self.env, **extra_env}, self.base / f"{name}.log", name=name, concurrency=concurrency
        )
        proc.start()
        self.workers.append(proc)
        return proc

    def start_reconciler(self, **extra_env: str) -> None:
        """`reelflow reconcile` as a process of its own (workers reconcile too)."""
        with (self.base / "reconciler.log").open("ab") as log:
            self.reconciler = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "reelflow",
                    "-v",
                    "reconcile",
                    "--interval",
                    "1",
                ],
                env={**os.environ, **self.env, **extra_env},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def cli(self, *args: str) -> str:
        """Run `reelflow ...` against this stack (runs start from here, not from pytest's
        process, whose Celery app is bound to the session's broker)."""
        done = subprocess.run(
            [sys.executable, "-m", "reelflow", *args],
            env={**os.environ, **self.env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start_run(
        self, workflow: str, faults: dict[str, int] | None = None, **params: object
    ) -> uuid.UUID:
        args = ["run", workflow, "--json"]
        for key, value in params.items():
            args += ["-p", f"{key}={json.dumps(value)}"]
        for key, count in (faults or {}).items():
            args += ["--fault", f"{key}={count}"]
        return uuid.UUID(json.loads(self.cli(*args))["id"])

    def stop_postgres(self) -> None:
        self.pg.stop()

    def start_postgres(self) -> None:
        self.pg = start_postgres(self.pg.data_dir)

    def restart_redis(self) -> None:
        self.redis.stop()
        self.redis = start_redis(self.redis.data_dir, port=self.redis.port, persist=False)

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        if self.reconciler and self.reconciler.poll() is None:
            os.killpg(self.reconciler.pid, signal.SIGKILL)
            self.reconciler.wait()
        self.redis.stop()
        self.pg.stop()


@pytest.fixture
def chaos(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Chaos]:
    """A private stack for one test; settings via the `chaos_env` marker's kwargs. Redis is
    the broker unless the test is parametrized (indirectly) with "amqp": then the machine's
    RabbitMQ, its step queues cleared before and after."""
    marker = request.node.get_closest_marker("chaos_env")
    extra = dict(marker.kwargs) if marker else {}
    amqp = None
    if getattr(request, "param", "redis") == "amqp":
        amqp = amqp_url()
        if amqp is None:
            pytest.skip(f"no RabbitMQ answers at {DEFAULT_AMQP_URL} and TEST_AMQP_URL is unset")
        clear_amqp_queues(amqp)
    pg = start_postgres(tmp_path / "pg")
    migrate(pg.url)
    transitions.install(pg.url)
    redis = start_redis(tmp_path / "redis", persist=False)
    env = {
        "DATABASE_URL": pg.url,
        "REDIS_URL": redis.url,
        "ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "PUBLISH_DIR": str(tmp_path / "published"),
        "STEP_LEASE_SECONDS": "5",
        "STALL_AFTER_SECONDS": "6",
        "LOG_FORMAT": "json",
        "ALLOW_FAULT_INJECTION": "true",
        "WORKFLOW_MODULES": "tests.workflows",
        **({"CELERY_BROKER_URL": amqp} if amqp else {}),
        **{k.upper(): str(v) for k, v in extra.items()},
    }
    stack = Chaos(tmp_path, pg, redis, env)
    try:
        with patched_environment(env):
            yield stack
    finally:
        for worker in stack.workers:
            worker.kill()
        transitions.collect(stack.pg.url, request.node.nodeid)
        stack.close()
        if amqp:
            clear_amqp_queues(amqp)
