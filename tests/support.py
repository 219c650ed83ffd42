"""Test helpers: service handles, database admin, a real worker process, waiting on runs."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from cli.processes import stop_groups, worker_args
from db import repository as repo
from db.engine import get_engine
from db.records import AttemptRecord, RunRecord, StepRecord
from db.states import RUN_TERMINAL, RunStatus

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def patched_environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables (and re-read settings) for a block; restore them after."""
    from reelflow.settings import get_settings

    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


@dataclass
class Services:
    admin_url: str
    redis_url: str

    def flush_redis(self) -> None:
        redis.Redis.from_url(self.redis_url).flushdb()


DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"

#: On a module (pytestmark): each of its tests runs on Redis and on RabbitMQ (skipped with
#: the reason when no RabbitMQ answers). The `broker_url` fixture is in conftest.
on_both_brokers = pytest.mark.parametrize(
    "broker_url", ["redis", "amqp"], indirect=True, scope="module"
)


def xdist_index() -> int:
    """Which pytest-xdist worker this process is (gw0 -> 0); 0 without xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0


def own_redis_db(url: str) -> str:
    """Each xdist worker its own Redis database (13, 12, 11, ...): modules flush theirs."""
    from urllib.parse import urlsplit, urlunsplit

    index = xdist_index()
    if not index:
        return url
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(base - index) % 16}"))


def _own_vhost(url: str) -> str:
    """Each xdist worker its own RabbitMQ virtual host, made with rabbitmqctl when this
    machine runs the broker: the step queues (and pidbox queues) are per worker then."""
    index = os.environ.get("PYTEST_XDIST_WORKER")
    if not index or url != DEFAULT_AMQP_URL:
        return url
    vhost = f"reelflow-{index}"
    for command in (["add_vhost", vhost], ["set_permissions", "-p", vhost, "guest", ".*", ".*",
                                           ".*"]):  # fmt: skip
        done = subprocess.run(["rabbitmqctl", "-q", *command], capture_output=True, timeout=60)
        if done.returncode != 0 and b"already exists" not in done.stderr + done.stdout:
            raise RuntimeError(f"rabbitmqctl {' '.join(command)}: {done.stderr.decode()}")
    return f"amqp://guest:guest@127.0.0.1:5672/{vhost}"


_vhost_url: str | None = None


def amqp_url() -> str | None:
    """TEST_AMQP_URL, or the machine's RabbitMQ when one answers (a virtual host per xdist
    worker); None otherwise."""
    global _vhost_url
    from kombu import Connection

    url = os.environ.get("TEST_AMQP_URL") or DEFAULT_AMQP_URL
    try:
        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
    except Exception:
        if os.environ.get("TEST_AMQP_URL"):
            raise  # asked for by name: a broken URL is an error, not a skip
        return None
    if _vhost_url is None:
        _vhost_url = _own_vhost(url)
    return _vhost_url


def clear_amqp_queues(url: str) -> None:
    """Delete the step queues, so a test starts with nothing another one left queued."""
    from kombu import Connection

    from reelflow.celery_app import QUEUES

    with Connection(url, connect_timeout=5) as conn:
        for queue in QUEUES:
            channel: Any = conn.channel()
            try:
                channel.queue_delete(queue)
            except conn.channel_errors:
                pass
            finally:
                with suppress(Exception):
                    channel.close()


def reload_celery_app() -> None:
    """Point this process's Celery app at the broker the settings now name (a module that
    runs on RabbitMQ after one on Redis): new config, no pooled connections, new queues."""
    from kombu import pools

    from reelflow.celery_app import app, celery_config

    app.conf.update(celery_config())
    pools.reset()  # closes every pooled connection and forgets the pools, both brokers'
    app._pool = None
    app.__dict__.pop("amqp", None)


class S3Server:
    """moto's standalone S3-compatible HTTP server in a process of its own, with a bucket:
    object storage that workers reach over HTTP like any other."""

    def __init__(self, log: Path, bucket: str = "reelflow") -> None:
        from cli.embedded import free_port

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.bucket = bucket
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        import httpx

        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto exited:\n{self.log.read_text()[-2000:]}")
            try:
                httpx.put(f"{self.endpoint}/{self.bucket}", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("moto did not come up")

    def env(self, prefix: str) -> dict[str, str]:
        """Settings that put artifacts (and published videos) under s3://bucket/prefix."""
        return {
            "ARTIFACT_URL": f"s3://{self.bucket}/{prefix}",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }

    def stop(self) -> None:
        if self.proc is not None:
            stop_groups([self.proc], 10)


