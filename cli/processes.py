"""Child processes of the terminal edge (and of the tests and benchmarks that drive it):
the worker's command line, and stopping a process group politely, then firmly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence


def worker_args(
    queues: str,
    concurrency: int | None,
    hostname: str | None,
    loglevel: str = "INFO",
    *extra: str,
) -> list[str]:
    """The command line of a Celery worker on `queues`."""
    # -q: no start-up banner, so every line the worker writes is a structured log line
    args = [sys.executable, "-m", "celery", "-A", "reelflow", "-q", "worker", "-Q", queues]
    args += ["-l", loglevel]
    if concurrency:
        args += ["-c", str(concurrency)]
    if hostname:
        args += ["-n", hostname]
    return [*args, *extra]


def stop_groups(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 20) -> None:
    """SIGTERM each process group (children and all), wait up to `timeout` in all, then
    SIGKILL whatever is left."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
