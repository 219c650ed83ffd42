"""Input keys against real PostgreSQL, Redis and workers: the key the claim computes in SQL
is the key Python computes from the same digests; a deploy that changes a step's module
reuses nothing; two executions of one key at once compute it once; a miss says what
changed; a run that reused another's files keeps them when that run is pruned, even when
the reuse races the prune."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from db import repository as repo
from db.engine import get_engine
from db.states import RunStatus, StepStatus
from steps.engine import keys
from tests.support import (
    ROOT,
    WorkerProcess,
    attempt_rows,
    patched_environment,
    run_row,
    step_rows,
    wait_run,
    wait_step,
)
from workflows.runs import retention
from workflows.runs.operations import start_run

pytestmark = pytest.mark.slow

MODULE = "keyed_steps"
SOURCE = textwrap.dedent(
    '''
    """A tiny workflow whose module a test rewrites, as a deploy would."""
    import os
    import time

    from pydantic import BaseModel

    from reelflow.errors import TransientStepError
    from steps import RetryPolicy, StepContext, step
    from workflows.definition.registry import register
    from workflows.definition.spec import chain
    from workflows.definition.workflow import Workflow


    class Params(BaseModel):
        n: int = 1
        sleep_ms: int = 0
        label: str = ""
        flaky: str = ""  # a path: the step's very first execution fails (transiently)


    class Out(BaseModel):
        value: int


    class Artifacted(BaseModel):
        value: int
        blob: object


    @step(retry=RetryPolicy(max_attempts=3, backoff_base=6.0, jitter=False))
    def keyed_one(params: Params) -> Out:
        if params.flaky and not os.path.exists(params.flaky):
            open(params.flaky, "w").close()
            raise TransientStepError("the first call fails")
        time.sleep(params.sleep_ms / 1000)
        return Out(value=params.n + 1)


    @step()
    def keyed_two(ctx: StepContext, keyed_one: Out) -> Artifacted:
        with ctx.artifact("blob.txt") as blob:
            blob.path.write_text(str(keyed_one.value))
        return Artifacted(value=keyed_one.value * 2, blob=blob.artifact.model_dump())


    register(Workflow(name="keyed", version=1, canvas=chain(keyed_one, keyed_two),
                      params_model=Params))
    # MARK
    '''
)


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("deploy")
    (folder / f"{MODULE}.py").write_text(SOURCE)
    return folder


@pytest.fixture(scope="module")
def stack(env: dict[str, str], code: Path) -> dict[str, str]:
    """The module's environment plus the deployable workflow module."""
    path = os.pathsep.join([str(code), str(ROOT)])
    return {**env, "PYTHONPATH": path, "WORKFLOW_MODULES": f"tests.workflows,{MODULE}"}


