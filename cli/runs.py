"""`reelflow run | runs | show | history | resume | retry | cancel`: driving runs."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli import output
from cli.app import CliError, JsonOpt, app, parse_param, parse_run_id, run_async


@app.command("run")
def run_cmd(
    workflow: Annotated[str, typer.Argument(help="workflow name, e.g. short_video")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", metavar="KEY=VALUE", help="a param (JSON values too)"),
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(metavar="KEY", help="same key, same run")
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(metavar="STEP=N", help="fail STEP's first N attempts (ALLOW_FAULT_INJECTION)"),
    ] = None,
    wait: Annotated[bool, typer.Option(help="follow the steps until the run ends")] = False,
    cache: Annotated[
        bool, typer.Option(help="--no-cache: every step runs afresh, reusing no earlier result")
    ] = True,
    priority: Annotated[
        int, typer.Option(min=0, max=9, help="0-9: a pool's free slot goes to the highest first")
    ] = 5,
    tenant: Annotated[
        str, typer.Option(help="who the run is for: slots go round-robin across tenants")
    ] = "default",
    as_json: JsonOpt = False,
) -> None:
    """Start a run."""
    import re

    from api.schemas import RunOut
    from api.schemas.runs import TENANT_PATTERN
    from workflows.runs.operations import start_run

    if not re.fullmatch(TENANT_PATTERN, tenant):
        raise CliError(f"--tenant takes 1-100 of A-Z a-z 0-9 . _ -, got {tenant!r}")

    params = dict(parse_param(p) for p in param or [])
    faults = {}
    for key, count in (parse_param(f) for f in fault or []):
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise CliError(f"--fault takes KEY=N with N a whole number, got {key}={count!r}")
        faults[key] = count
    result = run_async(
        start_run(
            workflow,
            params,
            idempotency_key=idempotency_key,
            faults=faults,
            actor="cli",
            cache=cache,
            priority=priority,
            tenant=tenant,
        )
    )
    run_id = result.run.id
    if not wait:
        if as_json:
            output.emit_json(RunOut.of(result.run))
        else:
            typer.echo(f"run {run_id} {result.run.status.value}")
        return
    # The id first, before anything can go wrong: Ctrl-C during the wait loses nothing.
    typer.echo(f"run {run_id} {result.run.status.value}: `reelflow show {run_id}`", err=as_json)
    from cli.follow import follow, published_video

    final = run_async(follow(run_id, quiet=as_json))
    if as_json:
        output.emit_json(RunOut.of(final))
    elif (video := run_async(published_video(run_id))) is not None:
        typer.echo(f"video: {video}")
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

    found = [RunOut.of(r) for r in run_async(go())]
    if as_json:
        output.emit_json(found)
    else:
        output.console.print(output.runs_table(found))


@app.command()
def show(run: Annotated[str, typer.Argument(help="run id")], as_json: JsonOpt = False) -> None:
    """A run and its steps."""
    from api.schemas import RunDetail, RunOut, StepOut
    from cli.follow import in_workflow_order
    from workflows.watch.stream import load

    record, steps = run_async(load(parse_run_id(run)))
    steps = in_workflow_order(record.workflow, steps)
    detail = RunDetail(**RunOut.of(record).model_dump(), steps=[StepOut.of(s) for s in steps])
    if as_json:
        output.emit_json(detail)
        return
    output.console.print(
        f"run {detail.id}  {detail.workflow} v{detail.workflow_version}  "
        f"{output.status_label(detail.status.value)}  generation {detail.generation}"
    )
    if detail.error:
        output.console.print(f"error: {detail.error.get('message')}", markup=False)
    output.console.print(output.steps_table(detail.steps))


@app.command()
def history(
    run: Annotated[str, typer.Argument(help="run id")],
    step: Annotated[
        str | None, typer.Argument(help="step key, e.g. render_scene[1]: its attempts")
    ] = None,
    traceback: Annotated[bool, typer.Option(help="print each failure's traceback")] = False,
    as_json: JsonOpt = False,
) -> None:
    """What happened to a run and who did it (actions; steps failed, retrying or lost); with
    STEP, that step's attempts."""
    from api.schemas import AttemptOut, EventOut
    from cli.follow import attempts, run_history

    if step is None:
        entries = [EventOut.model_validate(e) for e in run_async(run_history(parse_run_id(run)))]
        if as_json:
            output.emit_json(entries)
        else:
            output.console.print(output.history_table(entries))
        return
    found = [AttemptOut.of(a) for a in run_async(attempts(parse_run_id(run), step))]
    if as_json:
        output.emit_json(found)
        return
    output.console.print(output.attempts_table(found))
    if traceback:
        for a in found:
            if a.traceback:
                output.console.print(f"--- attempt {a.attempt}\n{a.traceback}", markup=False)


def _operation_output(result: Any, as_json: bool) -> None:
    from api.schemas import PlanOut, RunOut
    from workflows.runs.plans import Plan

    if isinstance(result, Plan):
        plan = PlanOut(
            run_id=result.run_id,
            operation=result.operation,
            run=result.run,
            skip=result.skip,
            stops=result.stops,
        )
        if as_json:
            output.emit_json(plan)
        else:
            typer.echo(f"would run: {', '.join(plan.run) or 'nothing'}")
            for key, why in plan.skip.items():
                typer.echo(f"  skip {key}: {why}")
            for key in plan.stops:
                typer.echo(f"  stop {key}: still in flight from before; it runs again")
        return
    if as_json:
        output.emit_json(RunOut.of(result))
    else:
        typer.echo(f"run {result.id} {result.status.value}")


def _then_wait(result: Any, wait: bool) -> None:
    """With --wait, follow the run it started until it ends: exit 0 only if it succeeded."""
    from cli.follow import follow
    from workflows.runs.plans import Plan

    if wait and not isinstance(result, Plan):
        final = run_async(follow(result.id))
        raise typer.Exit(0 if final.status.value == "succeeded" else 1)


WaitOpt = Annotated[bool, typer.Option(help="follow the steps until the run ends")]


@app.command()
def resume(
    run: Annotated[str, typer.Argument(help="run id")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show the plan only")] = False,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run every step of a failed or cancelled run that has not succeeded."""
    from workflows.runs.operations import resume_run

    result = run_async(resume_run(parse_run_id(run), actor="cli", dry_run=dry_run))
    _operation_output(result, as_json)
    _then_wait(result, wait and not as_json)


@app.command()
def retry(
    run: Annotated[str, typer.Argument(help="run id")],
    step: Annotated[str, typer.Argument(help="step key")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show the plan only")] = False,
    wait: WaitOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Rerun one step and everything downstream of it."""
    from workflows.runs.operations import retry_step

    result = run_async(retry_step(parse_run_id(run), step, actor="cli", dry_run=dry_run))
    _operation_output(result, as_json)
    _then_wait(result, wait and not as_json)


@app.command()
def cancel(run: Annotated[str, typer.Argument(help="run id")], as_json: JsonOpt = False) -> None:
    """Cancel a run: its queued and running steps stop."""
    from workflows.runs.operations import cancel_run

    _operation_output(run_async(cancel_run(parse_run_id(run), actor="cli")), as_json)
