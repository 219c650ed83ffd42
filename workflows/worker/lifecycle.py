"""A worker's life, in one place: every Celery signal reelflow's workers answer.

- start (main process): logging, refuse a database behind head, the broker's limits (Redis
  visibility timeout, RabbitMQ's dead-letter queue), stale scratch files swept, the
  worker's identity and first heartbeat (before its pool forks, so every lease names it);
- ready: the maintenance thread (heartbeat, relay, reconciler) starts;
- each pool process: fresh engines and loop after fork, its own lease renewer and tracer;
- shutdown: the maintenance thread stops and the worker's heartbeat row goes;
- every publish: the run id and step key go in the message headers, for monitors;
- every delivery: its run, step and key bound to every line logged while it runs.

Imported by name by `reelflow.celery_app.WORKER_MODULES`, so the ground floor imports
nothing above it.
"""

from __future__ import annotations

import gc
import uuid
from typing import Any

import structlog
from celery.signals import (
    before_task_publish,
    celeryd_init,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from db import repository as repo
from db.engine import dispose_engine, get_engine
from db.migrate import ensure_at_head
from reelflow import broker, tracing
from reelflow.errors import ConfigError, SchemaBehind
from reelflow.logs import bind_delivery, configure_logging, unbind_delivery
from reelflow.settings import get_settings
from reelflow.storage import sweep_scratch
from steps.engine import bridge, slots
from steps.engine.bridge import WorkerIdentity
from steps.engine.lease import LeaseRenewer
from steps.engine.spec import STEP_TASK_PREFIX
from steps.engine.task import STEPS
from workflows.worker.maintenance import Maintenance, beat, forget

log = structlog.get_logger("reelflow.worker")

_maintenance: Maintenance | None = None


@celeryd_init.connect
@setup_logging.connect
def _on_setup_logging(**_: Any) -> None:
    """Celery leaves logging alone when this signal has a receiver: its own lines (`Task ...
    succeeded`, tracebacks) then go through reelflow's structlog formatter as well."""
    configure_logging(get_settings())


@worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    """Checks, then the worker's first heartbeat. A check that fails stops the process:
    Celery only logs what a signal handler raises, and would start the worker anyway."""
    try:
        _start(sender)
    except (ConfigError, SchemaBehind) as exc:
        raise SystemExit(f"reelflow worker: {exc}") from None


def _start(sender: Any) -> None:
    settings = get_settings()
    configure_logging(settings)
    bridge.run(_check_schema())  # refuse to start on a database behind head
    slots.check_pools(list(STEPS.values()))  # a step's pool must be declared
    bridge.run(_sync_slots(settings.pool_sizes()))
    if settings.broker_kind == "redis":
        _check_visibility_timeout(settings.visibility_timeout_seconds)
    else:
        broker.declare_dead_letter_queue()  # where refused messages go
    # What attempts killed with their worker left behind (older than any step may run).
    sweep_scratch(
        settings.scratch_dir, older_than_s=max(86_400, settings.visibility_timeout_seconds)
    )
    if "prefork" not in str(getattr(sender, "pool_cls", "")):
        tracing.install("reelflow-worker")  # solo/threads: tasks run in this process
    # Name this worker before its pool forks, so every lease names the worker that holds
    # it, and record a first heartbeat before any task can run.
    WorkerIdentity.id = uuid.uuid4().hex
    hostname = getattr(sender, "hostname", None) or "worker"
    bridge.run(beat(hostname, _queues(sender)))
    bridge.run(dispose_engine())  # the parent keeps no connection its pool inherits


async def _sync_slots(sizes: dict[str, int]) -> None:
    try:
        async with get_engine().begin() as conn:
            await repo.sync_slots(conn, sizes=sizes)
    finally:
        await dispose_engine()


async def _check_schema() -> None:
    try:
        await ensure_at_head(get_engine())
    finally:
        await dispose_engine()


def _check_visibility_timeout(visibility_timeout: int) -> None:
    """A message must not be redelivered while its step may still legitimately run."""
    for spec in STEPS.values():
        if spec.time_limit and spec.time_limit >= visibility_timeout:
            raise ConfigError(
                f"step {spec.name} may run {spec.time_limit}s, longer than the broker's "
                f"visibility timeout ({visibility_timeout}s): raise VISIBILITY_TIMEOUT_SECONDS"
            )


@worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    global _maintenance
    worker = getattr(sender, "controller", None)
    hostname = getattr(sender, "hostname", None) or "worker"
    _maintenance = Maintenance(hostname, _queues(worker))
    _maintenance.start()


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    if _maintenance is not None:
        _maintenance.stopping.set()
        _maintenance.join(timeout=5)
    try:
        bridge.run(forget())
    except Exception as exc:
        log.warning("worker_not_forgotten", error=repr(exc))


@worker_process_init.connect
def _on_process_init(**_: Any) -> None:
    bridge.after_fork()
    LeaseRenewer.reset()
    configure_logging(get_settings(), force=True)
    tracing.install("reelflow-worker")  # in the child: an export thread of its own
    # Everything imported so far lives as long as the process: keep the collector from
    # rescanning it on every full collection (and from touching copy-on-write pages).
    gc.freeze()


@worker_process_shutdown.connect
def _on_process_shutdown(**_: Any) -> None:
    tracing.flush()


@before_task_publish.connect
def _name_the_step(
    sender: str | None = None, headers: Any = None, body: Any = None, **_: Any
) -> None:
    """Put the run id and step key in the message headers, where monitors look for them."""
    if not sender or not sender.startswith(STEP_TASK_PREFIX) or headers is None:
        return
    args = body[0] if isinstance(body, (list, tuple)) and body else None
    if isinstance(args, (list, tuple)) and len(args) >= 2:
        headers["reelflow_run_id"], headers["reelflow_step_key"] = str(args[0]), str(args[1])
        headers["argsrepr"] = f"run_id={args[0]} step={args[1]}"


@task_prerun.connect
def _bind_delivery(task: Any = None, args: Any = None, kwargs: Any = None, **_: Any) -> None:
    """What the task says its lines carry (`log_fields`: a step's run, step and key), bound
    until `task_postrun`, after Celery's own line about the outcome."""
    fields = getattr(task, "log_fields", None)
    if task is not None and fields is not None:
        bind_delivery(task.request, **fields(list(args or ()), dict(kwargs or {})))


@task_postrun.connect
def _unbind_delivery(task: Any = None, **_: Any) -> None:
    if task is not None:
        unbind_delivery(task.request)


def _queues(worker: Any) -> list[str]:
    try:
        return sorted(q.name for q in worker.app.amqp.queues.consume_from.values())
    except Exception:
        return []
