"""Shared by the benchmarks: servers (given or embedded), migrations and a worker process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def servers(tmp: Path) -> Iterator[None]:
    """DATABASE_URL and REDIS_URL as given, or embedded servers under `tmp` for the block;
    the database migrated to head either way."""
    stops = []
    if not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")):
        from cli.embedded import start_postgres, start_redis

        pg = start_postgres(tmp / "pg")
        rd = start_redis(tmp / "redis", persist=False)
        os.environ["DATABASE_URL"], os.environ["REDIS_URL"] = pg.url, rd.url
        stops = [rd.stop, pg.stop]
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    from db.migrate import upgrade
    from reelflow.settings import get_settings

    get_settings.cache_clear()
    try:
        upgrade(get_settings().require_database_url())
        yield
    finally:
        for stop in stops:
            stop()


@contextmanager
def bench_environment(
    tmp: Path, *, include: str | None = None, concurrency: int = 2, queues: str = "default,gpu"
) -> Iterator[None]:
    with bench_servers(tmp):
        yield from _with_worker(tmp, include, concurrency, queues)


@contextmanager
def bench_servers(tmp: Path) -> Iterator[None]:
    """The servers and settings a bench runs against, without a worker."""
    os.environ.setdefault("ARTIFACT_ROOT", str(tmp / "artifacts"))
    os.environ.setdefault("PUBLISH_DIR", str(tmp / "published"))
    os.environ.setdefault("LOG_FORMAT", "json")
    with servers(tmp):
        yield


@contextmanager
def worker(
    tmp: Path, *, include: str | None = None, concurrency: int = 2, name: str | None = None
) -> Iterator[None]:
    """A prefork worker on both queues for the block (the servers must be up), with the
    settings of this process's environment when it starts."""
    yield from _with_worker(tmp, include, concurrency, "default,gpu", name=name)


def _with_worker(
    tmp: Path,
    include: str | None,
    concurrency: int,
    queues: str,
    profile_to: Path | None = None,
    name: str | None = None,
) -> Iterator[None]:
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "worker.log"
    from cli.processes import stop_groups, worker_args

    name = name or f"bench-{os.getpid()}-{uuid.uuid4().hex[:4]}@%h"
    args = worker_args(
        queues, concurrency, name, os.environ["LOG_LEVEL"], "--without-mingle", "--without-gossip"
    )
    if profile_to is not None:  # one process (solo pool), the whole of it under cProfile
        args = [args[0], "-m", "cProfile", "-o", str(profile_to), *args[1:], "-P", "solo"]
    if include:
        args += ["-I", include]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as fh:
        worker = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_ready(worker, log)
        yield
    finally:
        stop_groups([worker], 30)


def _wait_ready(worker: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    from celery import Celery

    from reelflow.celery_app import app

    assert isinstance(app, Celery)
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit(f"worker exited:\n{log.read_text()[-3000:]}")
        if app.control.ping(timeout=0.5):
            return
    raise SystemExit(f"worker not ready:\n{log.read_text()[-3000:]}")


async def finished(run_id: uuid.UUID, *, poll: float = 0.02, timeout: float = 300) -> None:
    """Return once the run succeeded (read from its row: where reelflow keeps outcomes);
    exit with the reason if it failed, was cancelled, or did not finish in time."""
    from db.engine import driver_connection

    conn = await driver_connection()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await conn.fetchval("SELECT status FROM workflow_runs WHERE id = $1", run_id)
        if status == "succeeded":
            return
        if status in ("failed", "cancelled"):
            raise SystemExit(f"bench run {run_id} {status}")
        await asyncio.sleep(poll)
    raise SystemExit(f"bench run {run_id} did not finish")


@contextmanager
def worker_on(tmp: Path, *, include: str | None, concurrency: int, queues: str) -> Iterator[None]:
    """A prefork worker on `queues` for the block (the servers must be up)."""
    yield from _with_worker(tmp, include, concurrency, queues)


@contextmanager
def profiled_worker(tmp: Path, profile_to: Path, include: str | None = None) -> Iterator[None]:
    """A solo worker under cProfile (the servers must be up): its stats land in
    `profile_to` when the block ends and the worker shuts down warm."""
    yield from _with_worker(tmp, include, 1, "default,gpu", profile_to)
