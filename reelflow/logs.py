"""Logging, set up once per process: every line, reelflow's and its libraries' (Celery,
uvicorn, alembic, SQLAlchemy), goes through structlog's stdlib `ProcessorFormatter`, so a
log shipper gets one format: JSON when not on a terminal (an exception is one field),
console lines on a terminal. Context bound with `structlog.contextvars` (run id, step key,
attempt, request id) is on every line logged while it is bound.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

from reelflow.settings import Settings

_configured = False

#: Extra processors another layer adds to every line (the API adds the request id).
Event = MutableMapping[str, Any]
ENRICHERS: list[Callable[[Any, str, Event], Event]] = []


def _enrich(logger: Any, method: str, event: Event) -> Event:
    for enricher in ENRICHERS:
        event = enricher(logger, method, event)
    return event


def configure_logging(settings: Settings, *, force: bool = False) -> None:
    global _configured
    if _configured and not force:
        return
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        _enrich,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    final: list[structlog.typing.Processor] = (
        [structlog.dev.ConsoleRenderer()]
        if fmt == "console"
        else [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    level = logging.getLevelName(settings.log_level)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # Python warnings too, as `py.warnings` lines
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "alembic"):
        library = logging.getLogger(name)
        library.handlers, library.propagate = [], True  # their lines through the same handler
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    _configured = True