def start_embedded_services(base: Path) -> tuple[Services, Callable[[], None]]:
    from cli.embedded import start_postgres, start_redis

    pg = start_postgres(base / "pg")
    rd = start_redis(base / "redis", persist=False)

    def stop() -> None:
        rd.stop()
        pg.stop()

    return Services(admin_url=pg.admin_url(), redis_url=rd.url), stop


def database_url_for(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def admin_sql(url: str, sql: str) -> None:
    async def go() -> None:
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(go())


def migrate(url: str) -> None:
    """`reelflow db upgrade`'s code path, run in a subprocess with its own event loop."""
    subprocess.run(
        [sys.executable, "-c", f"from db.migrate import upgrade; upgrade({url!r})"],
        check=True,
        cwd=ROOT,
    )


class WorkerProcess:
    """A real `celery -A reelflow worker` process."""

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        *,
        name: str,
        concurrency: int = 2,
        queues: str = "default,gpu",
        pool: str = "prefork",
    ) -> None:
        self.env = {**os.environ, **env}
        self.log = log
        self.name = f"{name}@{socket.gethostname()}"
        self.args = worker_args(
            queues, concurrency, self.name, "INFO",
            "-P", pool, "--without-mingle", "--without-gossip",
        )  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log.stat().st_size if self.log.exists() else 0
        fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited at start:\n{self.tail()}")
            if b" ready." in self.log.read_bytes()[offset:]:
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready in {timeout}s:\n{self.tail()}")

    def stop(self, timeout: float = 20) -> None:
        if self.proc is not None:
            stop_groups([self.proc], timeout)

    def kill(self) -> None:
        """SIGKILL the whole worker (parent and children), as a crashed machine would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


async def counter_values(name: str) -> dict[str, int]:
    """An engine counter's values by label (what /metrics reports)."""
    async with get_engine().connect() as conn:
        counts = await repo.counters(conn)
    return {label: value for (counter, label), value in counts.items() if counter == name}


async def run_row(run_id: uuid.UUID) -> RunRecord:
    async with get_engine().connect() as conn:
        run = await repo.get_run(conn, run_id=run_id)
    assert run is not None
    return run


async def step_rows(run_id: uuid.UUID) -> dict[str, StepRecord]:
    async with get_engine().connect() as conn:
        return {s.key: s for s in await repo.get_steps(conn, run_id=run_id)}


async def attempt_rows(run_id: uuid.UUID, key: str | None = None) -> list[AttemptRecord]:
    async with get_engine().connect() as conn:
        return await repo.get_attempts(conn, run_id=run_id, key=key)


async def wait_run(
    run_id: uuid.UUID,
    statuses: frozenset[RunStatus] | set[RunStatus] = RUN_TERMINAL,
    timeout: float = 60,
    worker: WorkerProcess | None = None,
) -> RunRecord:
    deadline = time.monotonic() + timeout
    while True:
        run = await run_row(run_id)
        if run.status in statuses:
            return run
        if time.monotonic() > deadline:
            steps = {k: (s.status.value, s.attempts) for k, s in (await step_rows(run_id)).items()}
            tail = worker.tail() if worker else ""
            raise AssertionError(f"run {run_id} is {run.status} after {timeout}s: {steps}\n{tail}")
        await asyncio.sleep(0.1)


async def wait_step(
    run_id: uuid.UUID, key: str, predicate: Callable[[StepRecord], bool], timeout: float = 30
) -> StepRecord:
    deadline = time.monotonic() + timeout
    while True:
        step = (await step_rows(run_id)).get(key)
        if step is not None and predicate(step):
            return step
        if time.monotonic() > deadline:
            raise AssertionError(f"step {key} of {run_id} never matched: {step}")
        await asyncio.sleep(0.05)


class ApiProcess:
    """The API served by uvicorn in its own process, over real HTTP."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        from cli.embedded import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        import httpx

        fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reelflow", "api", "--host", "127.0.0.1",
             "--port", str(self.port)],
            env=self.env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"API exited:\n{self.log.read_text()[-3000:]}")
            try:
                httpx.get(f"{self.url}/workflows", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"API not up:\n{self.log.read_text()[-3000:]}")

    def client(self, timeout: float = 30, **kwargs: Any) -> Any:
        """An HTTP client of the API that, like any script, says it is not a browser form
        (X-Requested-With), so its body-less POSTs are taken."""
        import httpx

        headers = {"X-Requested-With": "reelflow-tests", **kwargs.pop("headers", {})}
        return httpx.Client(base_url=self.url, timeout=timeout, headers=headers, **kwargs)

    def stop(self) -> None:
        if self.proc is not None:
            stop_groups([self.proc], 10)
