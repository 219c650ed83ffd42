"""`reelflow`: run the service and drive runs from a terminal. Talks to PostgreSQL and the
broker directly, so it works without the API. Every command takes `--json`.

Bad input ends with one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import typer
from typer._click import exceptions as click_errors
from typer.exceptions import Abort, Exit

from reelflow import render
from reelflow.errors import ReelflowError

T = TypeVar("T")
app = typer.Typer(
    name="reelflow",
    help="Durable short-video pipeline on Celery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


@app.callback()
def _setup(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log what happens")] = False,
) -> None:
    """Logs go to stderr (stdout stays clean for --json), warnings only unless -v."""
    from reelflow.logs import configure_logging
    from reelflow.settings import get_settings

    settings = get_settings()
    level = settings.log_level if verbose else "WARNING"
    configure_logging(settings.model_copy(update={"log_level": level}))


class CliError(Exception):
    """An error already phrased for the person at the terminal."""


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def _run_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise CliError(f"{value!r} is not a run id (a UUID)") from None


def _parse_param(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise CliError(f"--param takes key=value, got {item!r}")
    try:
        return key, json.loads(raw)  # numbers, booleans, objects: {"c[2]": 1}
    except json.JSONDecodeError:
        return key, raw


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="bind address (default API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default API_PORT)")] = None,
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from reelflow.settings import get_settings

    settings = get_settings()
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        log_level=settings.log_level.lower(),
    )


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="comma-separated queues")] = "default,gpu",
    concurrency: Annotated[int | None, typer.Option(help="processes (default: CPUs)")] = None,
    hostname: Annotated[str | None, typer.Option(help="worker name, e.g. gpu1@%h")] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "INFO",
) -> None:
    """Run a Celery worker (both queues unless told otherwise)."""
    from reelflow.dev import worker_args

    os.execv(sys.executable, worker_args(queues, concurrency, hostname, loglevel))


@app.command()
def dev(
    demo: Annotated[bool, typer.Option(help="also make a short_video and print its path")] = False,
    host: Annotated[str | None, typer.Option(help="API address (default API_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="API port (default API_PORT)")] = None,
    concurrency: Annotated[int | None, typer.Option(help="worker processes")] = None,
) -> None:
    """Everything on this machine: PostgreSQL, Redis, a worker and the API."""
    from reelflow import dev as devstack
    from reelflow.settings import get_settings

    settings = get_settings()
    devstack.trap_signals()
    try:
        stack = devstack.start(
            settings,
            host=host or settings.api_host,
            port=port or settings.api_port,
            concurrency=concurrency,
        )
    except devstack.Stopped:
        raise typer.Exit(0) from None
    home = settings.reelflow_home
    typer.echo(f"reelflow dev is up (data in {home}, logs in {home / 'logs'})")
    typer.echo(f"  API      {stack.api_url}  (docs at {stack.api_url}/docs)")
    typer.echo(f"  database {stack.env['DATABASE_URL']}")
    typer.echo(f"  redis    {stack.env['REDIS_URL']}")
    code = 0
    try:
        if demo:
            code = _demo(stack)
        else:
            typer.echo("Ctrl-C stops everything.")
            code = devstack.wait_for_signal(stack)
    except devstack.Stopped:
        code = 0
    finally:
        typer.echo("stopping...")
        stack.shutdown()
    raise typer.Exit(code)


def _demo(stack: Any) -> int:
    """Submit a short_video run over HTTP, follow it, print where the video is."""
    import httpx

    from reelflow.follow import follow

    response = httpx.post(
        f"{stack.api_url}/runs", json={"workflow": "short_video", "params": {}}, timeout=30
    )
    if response.status_code != 201:
        raise CliError(f"the API refused the demo run: {response.text}")
    run_id = uuid.UUID(response.json()["id"])
    typer.echo(f"run {run_id}: short_video (30 s, 720x1280)")
    final = _run(follow(run_id))
    if final.status.value != "succeeded":
        typer.echo(f"the demo run {final.status.value}: reelflow show {run_id}", err=True)
        return 1
    steps = httpx.get(f"{stack.api_url}/runs/{run_id}", timeout=30).json()["steps"]
    published = next(s for s in steps if s["key"] == "publish")["output"]
    typer.echo(f"video: {published['video']['path']}")
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
    from workflows.reconciler import reconcile_once, run_forever

    settings = get_settings()
    after = stall_after if stall_after is not None else settings.stall_after_seconds
    if once:
        report = _run(reconcile_once(after))
        if as_json:
            render.emit_json(report)
        else:
            typer.echo(
                f"requeued {len(report.requeued)}, settled {len(report.settled)}, "
                f"waiting on the broker {len(report.waiting)}"
            )
        return
    import tempfile
    from pathlib import Path

    alive = Path(tempfile.gettempdir()) / "reelflow-reconciler.alive"
    _run(run_forever(interval or settings.reconcile_interval_seconds, after, alive))


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Migrate the database to the latest schema (or REVISION)."""
    from db.migrate import upgrade
    from reelflow.settings import get_settings

    upgrade(get_settings().require_database_url(), revision)
    typer.echo(f"database at {revision}")


# The run commands (run, runs, show, history, resume, retry, cancel) live beside this module.
import reelflow.cli_runs  # noqa: E402, F401


def main() -> None:
    try:
        result = app(standalone_mode=False)
        if isinstance(result, int) and result:  # --help and friends return their exit code
            raise SystemExit(result)
    except Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except Abort:
        sys.stderr.write("aborted\n")
        raise SystemExit(130) from None
    except click_errors.NoArgsIsHelpError as exc:
        sys.stdout.write((exc.ctx.get_help() if exc.ctx else "") + "\n")
        raise SystemExit(2) from None
    except click_errors.ClickException as exc:
        sys.stderr.write(f"error: {exc.format_message()}\n")
        raise SystemExit(exc.exit_code) from None
    except (CliError, ReelflowError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(1) from None
    except OSError as exc:  # database or broker unreachable
        sys.stderr.write(f"error: cannot reach a server: {exc}\n")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:  # a bug or an outage: one line here, the details in -v logs
        sys.stderr.write(f"error: {type(exc).__name__}: {exc}\n")
        raise SystemExit(1) from None
