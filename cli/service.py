"""`reelflow api | worker | dev | reconcile | db upgrade`: running the service."""

from __future__ import annotations

import os
import sys
import uuid
from typing import Annotated, Any

import typer

from cli import output
from cli.app import CliError, JsonOpt, app, db_app, run_async


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="bind address (default API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default API_PORT)")] = None,
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from reelflow.logs import configure_logging
    from reelflow.settings import get_settings

    if host:  # the app decides which Host names it answers to from where it listens
        os.environ["API_HOST"] = host
        get_settings.cache_clear()
    settings = get_settings()
    configure_logging(settings, force=True)
    from api.app import all_workflows_steps
    from steps.engine import slots

    slots.check_pools(all_workflows_steps())  # refused here in one line, not in a traceback
    proxies = settings.trusted_proxies.strip()
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=settings.api_host,
        port=port or settings.api_port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's lines go through reelflow's formatter
        access_log=False,  # the API logs each request itself, with its request id
        # X-Forwarded-For names the client only when a trusted proxy sent it; by default
        # no forwarding header is believed (uvicorn's own default trusts 127.0.0.1).
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or "",
    )


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="comma-separated queues")] = "default,gpu",
    concurrency: Annotated[int | None, typer.Option(help="processes (default: CPUs)")] = None,
    hostname: Annotated[str | None, typer.Option(help="worker name, e.g. gpu1@%h")] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "INFO",
) -> None:
    """Run a Celery worker (both queues unless told otherwise)."""
    from cli.processes import worker_args

    os.execv(sys.executable, worker_args(queues, concurrency, hostname, loglevel))


@app.command()
def dev(
    demo: Annotated[bool, typer.Option(help="also make a short_video and print its path")] = False,
    host: Annotated[str | None, typer.Option(help="API address (default API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="API port (default API_PORT)")] = None,
    concurrency: Annotated[int | None, typer.Option(help="worker processes")] = None,
    allow_fault_injection: Annotated[
        bool | None,
        typer.Option(
            "--allow-fault-injection/--no-fault-injection",
            help="honour `--fault` (default: ALLOW_FAULT_INJECTION, else allowed)",
        ),
    ] = None,
) -> None:
    """Everything on this machine: PostgreSQL, Redis, a worker and the API. Commands started
    in the same folder while it runs use its servers."""
    from cli import devstack as devstack
    from reelflow.settings import get_settings

    settings = get_settings()
    devstack.trap_signals()
    stack = None
    code = 0
    # One try from the trap on: a SIGTERM at any point (mid-start, mid-banner, while
    # waiting) unwinds into the same shutdown and exits 0.
    try:
        stack = devstack.start(
            settings,
            host=host or settings.api_host,
            port=port or settings.api_port,
            concurrency=concurrency,
            allow_faults=allow_fault_injection,
        )
        home = settings.reelflow_home
        typer.echo(f"reelflow dev is up (data in {home}, logs in {home / 'logs'})")
        typer.echo(f"  UI       {stack.api_url}/ui  (runs, steps, workers)")
        typer.echo(f"  API      {stack.api_url}  (docs at {stack.api_url}/docs and /redoc)")
        typer.echo(f"  database {stack.env['DATABASE_URL']}")
        typer.echo(f"  redis    {stack.env['REDIS_URL']}")
        if demo:
            code = _demo(stack)
        else:
            typer.echo("Ctrl-C stops everything.")
            code = devstack.wait_for_signal(stack)
    except devstack.Stopped:
        code = 0
    finally:
        if stack is not None:
            stack.shutdown()
    raise typer.Exit(code)


def _demo(stack: Any) -> int:
    """Submit a short_video run over HTTP, follow it, print where the video is."""
    import httpx

    from cli.follow import follow

    tokens = list(stack.settings.tokens())  # with API_TOKEN set, the demo uses it
    auth = {"Authorization": f"Bearer {tokens[0]}"} if tokens else {}
    response = httpx.post(
        f"{stack.api_url}/runs",
        json={"workflow": "short_video", "params": {}},
        headers={"X-Requested-With": "reelflow", **auth},
        timeout=30,
    )
    if response.status_code not in (201, 202):
        raise CliError(f"the API refused the demo run: {response.text}")
    run_id = uuid.UUID(response.json()["id"])
    typer.echo(f"run {run_id}: short_video (30 s, 720x1280)")
    final = run_async(follow(run_id))
    if final.status.value != "succeeded":
        typer.echo(f"the demo run {final.status.value}: reelflow show {run_id}", err=True)
        return 1
    steps = httpx.get(f"{stack.api_url}/runs/{run_id}", headers=auth, timeout=30).json()["steps"]
    published = next(s for s in steps if s["key"] == "publish")["output"]
    typer.echo(f"video: {published['video']['path']}")
    # The stack stops when the demo ends; its data stays for the next start.
    typer.echo(
        f"to look at the run: .venv/bin/reelflow dev, then open {stack.api_url}/ui/runs/{run_id}"
    )
    return 0


@app.command()
def reconcile(
    once: Annotated[bool, typer.Option(help="one pass, then exit (for cron)")] = False,
    interval: Annotated[float | None, typer.Option(help="seconds between passes")] = None,
    stall_after: Annotated[float | None, typer.Option(help="seconds without progress")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Requeue stalled runs (lost messages, dead workers) and settle finished ones."""
    from reelflow.settings import get_settings
    from workflows.recovery.reconciler import reconcile_once, run_forever

    settings = get_settings()
    after = stall_after if stall_after is not None else settings.stall_after_seconds
    if once:
        report = run_async(reconcile_once(after))
        if as_json:
            output.emit_json(report)
        else:
            typer.echo(
                f"requeued {len(report.requeued)}, settled {len(report.settled)}, "
                f"waiting on the broker {len(report.waiting)}"
            )
        return
    import tempfile
    from pathlib import Path

    alive = Path(tempfile.gettempdir()) / "reelflow-reconciler.alive"
    run_async(run_forever(interval or settings.reconcile_interval_seconds, after, alive))


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Migrate the database to the latest schema (or REVISION)."""
    from db.migrate import migration_url, upgrade

    upgrade(migration_url(), revision)
    typer.echo(f"database at {revision}")


@app.command()
def prune(
    older_than: Annotated[str, typer.Option(help="age, e.g. 30d, 12h")] = "30d",
    yes: Annotated[bool, typer.Option("--yes", help="delete (without it: a dry run)")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete runs that finished before OLDER_THAN ago, with their history and artifacts,
    and the uploaded assets older than that which no remaining run names.

    Without --yes it only says what it would delete."""
    from workflows.runs.retention import prune as prune_runs

    report = run_async(prune_runs(older_than, dry_run=not yes))
    if as_json:
        output.emit_json(report)
        return
    verb = "would delete" if report.dry_run else "deleted"
    typer.echo(
        f"{verb} {report.runs} runs finished before {report.before:%Y-%m-%d %H:%M %Z}"
        f" ({report.steps} steps, {report.attempts} attempts, {report.artifacts} artifacts)"
        f" and {report.assets} unused assets"
        f"{'' if yes else '; run again with --yes to delete them'}"
    )
