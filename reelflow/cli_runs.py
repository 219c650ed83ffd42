"""`reelflow run | runs | show | history | resume | retry | cancel`: driving runs."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from reelflow import render
from reelflow.cli import CliError, JsonOpt, _parse_param, _run, _run_id, app


@app.command("run")
def run_cmd(
    workflow: Annotated[str, typer.Argument(help="workflow name, e.g. short_video")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="key=value")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="same key, same run")] = None,
    wait: Annotated[bool, typer.Option(help="follow the steps until the run ends")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Start a run."""
    from api.schemas import RunOut
    from workflows.operations import start_run

    params = dict(_parse_param(p) for p in param or [])
    result = _run(start_run(workflow, params, idempotency_key=idempotency_key, actor="cli"))
    if not wait:
        if as_json:
            render.emit_json(RunOut.of(result.run))
        else:
            typer.echo(f"run {result.run.id} {result.run.status.value}")
        return
    from reelflow.follow import follow

    final = _run(follow(result.run.id, quiet=as_json))
    if as_json:
        render.emit_json(RunOut.of(final))
    raise typer.Exit(0 if final.status.value == "succeeded" else 1)


@app.command()
def runs(
    status: Annotated[str | None, typer.Option(help="pending, running, succeeded, ...")] = None,
    workflow: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List runs, newest first."""
    from api.schemas import RunOut
    from db import repository as repo
    from db.engine import get_engine
    from db.states import RunStatus

    try:
        wanted = RunStatus(status) if status else None
    except ValueError:
        raise CliError(f"unknown status {status!r}") from None

    async def go() -> list[Any]:
        async with get_engine().connect() as conn:
            return await repo.list_runs(conn, status=wanted, workflow=workflow, limit=limit)

    found = [RunOut.of(r) for r in _run(go())]
    if as_json:
        render.emit_json(found)
    else:
        render.console.print(render.runs_table(found))


@app.command()
def show(run: Annotated[str, typer.Argument(help="run id")], as_json: JsonOpt = False) -> None:
    """A run and its steps."""
    from api.schemas import RunDetail, RunOut, StepOut
    from reelflow.follow import load

    record, steps = _run(load(_run_id(run)))
    detail = RunDetail(**RunOut.of(record).model_dump(), steps=[StepOut.of(s) for s in steps])
    if as_json:
        render.emit_json(detail)
        return
    render.console.print(
        f"run {detail.id}  {detail.workflow} v{detail.workflow_version}  "
        f"{render._status(detail.status.value)}  resumes {detail.resume_count}"
    )
    if detail.error:
        render.console.print(f"error: {detail.error.get('message')}", markup=False)
    render.console.print(render.steps_table(detail.steps))


@app.command()
def history(
    run: Annotated[str, typer.Argument(help="run id")],
    step: Annotated[str, typer.Argument(help="step key, e.g. render_scene[1]")],
    traceback: Annotated[bool, typer.Option(help="print each failure's traceback")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The attempt history of one step."""
    from api.schemas import AttemptOut
    from reelflow.follow import attempts

    found = [AttemptOut.of(a) for a in _run(attempts(_run_id(run), step))]
    if as_json:
        render.emit_json(found)
        return
    render.console.print(render.attempts_table(found))
    if traceback:
        for a in found:
            if a.traceback:
                render.console.print(f"--- attempt {a.attempt}\n{a.traceback}", markup=False)


def _operation_output(result: Any, as_json: bool) -> None:
    from api.schemas import PlanOut, RunOut
    from workflows.operations import Plan

    if isinstance(result, Plan):
        plan = PlanOut(
            run_id=result.run_id, operation=result.operation, run=result.run, skip=result.skip
        )
        if as_json:
            render.emit_json(plan)
        else:
            typer.echo(f"would run: {', '.join(plan.run) or 'nothing'}")
            for key, why in plan.skip.items():
                typer.echo(f"  skip {key}: {why}")
        return
    if as_json:
        render.emit_json(RunOut.of(result))
    else:
        typer.echo(f"run {result.id} {result.status.value}")


@app.command()
def resume(
    run: Annotated[str, typer.Argument(help="run id")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show the plan only")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run every step of a failed or cancelled run that has not succeeded."""
    from workflows.operations import resume_run

    _operation_output(_run(resume_run(_run_id(run), actor="cli", dry_run=dry_run)), as_json)


@app.command()
def retry(
    run: Annotated[str, typer.Argument(help="run id")],
    step: Annotated[str, typer.Argument(help="step key")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show the plan only")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Rerun one step and everything downstream of it."""
    from workflows.operations import retry_step

    _operation_output(_run(retry_step(_run_id(run), step, actor="cli", dry_run=dry_run)), as_json)


@app.command()
def cancel(run: Annotated[str, typer.Argument(help="run id")], as_json: JsonOpt = False) -> None:
    """Cancel a run: its queued and running steps stop."""
    from workflows.operations import cancel_run

    _operation_output(_run(cancel_run(_run_id(run), actor="cli")), as_json)
