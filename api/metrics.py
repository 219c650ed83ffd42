"""/metrics' reelflow families, read at scrape time from what the database holds (the
same from every API process)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from db.engine import PoolUsage
from db.pools import WAIT_BUCKETS
from db.states import ATTEMPT_OUTCOMES, RUN_LIVE, RUN_TERMINAL, STEP_IN_FLIGHT
from workflows.definition.registry import all_workflows

#: Upper bounds (ms) of the step duration and queue-wait buckets: the counting triggers'
#: (migration 6d9c3d7eb9de) spell them the same way.
BUCKETS_MS = (10, 50, 100, 500, 1000, 5000, 10_000, 30_000, 60_000, 300_000, 900_000, 3_600_000)

#: The labels of every step-level family: a step's name (map items fold into it), so a
#: series exists per step of a workflow, never per run or item.
STEP = ["workflow", "step", "queue"]
Series = tuple[str, ...]


class Snapshot(Collector):
    """Metrics read at scrape time from bounded sources only: the work in flight (partial
    indexes), the engine counters, the worker heartbeats and the queues' lengths."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def collect(self) -> Any:
        counts = self.data["counters"]
        series = _split(counts)
        known = _known_steps()
        yield from self._in_flight(self.data["in_flight"], known)
        finished = CounterMetricFamily(
            "reelflow_runs_finished", "Runs that finished, by workflow and outcome",
            labels=["workflow", "status"],
        )  # fmt: skip
        ran = series.get("workflow_runs_finished", {})
        for workflow in sorted({w for w, _, _ in known} | {w for w, _ in ran}):
            for status in sorted(RUN_TERMINAL):
                finished.add_metric([workflow, status.value], ran.get((workflow, status.value), 0))
        yield finished
        attempts = CounterMetricFamily(
            "reelflow_step_attempts",
            "Attempts that ended, by step and outcome (retrying: a retry follows)",
            labels=[*STEP, "outcome"],
        )
        ended = series.get("step_attempts", {})
        for step in sorted({label[:3] for label in ended}):
            for outcome in ATTEMPT_OUTCOMES:
                attempts.add_metric([*step, outcome], ended.get((*step, outcome), 0))
        yield attempts
        yield _histogram(
            "reelflow_step_duration_seconds", "Finished attempts by step",
            series.get("step_duration_bucket", {}), series.get("step_duration_ms_sum", {}), 1e3,
        )  # fmt: skip
        yield _histogram(
            "reelflow_step_queue_wait_seconds",
            "How long attempts' messages waited in the queue (counted as each attempt starts)",
            series.get("queue_wait_bucket", {}), series.get("queue_wait_us_sum", {}), 1e6,
        )  # fmt: skip
        for name, doc in (
            ("deliveries_ignored", "Deliveries that changed nothing, by reason"),
            ("runs_requeued", "Runs the reconciler dispatched again, by reason"),
            ("messages_rejected", "Messages workers refused as malformed or unroutable"),
            ("database_timeouts", "Statements the statement or lock timeout stopped (retried)"),
        ):
            family = CounterMetricFamily(f"reelflow_{name}", doc, labels=["reason"])
            for (counter, label), value in sorted(counts.items()):
                if counter == name:
                    family.add_metric([label], value)
            yield family
        yield from _cache(series)
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
    def _in_flight(found: dict[str, dict[Series, int]], known: set[Series]) -> Iterator[Any]:
        """Gauges of the work in flight, zeros too for every status of every known step."""
        runs = GaugeMetricFamily(
            "reelflow_runs_active", "Runs pending or running, by workflow and status",
            labels=["workflow", "status"],
        )  # fmt: skip
        for workflow in sorted({w for w, _, _ in known} | {w for w, _ in found["runs"]}):
            for run_status in sorted(RUN_LIVE):
                runs.add_metric([workflow, run_status.value],
                                found["runs"].get((workflow, run_status.value), 0))  # fmt: skip
        yield runs
        steps = GaugeMetricFamily(
            "reelflow_steps_in_flight", "Steps queued, running or retrying",
            labels=[*STEP, "status"],
        )  # fmt: skip
        for step in sorted(known | {key[:3] for key in found["steps"]}):
            for status in sorted(STEP_IN_FLIGHT):
                steps.add_metric(
                    [*step, status.value], found["steps"].get((*step, status.value), 0)
                )
        yield steps


class Connections(Collector):
    """This process's database connections: in use, open, and the most it may open. Per
    process, like the process_* families: sum them over the API's processes."""

    def __init__(self, usage: PoolUsage) -> None:
        self.usage = usage

    def collect(self) -> Any:
        for name, value, doc in (
            ("in_use", self.usage.in_use, "checked out of this process's pool now"),
            ("open", self.usage.open, "open in this process, in use or idle"),
            ("limit", self.usage.limit, "the most this process may open (pool + overflow)"),
        ):
            yield GaugeMetricFamily(f"reelflow_db_connections_{name}", f"Connections {doc}",
                                    value=value)  # fmt: skip


def _split(counts: dict[tuple[str, str], int]) -> dict[str, dict[Series, int]]:
    """The engine counters by name, each label split into its parts."""
    out: dict[str, dict[Series, int]] = {}
    for (name, label), value in counts.items():
        out.setdefault(name, {})[tuple(label.split("|"))] = value
    return out


