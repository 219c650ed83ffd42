"""`reelflow dev`: the embedded stack starts, serves, stops cleanly and keeps its data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from cli.embedded import free_port
from tests.support import ROOT

pytestmark = pytest.mark.slow


def start_dev(
    home: Path, port: int, extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(REELFLOW_HOME=str(home), LOG_FORMAT="json", **(extra or {}))
    token = (extra or {}).get("API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for key in ("ARTIFACT_ROOT", "PUBLISH_DIR"):
        env.pop(key, None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reelflow",
            "dev",
            "--port",
            str(port),
            "--concurrency",
            "1",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/health", headers=headers, timeout=2)
            if health.status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise AssertionError("reelflow dev did not come up")


def stop_dev(proc: subprocess.Popen[bytes], home: Path) -> list[psutil.Process]:
    family = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(60)
    if code != 0:
        output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        raise AssertionError(f"reelflow dev exited {code}:\n{output}\n{_logs(home)}")
    return family


def _logs(home: Path) -> str:
    """The children's logs, the last lines of each: what a failure is explained by."""
    parts = []
    for log in sorted((home / "logs").glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-30:]
        parts.append(f"--- {log.name}\n" + "\n".join(lines))
    return "\n".join(parts)


def test_dev_stops_cleanly_and_keeps_runs(tmp_path: Path) -> None:
    home, port = tmp_path / "home", free_port()
    dev = start_dev(home, port)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    run_id = client.post("/runs", json={"workflow": "probe", "params": {"width": 2}}).json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"/runs/{run_id}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.2)

    family = stop_dev(dev, home)
    assert family, "dev started no child processes?"
    banner = dev.stdout.read().decode(errors="replace") if dev.stdout else ""
    assert f"http://127.0.0.1:{port}/ui" in banner and f"http://127.0.0.1:{port}/docs" in banner
    time.sleep(0.5)
    alive = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], alive
    leftover = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(home) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftover == [], leftover

    dev = start_dev(home, port)
    try:
        runs = client.get("/runs").json()["items"]
        assert run_id in {r["id"] for r in runs}
        steps = client.get(f"/runs/{run_id}/steps").json()
        assert all(s["status"] == "succeeded" for s in steps)
    finally:
        stop_dev(dev, home)


def test_dev_comes_up_with_a_token_set(tmp_path: Path) -> None:
    """With API_TOKEN set, /health is a read that needs it: the stack waits for its workers
    with the token (without it, it would wait for a 401 to turn healthy, and give up)."""
    home, port = tmp_path / "home", free_port()
    dev = start_dev(home, port, {"API_TOKEN": "dev-stack-token"})
    try:
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/runs", timeout=10).status_code == 401
        auth = {"Authorization": "Bearer dev-stack-token"}
        assert httpx.get(f"{url}/runs", headers=auth, timeout=10).status_code == 200
        assert httpx.get(f"{url}/livez", timeout=10).status_code == 200
    finally:
        stop_dev(dev, home)
