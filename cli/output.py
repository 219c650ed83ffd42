"""Terminal output for the CLI: rich tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

# Piped output is not wrapped at 80 columns: a log line or grep should see whole cells.
console = Console(width=None if sys.stdout.isatty() else 200)
STYLE = {
    "succeeded": "green",
    "failed": "red",
    "running": "cyan",
    "retrying": "yellow",
    "queued": "blue",
    "cancelled": "magenta",
    "pending": "dim",
    "lost": "red",
}


def emit_json(value: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    elif isinstance(value, dict):
        data = value
    else:
        data = [v.model_dump(mode="json") for v in value]
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _when(value: datetime | None) -> str:
    """In this machine's zone, and saying which."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if value else "-"


def status_label(value: str) -> str:
    return f"[{STYLE.get(value, 'white')}]{value}[/]"


def _ms(value: float | None) -> str:
    return f"{value:.0f} ms" if value is not None else "-"


def runs_table(runs: Sequence[Any]) -> Table:
    table = Table("run", "workflow", "status", "created", "resumes")
    for r in runs:
        table.add_row(
            str(r.id),
            r.workflow,
            status_label(r.status.value),
            _when(r.created_at),
            str(r.generation),
        )
    return table


def steps_table(steps: Sequence[Any]) -> Table:
    table = Table("step", "queue", "status", "attempts", "duration", "error")
    for s in steps:
        error = (s.error or {}).get("message", "") if s.error else ""
        table.add_row(
            s.key,
            s.queue,
            status_label(s.status.value),
            f"{s.attempts}/{s.max_attempts}",
            _ms(s.duration_ms),
            error[:60],
        )
    return table


def attempts_table(attempts: Sequence[Any]) -> Table:
    table = Table("attempt", "status", "worker", "started", "duration", "error")
    for a in attempts:
        error = f"{a.error_type}: {a.error_message}" if a.error_type else ""
        table.add_row(
            str(a.attempt),
            status_label(a.status),
            a.worker_hostname or "-",
            _when(a.started_at),
            _ms(a.duration_ms),
            error[:70],
        )
    return table


def history_table(entries: Sequence[Any]) -> Table:
    table = Table("when", "what", "step", "by", "detail")
    for e in entries:
        step = f"{e.step} #{e.attempt}" if e.step else "-"
        detail = e.detail.get("message") or json.dumps(e.detail, default=str)
        table.add_row(_when(e.created_at), e.kind, step, e.actor, str(detail)[:70])
    return table


def progress_view(run: Any, steps: Sequence[Any], elapsed_s: float) -> Group:
    """A run in flight: its status, elapsed time and a bar of steps done, over the table."""
    live = [s for s in steps if s.status.value != "superseded"]
    done = sum(1 for s in live if s.status.value == "succeeded")
    bar = Progress(
        TextColumn(f"run {run.id} {status_label(run.status.value)}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(f"steps  {elapsed_s:5.0f}s"),
        console=console,
    )
    bar.add_task("steps", total=max(1, len(live)), completed=done)
    return Group(bar, steps_table(live))
