"""Logging, set up once per process: every line, reelflow's and its libraries' (Celery,
uvicorn, alembic, SQLAlchemy), goes through structlog's stdlib `ProcessorFormatter`, so a
log shipper gets one format: JSON when not on a terminal (an exception is one field),
console lines on a terminal. Context bound with `structlog.contextvars` (run id, step key,
attempt, request id) is on every line logged while it is bound.

No line carries a secret: tracebacks are rendered without frame locals (where a driver
keeps its connection parameters and a request its headers), and the last step before
rendering masks every known secret and everything shaped like one (`reelflow.redaction`).
Uncaught exceptions of threads and of the process go through the same path.

A worker binds its delivery's run id, step, step key and (once claimed) attempt for the
whole delivery (`bind_delivery`), so Celery's own lines about it carry them too. Outcomes
a run records are not errors: Celery's line for a chord whose member failed for good
(`StepFailed`) or was revoked (a cancel) is one INFO line, without a traceback.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, reset_contextvars

from reelflow.errors import StepFailed
from reelflow.redaction import Redactor
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
    redact = Redactor(settings.secrets())
    # Tracebacks as data (JSON) or text (console), never with frame locals; then masked.
    final: list[structlog.typing.Processor] = (
        [
            structlog.processors.format_exc_info,
            redact,
            structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
        ]
        if fmt == "console"
        else [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            redact,
            structlog.processors.JSONRenderer(),
        ]
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    level = logging.getLevelName(settings.log_level)
    handler.addFilter(ExpectedOutcomes(level))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # Python warnings too, as `py.warnings` lines
    for name in _LIBRARIES:
        library = logging.getLogger(name)
        library.handlers, library.propagate = [], True  # their lines through the same handler
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    _route_uncaught_exceptions()
    _configured = True


#: Libraries that may install handlers of their own (which would write past the redactor):
#: their lines go through the root's handler instead. billiard logs as `multiprocessing`.
_LIBRARIES = (
    "uvicorn", "uvicorn.error", "uvicorn.access", "celery", "alembic", "kombu", "amqp",
    "multiprocessing", "billiard", "sqlalchemy", "sqlalchemy.engine", "botocore", "py.warnings",
)  # fmt: skip

#: What a chord member ends with when its run recorded why: a failure for good, a revoke.
_EXPECTED = (StepFailed.__name__, "TaskRevokedError")


class ExpectedOutcomes(logging.Filter):
    """Celery's backends log a chord one of whose members failed as an ERROR with the
    ChordError's traceback. When that member failed for good (`StepFailed`: the step and
    the run recorded it) or was revoked (the run was cancelled), the line is one INFO line
    without a traceback; a chord failing for any other reason stays an ERROR."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not (record.name.startswith("celery.backends") and exc is not None):
            return True
        cause = exc.__cause__
        if type(exc).__name__ != "ChordError" or type(cause).__name__ not in _EXPECTED:
            return True
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.exc_info, record.exc_text = None, None
        return self.level <= logging.INFO


def bind_delivery(request: Any, **fields: Any) -> None:
    """Bind `fields` to every line logged until the delivery (a Celery task request) ends
    (`unbind_delivery`, at `task_postrun`): Celery logs its outcome after the task's body
    has returned."""
    tokens = bind_contextvars(**fields)
    request.__dict__.setdefault("_reelflow_log_tokens", []).append(tokens)


def unbind_delivery(request: Any) -> None:
    for tokens in reversed(request.__dict__.pop("_reelflow_log_tokens", [])):
        reset_contextvars(**tokens)


def _route_uncaught_exceptions() -> None:
    """A thread or the process dying of an exception logs it like everything else (masked,
    no locals) instead of printing it raw to stderr."""
    crash = structlog.get_logger("reelflow.crash")

    def in_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        thread = args.thread.name if args.thread else "?"
        exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
        crash.error("thread_crashed", thread=thread, exc_info=exc_info)

    def in_process(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, tb)
            return
        crash.critical("process_crashed", exc_info=(kind, value, tb))

    threading.excepthook = in_thread
    sys.excepthook = in_process
