"""/metrics' reelflow families, read at scrape time from what the database holds (the
same from every API process)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from db.pools import WAIT_BUCKETS
from db.states import ATTEMPT_OUTCOMES, RUN_LIVE, RUN_TERMINAL, STEP_IN_FLIGHT
from workflows.definition.registry import all_workflows

BUCKETS_MS = (10, 50, 100, 500, 1000, 5000, 10_000, 30_000, 60_000, 300_000, 900_000)


class Snapshot(Collector):
    """Metrics read at scrape time from bounded sources only: the work in flight (partial
    indexes), the engine counters, the worker heartbeats and the queues' lengths."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def collect(self) -> Any:
        counts = self.data["counters"]
        yield self._gauge("reelflow_runs_active", "Runs pending or running, by status",
                          "status", RUN_LIVE, self.data["in_flight"]["runs"])  # fmt: skip
        yield self._gauge("reelflow_steps_in_flight", "Steps queued, running or retrying",
                          "status", STEP_IN_FLIGHT, self.data["in_flight"]["steps"])  # fmt: skip
        finished = CounterMetricFamily(
            "reelflow_runs_finished", "Runs that finished, by outcome", labels=["status"]
        )
        for status in sorted(RUN_TERMINAL):
            finished.add_metric([status.value], counts.get(("runs_finished", status.value), 0))
        yield finished
        attempts = CounterMetricFamily(
            "reelflow_step_attempts",
            "Attempts that ended, by step and outcome (retrying: a retry follows)",
            labels=["step", "outcome"],
        )
        steps = sorted({label.split("|")[0] for name, label in counts if name == "attempts"})
        for step in steps:
            for outcome in ATTEMPT_OUTCOMES:
                attempts.add_metric(
                    [step, outcome], counts.get(("attempts", f"{step}|{outcome}"), 0)
                )
        yield attempts
        yield self._durations(counts)
        for name, doc in (
            ("deliveries_ignored", "Deliveries that changed nothing, by reason"),
            ("runs_requeued", "Runs the reconciler dispatched again, by reason"),
            ("messages_rejected", "Messages workers refused as malformed or unroutable"),
        ):
            family = CounterMetricFamily(f"reelflow_{name}", doc, labels=["reason"])
            for (counter, label), value in sorted(counts.items()):
                if counter == name:
                    family.add_metric([label], value)
            yield family
        yield from self._cache(counts)
        workers = GaugeMetricFamily(
            "reelflow_workers_online", "Workers with a fresh heartbeat, by queue", labels=["queue"]
        )
        for queue, names in self.data["workers"].queues.items():
            workers.add_metric([queue], len(names))
        yield workers
        depth = GaugeMetricFamily("reelflow_queue_depth", "Messages waiting", labels=["queue"])
        for queue, n in self.data["depth"].items():
            depth.add_metric([queue], n)
        yield depth
        yield from _pools(self.data["pools"], counts)

    @staticmethod
    def _cache(counts: dict[tuple[str, str], int]) -> Iterator[CounterMetricFamily]:
        """Reuses (counted as they happen) and misses: the executions (attempts) of the
        steps of each workflow that may reuse a result."""
        reused = CounterMetricFamily(
            "reelflow_cache_reused",
            "Steps that reused a result with their input key instead of running",
            labels=["workflow", "step"],
        )
        for (counter, label), value in sorted(counts.items()):
            if counter == "cache_reused":
                reused.add_metric(label.split("|", 1), value)
        yield reused
        missed = CounterMetricFamily(
            "reelflow_cache_missed",
            "Executions of steps that may reuse a result, with none of their key to reuse",
            labels=["workflow", "step"],
        )
        ran: dict[str, int] = {}
        for (counter, label), value in counts.items():
            if counter == "attempts":
                step = label.split("|", 1)[0]
                ran[step] = ran.get(step, 0) + value
        for workflow in sorted(all_workflows().values(), key=lambda w: w.name):
            for step in workflow.step_names:
                if workflow.spec(step).cache and step in ran:
                    missed.add_metric([workflow.name, step], ran[step])
        yield missed

    @staticmethod
    def _gauge(
        name: str, doc: str, label: str, states: frozenset[Any], found: dict[str, int]
    ) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=[label])
        for state in sorted(states):
            family.add_metric([state.value], found.get(state.value, 0))  # zeros too
        return family

    @staticmethod
    def _durations(counts: dict[tuple[str, str], int]) -> HistogramMetricFamily:
        hist = HistogramMetricFamily(
            "reelflow_step_duration_seconds", "Finished attempts by step", labels=["step"]
        )
        steps = sorted({label for name, label in counts if name == "duration_ms_sum"})
        for step in steps:
            running, buckets = 0, []
            for bound in BUCKETS_MS:
                running += counts.get(("duration_bucket", f"{step}|{bound}"), 0)
                buckets.append((str(bound / 1000), running))
            total = running + counts.get(("duration_bucket", f"{step}|+Inf"), 0)
            buckets.append(("+Inf", total))
            hist.add_metric([step], buckets, counts.get(("duration_ms_sum", step), 0) / 1000)
        return hist


def _pools(view: dict[str, dict[str, Any]], counts: dict[tuple[str, str], int]) -> Iterator[Any]:
    """Each pool's size, the slots held and the steps waiting (by tenant), and how long
    steps waited for a slot (a histogram by pool and tenant, counted at each grant)."""
    size = GaugeMetricFamily("reelflow_pool_slots", "Slots in each pool", labels=["pool"])
    held = GaugeMetricFamily(
        "reelflow_pool_slots_held", "Slots held by running steps", labels=["pool", "tenant"]
    )
    waiting = GaugeMetricFamily(
        "reelflow_pool_waiting", "Steps waiting for a slot", labels=["pool", "tenant", "priority"]
    )
    now = datetime.now(UTC)
    for pool, found in sorted(view.items()):
        size.add_metric([pool], len(found["slots"]))
        by_tenant: dict[str, int] = {}
        for slot in found["slots"]:
            expires = slot["lease_expires_at"]
            if slot["holder_step_id"] is not None and (expires is None or expires > now):
                by_tenant[slot["tenant"] or ""] = by_tenant.get(slot["tenant"] or "", 0) + 1
        for tenant, n in sorted(by_tenant.items()):
            held.add_metric([pool, tenant], n)
        for wait in found["waiting"]:
            waiting.add_metric([pool, wait["tenant"], str(wait["priority"])], wait["count"])
    yield size
    yield held
    yield waiting
    hist = HistogramMetricFamily(
        "reelflow_slot_wait_seconds",
        "How long steps waited for a pool slot, counted when granted one",
        labels=["pool", "tenant"],
    )
    series = sorted({label for name, label in counts if name == "slot_wait_ms_sum"})
    for label in series:
        running, buckets = 0, []
        for bound in WAIT_BUCKETS:
            running += counts.get(("slot_wait_bucket", f"{label}|{bound:g}"), 0)  # as SQL spells it
            buckets.append((str(float(bound)), running))
        running += counts.get(("slot_wait_bucket", f"{label}|+Inf"), 0)
        buckets.append(("+Inf", running))
        hist.add_metric(
            label.split("|", 1), buckets, counts.get(("slot_wait_ms_sum", label), 0) / 1000
        )
    yield hist
