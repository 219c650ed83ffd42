"""`reelflow revise`: change a run (a param, a step's output), audited, and rerun exactly
what the change touches; `--dry-run` prints the plan and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli import output
from cli.app import CliError, JsonOpt, app, parse_param, parse_run_id, run_async


def _output_of(item: str) -> tuple[str, Any]:
    """`KEY=@file.json` (or `KEY=<json>`): a replacement output."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise CliError(f"--output takes KEY=@file.json, got {item!r}")
    text = raw
    if raw.startswith("@"):
        path = Path(raw[1:])
        if not path.is_file():
            raise CliError(f"--output {key}: no file {path}")
        text = path.read_text("utf-8")
    try:
        return key, json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"--output {key}: not JSON ({exc.msg}, line {exc.lineno})") from None


@app.command()
def revise(
    run: Annotated[str, typer.Argument(help="the run's id")],
    reason: Annotated[str, typer.Option(help="why (recorded with the revision)")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", metavar="KEY=VALUE", help="patch a param (null removes it)"),
    ] = None,
    output_: Annotated[
        list[str] | None,
        typer.Option("--output", metavar="KEY=@FILE.json", help="replace a step's output"),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="print the plan; change nothing")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Revise a run: the steps whose input keys change rerun, the rest keep their results."""
    from workflows.runs.revise import revise_run

    run_id = parse_run_id(run)
    patch = dict(parse_param(p) for p in param or [])
    outputs = dict(_output_of(o) for o in output_ or [])
    if not reason.strip():
        raise CliError("--reason must say why")
    plan, after = run_async(
        revise_run(
            run_id, params_patch=patch, outputs=outputs, reason=reason, actor="cli", dry_run=dry_run
        )
    )
    if as_json:
        output.emit_json({**plan.model_dump(mode="json"), "status": after.status.value})
        return
    head = "would rerun" if dry_run else f"revision {plan.revision}: rerunning"
    typer.echo(f"{head}: {', '.join(plan.rerun) or 'nothing'}")
    for key, why in plan.rerun.items():
        typer.echo(f"  {key}: {why}")
    if plan.edited:
        typer.echo(f"outputs replaced: {', '.join(plan.edited)}")
    typer.echo(f"kept: {len(plan.reuse)} step(s)")
