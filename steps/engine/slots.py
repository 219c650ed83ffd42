"""Slot pools at run time: which pool a step uses, waiting for a slot, handing slots over.

A step uses a pool when POOLS declares one named like its queue (`gpu:4`: the gpu steps)
or one it names itself (`@step(pool=...)`). With no slot for it, its delivery parks in
PostgreSQL (`db.pools.park`, with the message to publish again) and is acknowledged: no
worker sits on a message it cannot run. Each time slots may have come free, `hand_over`
grants them by priority, tenant and age, and publishes the granted steps' messages; a
grant whose publish is lost is published again by the workers' maintenance.
"""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from celery import Task
from celery.canvas import maybe_signature

from db import pools
from reelflow.celery_app import app
from reelflow.errors import ConfigError
from reelflow.settings import get_settings
from steps.engine import bridge
from steps.engine.spec import StepSpec

log = structlog.get_logger("reelflow.slots")

#: How long a slot stays reserved for the step it was granted to (its message on the way).
RESERVE_S = 30.0


def pool_of(spec: StepSpec) -> str | None:
    """The pool a step uses under the current settings, if any: STEP_POOLS's choice, else
    the one the step names, else the one named like its queue."""
    settings = get_settings()
    chosen = settings.pools_of_steps().get(spec.name) or spec.pool
    if chosen is not None:
        return chosen
    return spec.queue if spec.queue in settings.pool_sizes() else None


def check_pools(specs: list[StepSpec]) -> None:
    """Refuse to start when a step, or STEP_POOLS, names a pool POOLS does not declare,
    STEP_POOLS names a step that does not exist, or POOLS declares a pool no step would
    use (a typo such as `gpus:4` would otherwise leave the gpu steps unlimited)."""
    settings = get_settings()
    declared = settings.pool_sizes()
    known = ", ".join(sorted(declared)) or "none"
    names = {spec.name for spec in specs}
    queues = {spec.queue for spec in specs}
    usable = queues | {s.pool for s in specs if s.pool} | set(settings.pools_of_steps().values())
    for pool in sorted(declared):
        if pool not in usable:
            raise ConfigError(
                f"POOLS declares pool {pool!r}, which no step uses: a pool is named like a"
                f" step queue ({', '.join(sorted(queues))}) or by a step or STEP_POOLS"
            )
    for step, pool in settings.pools_of_steps().items():
        if step not in names:
            raise ConfigError(f"STEP_POOLS names step {step!r}, which no workflow has")
        if pool not in declared:
            raise ConfigError(
                f"STEP_POOLS puts {step} in pool {pool!r}, which POOLS does not declare"
                f" (declared: {known}); add it, e.g. POOLS={pool}:1"
            )
    for spec in specs:
        chosen = spec.name in settings.pools_of_steps()
        if not chosen and spec.pool is not None and spec.pool not in declared:
            raise ConfigError(
                f"step {spec.name} uses pool {spec.pool!r}, which POOLS does not declare"
                f" (declared: {known}); add it, e.g. POOLS={spec.pool}:1"
            )


def wait_for_slot(task: Task[Any, Any], pool: str, *, step_id: int, run_id: Any, key: str,
                  tenant: str, priority: int, generation: int) -> None:  # fmt: skip
    """Park this delivery in PostgreSQL until the pool grants it a slot, then let a grant
    happen now (a slot may be free with others ahead of it)."""
    request = task.request
    signature = dict(task.signature_from_request(request))
    options = dict(signature.get("options") or {})
    options.pop("redelivered", None)
    signature["options"] = options
    bridge.run_db(
        pools.park, step_id=step_id, run_id=run_id, key=key, pool=pool, tenant=tenant,
        priority=priority, generation=generation, signature=json.loads(json.dumps(signature)),
    )  # fmt: skip
    log.info("step_waiting_for_slot", pool=pool, tenant=tenant, priority=priority)
    hand_over(pool)


def hand_over(pool: str | None = None, *, older_than_s: float = 0.0) -> int:
    """Grant the free slots of `pool` (every declared pool: None) and publish the granted
    steps' messages; returns how many messages went out."""
    settings = get_settings()
    names = [pool] if pool else list(settings.pool_sizes())
    for name in names:
        bridge.run_db(pools.grant, pool=name, reserve_s=RESERVE_S,
                      dead_after_s=settings.worker_dead_after_seconds)  # fmt: skip
    sent = 0
    for name in names:
        grants = bridge.run_db(pools.take_unsent, pool=name, older_than_s=older_than_s)
        for n, grant in enumerate(grants):
            try:
                sig = maybe_signature(grant.signature, app=app)
                assert sig is not None
                sig.apply_async()
            except Exception as exc:  # the broker is away: maintenance publishes it later
                log.warning("slot_grant_not_published", pool=name, error=repr(exc))
                bridge.run_db(pools.unsend, step_ids=[g.step_id for g in grants[n:]])
                break
            sent += 1
    return sent


_handing: tuple[int, ThreadPoolExecutor] | None = None


async def hand_over_from_loop(names: list[str]) -> None:
    """`hand_over_each` from an event loop (the API's, after a cancel or a take-over), on
    one thread of this process's own: the hand-overs of a process use one database
    connection, not one per thread of the loop's default executor, each kept open."""
    global _handing
    if _handing is None or _handing[0] != os.getpid():
        _handing = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="reelflow-slots"))
    await asyncio.get_running_loop().run_in_executor(_handing[1], hand_over_each, names)


def hand_over_each(names: list[str]) -> None:
    """`hand_over` for each pool named, a failure only logged: the workers' maintenance
    hands over what this could not."""
    for name in names:
        try:
            hand_over(name)
        except Exception as exc:
            log.warning("slot_hand_over_failed", pool=name, error=repr(exc))