def _known_steps() -> set[Series]:
    """(workflow, step, queue) of every step of every workflow this deployment runs."""
    return {
        (w.name, step, w.spec(step).queue)
        for w in all_workflows().values()
        for step in w.step_names
    }


def _histogram(
    name: str, doc: str, buckets: dict[Series, int], sums: dict[Series, int], per_second: float
) -> HistogramMetricFamily:
    """A histogram by step from its counters: per-bucket counts keyed (*series, bound) and
    a sum per series (in ms or µs: `per_second` of them make a second)."""
    hist = HistogramMetricFamily(name, doc, labels=STEP)
    for series in sorted(sums):
        running, cumulative = 0, []
        for bound in BUCKETS_MS:
            running += buckets.get((*series, str(bound)), 0)
            cumulative.append((str(bound / 1000), running))
        cumulative.append(("+Inf", running + buckets.get((*series, "+Inf"), 0)))
        hist.add_metric(list(series), cumulative, sums[series] / per_second)
    return hist


def _cache(series: dict[str, dict[Series, int]]) -> Iterator[CounterMetricFamily]:
    """Reuses (counted as they happen) and misses: the executions (attempts) of the steps
    of each workflow that may reuse a result."""
    reused = CounterMetricFamily(
        "reelflow_cache_reused",
        "Steps that reused a result with their input key instead of running",
        labels=STEP,
    )
    for labels, value in sorted(series.get("step_reused", {}).items()):
        reused.add_metric(list(labels), value)
    yield reused
    missed = CounterMetricFamily(
        "reelflow_cache_missed",
        "Executions of steps that may reuse a result, with none of their key to reuse",
        labels=STEP,
    )
    ran: dict[Series, int] = {}
    for label, value in series.get("step_attempts", {}).items():
        ran[label[:3]] = ran.get(label[:3], 0) + value
    workflows = all_workflows()
    for (workflow, step, queue), value in sorted(ran.items()):
        known = workflows.get(workflow)
        if known is not None and step in known.step_names and known.spec(step).cache:
            missed.add_metric([workflow, step, queue], value)
    yield missed


#: Tenants are the clients' word: past this many in a scrape, the least active fold into
#: one "other" series, so the pool metrics stay bounded whatever tenants clients send.
TENANT_SERIES = 20


def _kept_tenants(view: dict[str, dict[str, Any]], counts: dict[tuple[str, str], int]) -> set[str]:
    """The TENANT_SERIES most active tenants: slots held and steps waiting now, then steps
    that waited for a slot."""
    activity: Counter[str] = Counter()
    for found in view.values():
        activity.update(slot["tenant"] or "" for slot in found["slots"] if slot["held"])
        for wait in found["waiting"]:
            activity[wait["tenant"]] += wait["count"]
    for (name, label), value in counts.items():
        if name == "slot_wait_bucket":
            activity[label.split("|")[1]] += value
    return {tenant for tenant, _ in activity.most_common(TENANT_SERIES)}


def _pools(view: dict[str, dict[str, Any]], counts: dict[tuple[str, str], int]) -> Iterator[Any]:
    """Each pool's size, the slots held and the steps waiting (by tenant), and how long
    steps waited for a slot (a histogram by pool and tenant, counted at each grant)."""
    kept = _kept_tenants(view, counts)

    def tenant_of(name: str) -> str:
        return name if name in kept else "other"

    size = GaugeMetricFamily("reelflow_pool_slots", "Slots in each pool", labels=["pool"])
    held = GaugeMetricFamily(
        "reelflow_pool_slots_held", "Slots held by running steps", labels=["pool", "tenant"]
    )
    waiting = GaugeMetricFamily(
        "reelflow_pool_waiting", "Steps waiting for a slot", labels=["pool", "tenant", "priority"]
    )
    for pool, found in sorted(view.items()):
        size.add_metric([pool], len(found["slots"]))
        by_tenant = Counter(tenant_of(s["tenant"] or "") for s in found["slots"] if s["held"])
        for tenant, n in sorted(by_tenant.items()):
            held.add_metric([pool, tenant], n)
        queued: Counter[tuple[str, str]] = Counter()
        for wait in found["waiting"]:
            queued[(tenant_of(wait["tenant"]), str(wait["priority"]))] += wait["count"]
        for (tenant, priority), n in sorted(queued.items()):
            waiting.add_metric([pool, tenant, priority], n)
    yield size
    yield held
    yield waiting
    hist = HistogramMetricFamily(
        "reelflow_slot_wait_seconds",
        "How long steps waited for a pool slot, counted when granted one",
        labels=["pool", "tenant"],
    )
    bounds = [f"{b:g}" for b in WAIT_BUCKETS] + ["+Inf"]  # as SQL spells them
    folded: dict[tuple[str, str], Counter[str]] = {}
    for (name, label), value in counts.items():
        if name in ("slot_wait_bucket", "slot_wait_ms_sum"):
            pool, tenant, *rest = label.split("|")
            series = folded.setdefault((pool, tenant_of(tenant)), Counter())
            series[rest[0] if rest else "sum"] += value
    for (pool, tenant), found in sorted(folded.items()):
        running, buckets = 0, []
        for bound in bounds:
            running += found.get(bound, 0)
            buckets.append((bound if bound == "+Inf" else str(float(bound)), running))
        hist.add_metric([pool, tenant], buckets, found.get("sum", 0) / 1000)
    yield hist
