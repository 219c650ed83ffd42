"""What monitors (Flower, `celery events`) are told about deliveries that end without a
result: Celery sends no event for a task that raises `Ignore` or replaces itself, so
without one it would show as STARTED for ever.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task

log = structlog.get_logger("reelflow.monitor")


def announce(task: Task[Any, Any], what: str, **fields: Any) -> None:
    """Send `task-<what>` for this delivery (Flower shows the custom state `<WHAT>`).

    Best effort: a monitor that misses it is worse off, the run is not."""
    if task.request.called_directly or not task.request.hostname:
        return
    try:
        task.send_event(f"task-{what}", retry=False, **fields)
    except Exception as exc:
        log.debug("event_not_sent", event=what, error=repr(exc))
