"""The top-level `reelflow` command: its options, and what every command group shares.

The groups (`cli.service`, `cli.runs`) register their commands on `app`;
`cli.main` runs it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import typer

from reelflow.errors import ReelflowError

T = TypeVar("T")
app = typer.Typer(
    name="reelflow",
    help="Durable short-video pipeline on Celery.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _version(value: bool) -> None:
    if value:
        from reelflow import __version__

        typer.echo(f"reelflow {__version__}")
        raise typer.Exit(0)


@app.callback()
def _setup(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log what happens")] = False,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="print the version"),
    ] = None,
) -> None:
    """Logs go to stderr (stdout stays clean for --json), warnings only unless -v."""
    from reelflow.logs import configure_logging
    from reelflow.settings import get_settings

    settings = get_settings()
    level = settings.log_level if verbose else "WARNING"
    configure_logging(settings.model_copy(update={"log_level": level}))


class CliError(ReelflowError):
    """An error already phrased for the person at the terminal."""

    code = "cli_error"


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def parse_run_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise CliError(f"{value!r} is not a run id (a UUID)") from None


def parse_param(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise CliError(f"--param takes key=value, got {item!r}")
    try:
        return key, json.loads(raw)  # numbers, booleans, objects: {"c[2]": 1}
    except json.JSONDecodeError:
        return key, raw