@pytest.fixture(scope="module")
def keyed_worker(
    stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    proc = WorkerProcess(stack, tmp_path_factory.mktemp("kw") / "worker.log", name="keyed")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def _start(stack: dict[str, str], **params: object) -> uuid.UUID:
    """`reelflow run` in a process of its own: it imports the workflow module as deployed
    now (this process's copy would be the old code)."""
    args = [sys.executable, "-m", "reelflow", "run", "keyed", "--json"]
    for name, value in params.items():
        args += ["-p", f"{name}={json.dumps(value)}"]
    done = subprocess.run(args, env={**os.environ, **stack}, cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return uuid.UUID(json.loads(done.stdout)["id"])


async def _attempts(run_id: uuid.UUID) -> dict[str, int]:
    return {k: s.attempts for k, s in (await step_rows(run_id)).items()}


async def test_the_claims_key_is_the_key_python_computes(
    stack: dict[str, str], keyed_worker: WorkerProcess
) -> None:
    run_id = _start(stack, n=41, label="agree")
    assert (await wait_run(run_id, worker=keyed_worker)).status is RunStatus.SUCCEEDED
    steps, run = await step_rows(run_id), await run_row(run_id)
    two = steps["keyed_two"]
    parts = two.key_parts or {}
    expected = keys.input_key(
        step="keyed_two", code_version=parts["code"], params_digest=run.param_digests["keyed_two"],
        item_digest=None, inputs={"keyed_one": steps["keyed_one"].output_digest or ""},
    )  # fmt: skip
    assert two.input_key == expected
    assert steps["keyed_one"].output_digest == keys.digest(steps["keyed_one"].output)
    assert [a.input_key for a in await attempt_rows(run_id, "keyed_two")] == [expected]


async def test_a_deploy_that_changes_a_steps_module_reuses_nothing(
    stack: dict[str, str], keyed_worker: WorkerProcess, code: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:  # fmt: skip
    first = _start(stack, n=7)
    assert (await wait_run(first, worker=keyed_worker)).status is RunStatus.SUCCEEDED
    again = _start(stack, n=7)  # the same code and params: everything reused at dispatch
    assert (await wait_run(again, timeout=30)).status is RunStatus.SUCCEEDED
    assert await _attempts(again) == {"keyed_one": 0, "keyed_two": 0}
    origin = (await step_rows(again))["keyed_two"].reused_from
    assert origin["run_id"] == str(first) and origin["step_key"] == "keyed_two"
    assert origin["attempt"] == 1

    keyed_worker.stop()  # a deploy: the module changes, the workers restart
    (code / f"{MODULE}.py").write_text(SOURCE.replace("# MARK", "# MARK: deployed again"))
    keyed_worker.start()
    after = _start(stack, n=7)
    assert (await wait_run(after, worker=keyed_worker)).status is RunStatus.SUCCEEDED
    assert await _attempts(after) == {"keyed_one": 1, "keyed_two": 1}  # 0 reuses
    misses = [json.loads(line) for line in keyed_worker.log.read_text().splitlines()
              if '"step_cache_miss"' in line and str(after) in line]  # fmt: skip
    assert misses and all("code" in m["changed"] for m in misses), misses


def _in_process(code: Path) -> None:
    """This process imports the deployable module too (for runs started from here)."""
    if str(code) not in sys.path:
        sys.path.insert(0, str(code))


async def test_two_executions_of_one_key_at_once_compute_it_once(
    stack: dict[str, str], keyed_worker: WorkerProcess, code: Path
) -> None:
    """The second waits while the first computes (its step stays queued), then reuses."""
    _in_process(code)
    params = {"n": 99, "sleep_ms": 1500, "label": "twins"}
    with patched_environment({"WORKFLOW_MODULES": f"tests.workflows,{MODULE}"}):
        first = (await start_run("keyed", params)).run.id
        await wait_step(first, "keyed_one", lambda s: s.status is StepStatus.RUNNING)
        second = (await start_run("keyed", params)).run.id
    for run_id in (first, second):
        assert (await wait_run(run_id, worker=keyed_worker)).status is RunStatus.SUCCEEDED
    assert len(await attempt_rows(first, "keyed_one")) == 1
    assert await attempt_rows(second, "keyed_one") == []  # not computed twice
    reused = (await step_rows(second))["keyed_one"].reused_from
    assert reused and reused["run_id"] == str(first)
    assert '"step_awaiting_same_key"' in keyed_worker.log.read_text()


async def test_a_step_waiting_to_retry_reuses_a_result_computed_meanwhile(
    stack: dict[str, str], keyed_worker: WorkerProcess, code: Path, tmp_path: Path
) -> None:
    """Its first attempt failed (transiently); before its retry runs, another run computes
    the same key: the retry reuses that result instead of running."""
    _in_process(code)
    flaky = tmp_path / "first-call-fails"
    params = {"n": 5, "label": "flaky", "flaky": str(flaky)}
    with patched_environment({"WORKFLOW_MODULES": f"tests.workflows,{MODULE}"}):
        first = (await start_run("keyed", params)).run.id
        await wait_step(first, "keyed_one", lambda s: s.status is StepStatus.RETRYING)
        second = (await start_run("keyed", params)).run.id
    for run_id in (second, first):
        assert (await wait_run(run_id, worker=keyed_worker)).status is RunStatus.SUCCEEDED
    one = (await step_rows(first))["keyed_one"]
    assert [a.status for a in await attempt_rows(first, "keyed_one")] == ["retrying"]
    assert one.reused_from and one.reused_from["run_id"] == str(second)


async def test_pruning_the_run_that_produced_a_result_keeps_the_files_others_reuse(
    stack: dict[str, str], keyed_worker: WorkerProcess
) -> None:
    producer = _start(stack, n=3, label="shared")
    assert (await wait_run(producer, worker=keyed_worker)).status is RunStatus.SUCCEEDED
    user = _start(stack, n=3, label="shared")
    assert (await wait_run(user, timeout=30)).status is RunStatus.SUCCEEDED
    blob = (await step_rows(user))["keyed_two"].output["blob"]
    assert blob["key"].startswith(f"{producer}/")  # referenced, not copied
    await asyncio.sleep(0.05)
    report = await retention.prune_selected([producer], before=datetime.now(UTC),
                                            older_than="0s")  # fmt: skip
    assert report.runs == 1
    assert Path(blob["path"]).read_text() == "4"  # still there: the user refers to it
    later = _start(stack, n=3, label="shared")  # the cached result still stands
    assert (await wait_run(later, timeout=30)).status is RunStatus.SUCCEEDED
    assert (await step_rows(later))["keyed_two"].output["blob"]["key"] == blob["key"]
    await asyncio.sleep(0.05)
    await retention.prune_selected([user, later], before=datetime.now(UTC), older_than="0s")
    assert not Path(blob["path"]).exists()  # the last user gone: the file goes
    fresh = _start(stack, n=3, label="shared")  # and nothing reuses what was deleted
    assert (await wait_run(fresh, worker=keyed_worker)).status is RunStatus.SUCCEEDED
    # keyed_one's result has no files: it stands; keyed_two's went with its file
    assert await _attempts(fresh) == {"keyed_one": 0, "keyed_two": 1}


async def _waiting_on_a_lock(pattern: str) -> bool:
    async with get_engine().connect() as conn:
        found = await conn.execute(
            text(
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE :pattern"
            ),
            {"pattern": pattern},
        )
        return found.first() is not None


async def test_a_reuse_in_flight_when_prune_decides_keeps_its_files(
    stack: dict[str, str], keyed_worker: WorkerProcess
) -> None:
    """A reuse has read the producer's result but not yet committed its refs when prune
    of the producer decides which files go: prune waits for it, then keeps the file."""
    producer = _start(stack, n=11, label="racing")
    assert (await wait_run(producer, worker=keyed_worker)).status is RunStatus.SUCCEEDED
    user = _start(stack, n=12, label="racing")  # any other run: it will refer to the file
    assert (await wait_run(user, worker=keyed_worker)).status is RunStatus.SUCCEEDED
    two = (await step_rows(producer))["keyed_two"]
    blob = two.output["blob"]
    await asyncio.sleep(0.05)
    async with get_engine().begin() as reusing:
        found = await repo.find_result(
            reusing, workflow="keyed", step="keyed_two", input_key=two.input_key or ""
        )
        assert found is not None and blob["key"] in found.artifacts
        pruning = asyncio.create_task(
            retention.prune_selected([producer], before=datetime.now(UTC), older_than="0s")
        )
        for _ in range(200):  # until prune waits for this reuse (or, unguarded, is done)
            if pruning.done() or await _waiting_on_a_lock("DELETE FROM step_results%"):
                break
            await asyncio.sleep(0.05)
        await repo.add_refs(reusing, run_id=user, keys=found.artifacts)
    report = await pruning
    assert report.runs == 1
    assert Path(blob["path"]).read_text() == "12"  # the reuse that won the race has it
    async with get_engine().connect() as conn:  # and the cache no longer offers it
        assert (
            await repo.find_result(
                conn, workflow="keyed", step="keyed_two", input_key=two.input_key or ""
            )
            is None
        )
