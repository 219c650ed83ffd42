"""The dispatch relay: publishes the outbox's intents and marks them sent.

Every operation that sends messages writes its intent in the transaction that changes the
run (`workflows.runs.operations`), then calls `publish` once it has committed. If that process
dies first, or the broker does not answer, the intent stays unsent and `publish_due` (run
every second by every worker, and by `reelflow reconcile`) publishes it. Task ids are
fixed per (run, step, generation), so publishing an intent twice (a relay that died after
publishing, before marking it sent) sends duplicates the claim protocol absorbs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Literal

import structlog
from celery import Signature
from celery.canvas import maybe_signature

from db import repository as repo
from db.engine import get_engine
from db.repository.outbox import Intent
from db.states import RUN_LIVE, RunStatus
from reelflow import tracing
from reelflow.celery_app import app
from reelflow.settings import get_settings

log = structlog.get_logger("reelflow.relay")

Outcome = Literal["sent", "discarded", "failed", "busy"]


def canvas_to_json(canvas: Signature) -> dict[str, Any]:
    """A canvas as the JSON the outbox stores (Celery signatures are dicts)."""
    return json.loads(json.dumps(canvas))  # type: ignore[no-any-return]


def canvas_from_json(data: dict[str, Any]) -> Signature:
    """The stored canvas as signatures of reelflow's app (Celery leaves nested signatures
    unbound, and an unbound one publishes through whatever `current_app` is)."""
    sig = maybe_signature(data, app=app)
    assert isinstance(sig, Signature)
    return _bind(sig)


def _bind(sig: Signature) -> Signature:
    sig._app = app  # type: ignore[attr-defined]
    kwargs = sig.get("kwargs") or {}
    nested = [*(kwargs.get("tasks") or []), *(kwargs.get("header") or [])]
    if kwargs.get("body") is not None:
        nested.append(kwargs["body"])
    for child in nested:
        if isinstance(child, Signature):
            _bind(child)
    return sig


async def publish(intent_id: int) -> Outcome:
    """Publish one intent now (the writer, right after committing it)."""
    async with get_engine().begin() as conn:
        intent = await repo.lock_intent(conn, intent_id=intent_id)
        if intent is None:
            return "busy"  # sent already, or another relay is publishing it
        return await _relay(conn, intent)


async def publish_due(limit: int = 50) -> dict[str, int]:
    """Publish every intent that is due; returns how many ended which way."""
    tally: dict[str, int] = {}
    async with get_engine().begin() as conn:
        for intent in await repo.lock_due_intents(conn, limit=limit):
            outcome = await _relay(conn, intent)
            tally[outcome] = tally.get(outcome, 0) + 1
            if outcome == "failed":
                break  # the broker is away: leave the rest for the next pass
    return tally


async def _relay(conn: Any, intent: Intent) -> Outcome:
    run_id = str(intent.run_id)
    if intent.run_generation != intent.generation or RunStatus(intent.run_status) not in RUN_LIVE:
        await repo.mark_intent(conn, intent_id=intent.id, outcome="discarded")
        log.info("intent_discarded", run_id=run_id, generation=intent.generation)
        return "discarded"
    try:
        # In the trace of the request that wrote the intent, whoever publishes it.
        with (
            tracing.continued(intent.trace),
            tracing.tracer.start_as_current_span(
                "reelflow.dispatch",
                attributes={
                    **tracing.run_attributes(intent.run_id),
                    "reelflow.generation": intent.generation,
                    "reelflow.reason": intent.reason,
                },
            ),
        ):
            await send(canvas_from_json(intent.canvas))
    except Exception as exc:
        delay = min(30.0, 0.5 * 2**intent.publish_attempts)
        await repo.postpone_intent(conn, intent_id=intent.id, error=repr(exc), delay_s=delay)
        log.warning("intent_publish_failed", run_id=run_id, error=repr(exc), retry_in_s=delay)
        return "failed"
    await repo.mark_intent(conn, intent_id=intent.id, outcome="sent")
    await repo.set_run_status(
        conn,
        run_id=intent.run_id,
        status=RunStatus.RUNNING,
        only_from={RunStatus.PENDING},
        generation=intent.generation,
        started=True,
    )
    log.info("run_dispatched", run_id=run_id, generation=intent.generation, reason=intent.reason)
    return "sent"


async def send(canvas: Signature) -> None:
    """Publish off the event loop; give up after the dispatch timeout (the intent stays
    unsent, and a publish that lands late is a duplicate of the retry, absorbed)."""
    policy = {"max_retries": 2, "interval_start": 0.1, "interval_step": 0.3, "interval_max": 0.5}
    await off_loop(lambda: canvas.apply_async(retry=True, retry_policy=policy))


async def off_loop(fn: Callable[[], Any]) -> Any:
    """Broker calls block: run them in a thread, and give up after the dispatch timeout."""
    timeout = get_settings().dispatch_timeout_seconds
    return await asyncio.wait_for(asyncio.to_thread(fn), timeout=timeout)
