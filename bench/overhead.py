"""What does durability cost? The same work as raw Celery no-op tasks and as reelflow steps.

A 200-step chain and a 500-wide chord, each run both ways on the same broker, database and
worker, interleaved round by round so machine noise hits both alike. Raw runs are awaited
on their final result (Redis backend); durable runs on their run row in PostgreSQL, which
is where reelflow keeps outcomes (steps outside chord headers store no Celery result).
Run creation (inserting the step rows) counts toward the durable time. Prints one JSON
line last.

The durable runs go twice each round: straight to PostgreSQL, and through a PgBouncer in
transaction mode that the bench starts (DATABASE_POOLER=transaction: no statement cache,
the timeouts with each BEGIN, the claim protocol's calls in a transaction each), each on a
worker of its own while the other's consumers are cancelled; `pooled_vs_direct` is their
ratio. Skipped (null) where pgbouncer is not installed.

    python bench/overhead.py [--rounds 3]

Uses DATABASE_URL / REDIS_URL when set, the embedded servers otherwise; with
CELERY_BROKER_URL=amqp://... the broker is RabbitMQ (Redis stays the result backend).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench.harness import bench_servers, finished, profiled_worker, worker

#: What a durable step spends in the worker, by part: the functions whose cumulative time
#: makes each part (cProfile's (file suffix, function name) keys).
PARTS = {
    "claim": [("db/claims.py", "claim")],
    "key": [("steps/engine/keys.py", "digest"), ("steps/engine/keys.py", "artifact_keys"),
            ("steps/engine/keys.py", "changed_parts")],
    "complete": [("db/outcomes.py", "complete")],
    "canvas": [("celery/canvas.py", "apply_async")],
    "broker": [("kombu/messaging.py", "publish")],
    "whole_task": [("celery/app/trace.py", "trace_task")],
}  # fmt: skip


def profile_breakdown(tmp: Path, durable: Callable[[str], float], steps: int) -> dict[str, float]:
    """Run the durable chain again on a solo worker under cProfile and split a step's
    worker time into its parts (canvas includes the broker's publish)."""
    import pstats

    out = tmp / "worker.prof"
    with profiled_worker(tmp, out, include="bench.overhead_tasks"):
        durable("bench_chain")
    stats = pstats.Stats(str(out))
    cumulative: dict[tuple[str, str], float] = {}
    for (filename, _line, name), row in stats.stats.items():  # type: ignore[attr-defined]
        for part, wanted in PARTS.items():
            for suffix, function in wanted:
                if name == function and filename.endswith(suffix):
                    cumulative[(part, suffix)] = cumulative.get((part, suffix), 0.0) + row[3]
    per_part = {
        part: round(sum(v for (p, _), v in cumulative.items() if p == part) / steps * 1000, 3)
        for part in PARTS
    }  # fmt: skip
    return per_part


def consume(*, only: str, not_: str) -> None:
    """Let worker `only` take the step queues, and worker `not_` not (remote control)."""
    from reelflow.celery_app import QUEUES, app

    host = socket.gethostname()
    for queue in QUEUES:
        app.control.cancel_consumer(queue, destination=[not_.replace("%h", host)], reply=True)
        app.control.add_consumer(queue, destination=[only.replace("%h", host)], reply=True)


@contextmanager
def pooled_variant(tmp: Path, name: str, direct_worker: str) -> Iterator[dict[str, str] | None]:
    """A PgBouncer in transaction mode in front of the bench's database, and a worker of
    its own behind it (its consumers cancelled until a pooled round); None without
    pgbouncer."""
    from sqlalchemy.engine import make_url

    from reelflow.celery_app import app
    from tests.pgbouncer import BINARY, PgBouncer
    from tests.support import patched_environment

    if BINARY is None:
        print("pgbouncer is not installed: no pooled variant", file=sys.stderr)
        yield None
        return
    direct = os.environ["DATABASE_URL"]
    bouncer = PgBouncer(tmp / "pgbouncer", direct, pool_size=4)
    bouncer.start()
    settings = {
        "DATABASE_URL": bouncer.url(make_url(direct).database or "reelflow"),
        "DATABASE_POOLER": "transaction",
        "DATABASE_DIRECT_URL": direct,
    }
    try:
        with ExitStack() as stack:
            with patched_environment(settings):  # the worker starts with these settings
                stack.enter_context(
                    worker(tmp / "pooled", include="bench.overhead_tasks", name=name)
                )
            named = name.replace("%h", socket.gethostname())
            deadline = time.monotonic() + 60
            while not app.control.ping(destination=[named], timeout=0.5):
                if time.monotonic() > deadline:
                    raise SystemExit("the pooled worker did not answer")
            consume(only=direct_worker, not_=name)
            yield settings
    finally:
        bouncer.stop()


def pooled_figures(
    med: dict[str, float], chain_length: int, raw_step_ms: float, durable_step_ms: float
) -> dict[str, float | None]:
    if "pc" not in med:
        return {"pooled_step_ms": None, "pooled_ratio": None, "pooled_vs_direct": None}
    pooled_step_ms = med["pc"] / chain_length * 1000
    return {
        "pooled_step_ms": round(pooled_step_ms, 3),
        "pooled_ratio": round(pooled_step_ms / raw_step_ms, 3),
        "pooled_vs_direct": round(pooled_step_ms / durable_step_ms, 3),
        "chord_pooled_s": round(med["pf"], 3),
        "chord_pooled_vs_direct": round(med["pf"] / med["df"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, bench_servers(Path(tmp)):
        stack = ExitStack()
        direct_worker, pooled_worker = (f"bench-{k}-{os.getpid()}@%h" for k in ("direct", "pooled"))
        stack.enter_context(
            worker(Path(tmp), include="bench.overhead_tasks", concurrency=2, name=direct_worker)
        )
        pooled_env = stack.enter_context(pooled_variant(Path(tmp), pooled_worker, direct_worker))
        from celery import chain, chord, group

        from bench.overhead_tasks import CHAIN_LENGTH, FANOUT_WIDTH, noop
        from steps.engine import bridge
        from workflows.runs.operations import start_run

        def raw_chain() -> float:
            started = time.perf_counter()
            chain(*[noop.si() for _ in range(CHAIN_LENGTH)]).apply_async().get(timeout=300)
            return time.perf_counter() - started

        def raw_chord() -> float:
            started = time.perf_counter()
            chord(group(noop.si() for _ in range(FANOUT_WIDTH)), noop.si()).apply_async().get(
                timeout=300
            )
            return time.perf_counter() - started

        def durable(workflow: str) -> float:
            started = time.perf_counter()
            nonce = {"nonce": uuid.uuid4().hex}  # new keys: the miss path, not reuse
            run = bridge.run(start_run(workflow, nonce, actor="bench")).run
            bridge.run(finished(run.id))
            return time.perf_counter() - started

        from reelflow.settings import get_settings
        from tests.support import patched_environment

        def through_pooler(workflow: str) -> float:
            """The same durable run, this process and the worker both behind PgBouncer."""
            assert pooled_env is not None
            consume(only=pooled_worker, not_=direct_worker)
            try:
                with patched_environment(pooled_env):
                    return durable(workflow)
            finally:
                consume(only=direct_worker, not_=pooled_worker)

        broker_kind = get_settings().broker_kind
        durable("bench_chain")  # warm up every path
        raw_chain()
        if pooled_env is not None:
            through_pooler("bench_chain")
        results: dict[str, list[float]] = {"rc": [], "dc": [], "rf": [], "df": []}
        if pooled_env is not None:
            results |= {"pc": [], "pf": []}
        for _ in range(args.rounds):
            results["rc"].append(raw_chain())
            results["dc"].append(durable("bench_chain"))
            results["rf"].append(raw_chord())
            results["df"].append(durable("bench_fanout"))
            if pooled_env is not None:
                results["pc"].append(through_pooler("bench_chain"))
                results["pf"].append(through_pooler("bench_fanout"))
            print(json.dumps({k: round(v[-1], 3) for k, v in results.items()}), flush=True)

        stack.close()  # the profiled worker takes over the queues alone
        breakdown = profile_breakdown(Path(tmp), durable, CHAIN_LENGTH)

    med = {k: statistics.median(v) for k, v in results.items()}
    raw_step_ms = med["rc"] / CHAIN_LENGTH * 1000
    durable_step_ms = med["dc"] / CHAIN_LENGTH * 1000
    print(
        json.dumps(
            {
                "rounds": args.rounds,
                "chain_length": CHAIN_LENGTH,
                "fanout_width": FANOUT_WIDTH,
                "raw_step_ms": round(raw_step_ms, 3),
                "durable_step_ms": round(durable_step_ms, 3),
                "ratio": round(durable_step_ms / raw_step_ms, 3),
                "chord_raw_s": round(med["rf"], 3),
                "chord_durable_s": round(med["df"], 3),
                "chord_ratio": round(med["df"] / med["rf"], 3),
                **pooled_figures(med, CHAIN_LENGTH, raw_step_ms, durable_step_ms),
                "broker_kind": broker_kind,
                # where a durable step's worker-side milliseconds go (cProfile, solo
                # worker): claim, key, complete, canvas, broker, whole_task
                **breakdown,
                "pid": os.getpid(),
                "run": str(uuid.uuid4())[:8],
            }
        )
    )


if __name__ == "__main__":
    main()
