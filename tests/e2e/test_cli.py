"""The engine scenario through the `reelflow` command alone, run as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.support import ROOT, WorkerProcess

pytestmark = pytest.mark.usefixtures("worker")
REELFLOW = [sys.executable, "-m", "reelflow"]


def cli(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*REELFLOW, *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if ok:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def show(env: dict[str, str], run_id: str) -> dict[str, Any]:
    return json.loads(cli(env, "show", run_id, "--json").stdout)


def wait_idle(env: dict[str, str], run_id: str) -> dict[str, Any]:
    for _ in range(300):
        run = show(env, run_id)
        busy = [s for s in run["steps"] if s["status"] in ("queued", "running", "retrying")]
        if run["status"] not in ("running", "pending") and not busy:
            return run
        time.sleep(0.2)
    raise AssertionError(run)


def test_fail_inspect_resume_retry_through_the_cli(env: dict[str, str]) -> None:
    started = cli(
        env,
        "run",
        "probe",
        "-p",
        "width=5",
        "--fault",
        "c[2]=1",
        "-p",
        "max_attempts=1",
        "--wait",
        "--json",
        ok=False,
    )
    assert started.returncode == 1, started.stderr  # --wait exits 1 when the run fails
    run = json.loads(started.stdout)
    run_id = run["id"]
    assert run["status"] == "failed"
    run = wait_idle(env, run_id)

    history = json.loads(cli(env, "history", run_id, "c[2]", "--json").stdout)
    assert history[0]["error_type"] == "InjectedFailure" and history[0]["traceback"]
    table = cli(env, "history", run_id, "c[2]").stdout
    assert "InjectedFailure" in table

    plan = json.loads(cli(env, "resume", run_id, "--dry-run", "--json").stdout)
    assert sorted(plan["run"]) == ["c[2]", "d", "e"]
    cli(env, "resume", run_id)
    run = wait_idle(env, run_id)
    assert run["status"] == "succeeded"
    counts = {s["key"]: s["attempts"] for s in run["steps"]}
    assert counts == {
        "a": 1,
        "b": 1,
        "c[0]": 1,
        "c[1]": 1,
        "c[2]": 2,
        "c[3]": 1,
        "c[4]": 1,
        "d": 1,
        "e": 1,
    }

    cli(env, "retry", run_id, "c[1]")
    run = wait_idle(env, run_id)
    counts = {s["key"]: s["attempts"] for s in run["steps"]}
    assert (counts["c[1]"], counts["d"], counts["e"], counts["c[0]"]) == (2, 2, 2, 1)

    listed = json.loads(cli(env, "runs", "--workflow", "probe", "--json").stdout)
    assert run_id in {r["id"] for r in listed}
    assert run_id in cli(env, "runs").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "not-a-uuid"], "not a run id"),
        (["show", "00000000-0000-0000-0000-000000000000"], "no run"),
        (["run", "nope"], "unknown workflow"),
        (["run", "probe", "-p", "width=wide"], "width"),
        (["run", "probe", "-p", "novalue"], "key=value"),
        (["runs", "--status", "sideways"], "unknown status"),
        (["frobnicate"], "No such command"),
        (["history", "00000000-0000-0000-0000-000000000000", "a"], "no run"),
        (["run", "probe", "--priority", "12"], "priority"),
        (["run", "probe", "--tenant", "team a"], "--tenant"),
        (["run", "probe", "--tenant", "t" * 101], "--tenant"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(
    env: dict[str, str], args: list[str], message: str
) -> None:
    done = cli(env, *args, ok=False)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_a_run_started_from_the_cli_has_its_priority_and_tenant(env: dict[str, str]) -> None:
    done = cli(env, "run", "probe", "-p", "width=1", "--priority", "9", "--tenant", "team-b",
               "--json")  # fmt: skip
    run = json.loads(done.stdout)
    assert (run["priority"], run["tenant"]) == (9, "team-b")
    assert (show(env, run["id"])["priority"], show(env, run["id"])["tenant"]) == (9, "team-b")


def test_inspect_steps_shows_the_running_step(env: dict[str, str], worker: WorkerProcess) -> None:
    # Steps long enough that three `celery inspect` start-ups on a loaded machine still
    # find one running; the run is cancelled at the end, so it holds no worker after.
    started = json.loads(
        cli(env, "run", "probe", "-p", "sleep_ms=10000", "-p", "width=1", "--json").stdout
    )
    run_id = started["id"]
    try:
        deadline = time.monotonic() + 60
        while show(env, run_id)["steps"][0]["status"] in ("pending", "queued"):
            assert time.monotonic() < deadline, "the first step never started"
            time.sleep(0.1)
        for _ in range(3):  # a reply that fell between two steps (or a slow start) asks again
            done = inspect(env, worker, "steps")
            assert done.returncode == 0, done.stderr
            running = json.loads(done.stdout)[worker.name]
            if running:
                break
        # Whichever step of the run is running by the time `celery` has started up.
        assert running[0]["run_id"] == run_id and running[0]["step_key"], running
        assert running[0]["attempt"] == 1 and running[0]["started_at"]
        assert run_id in inspect(env, worker, "active").stdout
    finally:
        cli(env, "cancel", run_id, ok=False)


def inspect(
    env: dict[str, str], worker: WorkerProcess, command: str
) -> subprocess.CompletedProcess[str]:
    """`celery -A reelflow inspect COMMAND --json` against one live worker."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "reelflow",
            "inspect",
            command,
            "--json",
            "-d",
            worker.name,
            "-t",
            "5",
        ],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_wait_prints_the_id_first_then_progress_in_workflow_order(
    env: dict[str, str],
) -> None:
    assert cli(env, "--version").stdout.startswith("reelflow ")
    done = cli(env, "run", "probe", "-p", "width=2", "--wait")
    lines = done.stdout.splitlines()
    assert lines[0].startswith("run ") and "reelflow show" in lines[0], lines[:2]
    run_id = lines[0].split()[1]
    succeeded = [line.split()[1] for line in lines[1:] if " succeeded " in line]
    assert succeeded.index("a") < succeeded.index("b") < succeeded.index("d") < succeeded.index("e")
    assert all(line.split()[0].endswith("s") for line in lines[1:-1])  # elapsed time first
    table = cli(env, "show", run_id).stdout
    order = [k for k in ("a", "b", "c[0]", "c[1]", "d", "e") if f"│ {k} " in table]
    positions = [table.index(f"│ {k} ") for k in order]
    assert order == ["a", "b", "c[0]", "c[1]", "d", "e"] and positions == sorted(positions)
    assert (
        "UTC" in cli(env, "runs").stdout or "+" in cli(env, "runs").stdout
    )  # times say their zone


@pytest.mark.parametrize("command", ["worker", "api"])
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"POOLS": "gpu:two"}, "POOLS"),
        ({"POOLS": "gpu:2,gpu:3"}, "declared twice"),
        ({"POOLS": "gpu:2", "STEP_POOLS": "render_scene=farm"}, "pool 'farm'"),
        ({"POOLS": "gpu:2", "STEP_POOLS": "no_such_step=gpu"}, "no_such_step"),
        ({"POOLS": "gpus:2"}, "pool 'gpus', which no step uses"),  # a typo of gpu
    ],
)
def test_a_pool_the_settings_do_not_declare_refuses_to_start(
    env: dict[str, str], command: str, settings: dict[str, str], message: str
) -> None:
    done = subprocess.run(
        [*REELFLOW, command, *(["--port", "0"] if command == "api" else ["--concurrency", "1"])],
        env={**os.environ, **env, **settings}, cwd=ROOT, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert message in last and "Traceback" not in done.stderr, done.stderr[-2000:]
