"""The README's tour, as written: `reelflow dev` in one process, then every command of the
tour in a second one, from the same folder, with no DATABASE_URL or broker in its
environment (they find the stack through its state file)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # four videos, on 2 cores
PORT = 8000  # the tour's commands say localhost:8000
RUN_ID = re.compile(r"\brun ([0-9a-f-]{36})\b")
#: What the stack and the tour must find for themselves: none of it is inherited.
UNSET = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "REELFLOW_HOME", "ARTIFACT_ROOT",
         "PUBLISH_DIR", "ALLOW_FAULT_INJECTION", "WORKFLOW_MODULES", "API_TOKEN", "API_TOKENS",
         "API_PORT", "API_HOST", "CELERY_RESULT_BACKEND")  # fmt: skip


def tour_blocks() -> list[list[str]]:
    """The tour's bash blocks, each a list of commands (continuation lines joined)."""
    readme = (ROOT / "README.md").read_text()
    tour = readme.split("## A tour\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", tour, flags=re.S)
    found = []
    for block in blocks:
        commands: list[str] = []
        pending = ""
        for line in block.replace("\\\n", " ").splitlines():
            pending = f"{pending}\n{line}" if pending else line
            if pending.count('"') % 2 == 0 and pending.strip():  # a quoted SQL spans lines
                commands.append(pending)
                pending = ""
        found.append(commands)
    return found


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder of one's own, as a user's checkout: `.venv` is this one's."""
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    return tmp_path


def test_the_readme_tour_runs_beside_reelflow_dev(folder: Path) -> None:
    if not _port_free(PORT):
        pytest.skip(f"port {PORT}, which the tour's commands name, is taken")
    blocks = tour_blocks()
    assert blocks[0] == [".venv/bin/reelflow dev            # Ctrl-C stops everything; data"
                         " survives for the next start"], blocks[0]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in UNSET and not k.startswith("TEST_")}
    log = (folder / "dev.log").open("wb")
    dev = subprocess.Popen(
        ["bash", "-c", f"exec {blocks[0][0]}"], cwd=folder, env=env, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_up(dev, folder)
        run_id = None
        began = time.monotonic()
        for block in blocks[1:]:
            for command in block:
                if command.startswith("psql") and shutil.which("psql") is None:
                    continue
                line = command.replace("RUN", run_id) if run_id else command
                assert "RUN" not in line, f"no run id yet for: {command}"
                done = subprocess.run(
                    ["bash", "-c", line], cwd=folder, env=env, capture_output=True, text=True,
                    timeout=300,
                )  # fmt: skip
                said = done.stdout + done.stderr
                print(f"{time.monotonic() - began:6.1f}s {done.returncode} {command[:70]}")
                failing = "--fault" in command  # the tour breaks this one on purpose
                assert done.returncode == (1 if failing else 0), (command, said[-2000:])
                if failing:
                    found = RUN_ID.search(said)
                    assert found, said
                    run_id = found.group(1)
                if command.startswith("curl -s -X POST"):
                    assert '"id"' in said, said
                if "inspect stats" in command:
                    assert "dev-" in said, said  # the stack's worker answered
        assert run_id is not None
        run = httpx.get(f"http://127.0.0.1:{PORT}/runs/{run_id}", timeout=10).json()
        assert run["status"] == "succeeded", run
        history = httpx.get(f"http://127.0.0.1:{PORT}/runs/{run_id}/history", timeout=10).json()
        kinds = {e["kind"] for e in history}
        assert {"step_failed", "resumed", "step_retried"} <= kinds, kinds
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        code = dev.wait(90)
        log.close()
    assert code == 0, (folder / "dev.log").read_text()[-3000:]
    assert not (folder / ".reelflow" / "dev.json").exists()  # gone with the stack


def _wait_up(dev: subprocess.Popen[bytes], folder: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert dev.poll() is None, (folder / "dev.log").read_text()[-3000:]
        if (folder / ".reelflow" / "dev.json").exists():
            return
        time.sleep(0.5)
    raise AssertionError("reelflow dev did not come up: " + (folder / "dev.log").read_text())
