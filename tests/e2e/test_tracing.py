"""Traces: TRACING=true in a real API and a real prefork worker, spans sent over OTLP/HTTP
to a collector this test runs, then read back: one trace from POST /runs through every
step of the run (dispatch, each attempt, its claim and its completion), with the run id,
step key and attempt on reelflow's spans."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from cli.embedded import free_port
from tests.support import ApiProcess, WorkerProcess

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Span:
    name: str
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    error: bool


class Collector:
    """An OTLP/HTTP trace receiver keeping every span it is sent, in memory."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                collector.add(request)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, request: ExportTraceServiceRequest) -> None:
        for resource in request.resource_spans:
            service = next(
                (a.value.string_value for a in resource.resource.attributes
                 if a.key == "service.name"), "",
            )  # fmt: skip
            for scope in resource.scope_spans:
                for s in scope.spans:
                    attributes = {a.key: _value(a.value) for a in s.attributes}
                    span = Span(
                        s.name, service, s.trace_id.hex(), s.span_id.hex(),
                        s.parent_span_id.hex(), attributes, s.status.code == 2,
                    )  # fmt: skip
                    with self.lock:
                        self.spans.append(span)

    def snapshot(self) -> list[Span]:
        with self.lock:
            return list(self.spans)


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    c = Collector()
    c.thread.start()
    try:
        yield c
    finally:
        c.server.shutdown()


@pytest.fixture(scope="module")
def traced(
    env: dict[str, str], collector: Collector, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    """A worker (prefork) and an API with tracing on, exporting to the collector."""
    base = tmp_path_factory.mktemp("traced")
    otel = {
        "TRACING": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # export every 0.2 s, not every 5 s
    }
    worker = WorkerProcess(
        {**env, **otel}, base / "worker.log", name=f"otel-{uuid.uuid4().hex[:6]}"
    )
    api = ApiProcess({**env, **otel}, base / "api.log")
    worker.start()
    api.start()
    try:
        yield api
    finally:
        api.stop()
        worker.stop()


def _ancestors(span: Span, by_id: dict[str, Span]) -> list[Span]:
    chain = []
    while span.parent_id and span.parent_id in by_id:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


def _run_to_success(client: httpx.Client, body: dict[str, Any]) -> str:
    created = client.post("/runs", json=body)
    assert created.status_code == 201, created.text
    run_id: str = created.json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"/runs/{run_id}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.2)
    return run_id


def test_one_trace_from_post_runs_through_every_step(
    traced: ApiProcess, collector: Collector
) -> None:
    client = traced.client(timeout=30)
    run_id = _run_to_success(client, {"workflow": "probe", "params": {"width": 3}})
    keys = {s["key"] for s in client.get(f"/runs/{run_id}/steps").json()}
    assert keys == {"a", "b", "c[0]", "c[1]", "c[2]", "d", "e"}

    def step_spans() -> list[Span]:
        return [
            s for s in collector.snapshot()
            if s.name == "reelflow.step" and s.attributes.get("reelflow.run_id") == run_id
        ]  # fmt: skip

    deadline = time.monotonic() + 20
    while {s.attributes["reelflow.step_key"] for s in step_spans()} != keys:
        assert time.monotonic() < deadline, sorted(s.attributes for s in step_spans())
        time.sleep(0.2)
    time.sleep(0.5)  # the last completions' spans

    spans = collector.snapshot()
    by_id = {s.span_id: s for s in spans}
    (dispatch,) = [
        s for s in spans
        if s.name == "reelflow.dispatch" and s.attributes["reelflow.run_id"] == run_id
    ]  # fmt: skip
    request = _ancestors(dispatch, by_id)[-1]
    assert (request.name, request.service, request.parent_id) == ("POST /runs", "reelflow-api", "")
    assert dispatch.attributes["reelflow.generation"] == 0
    trace = [s for s in spans if s.trace_id == request.trace_id]
    services = {s.service for s in trace}
    assert services == {"reelflow-api", "reelflow-worker"}, services

    for step in step_spans():
        key = step.attributes["reelflow.step_key"]
        assert step.trace_id == request.trace_id, key
        lineage = _ancestors(step, by_id)
        assert lineage[-1] == request, (key, [s.name for s in lineage])
        assert any(s.service == "reelflow-worker" and s.name.startswith("run/") for s in lineage)
        assert step.attributes["reelflow.attempt"] == 1, key
        assert step.attributes["reelflow.claim.outcome"] == "claimed", key
        children = [s for s in trace if s.parent_id == step.span_id]
        names = sorted(s.name for s in children)
        assert names == ["reelflow.claim", "reelflow.complete"], (key, names)
        for child in children:
            assert child.attributes["reelflow.run_id"] == run_id
            assert child.attributes["reelflow.step_key"] == key
            assert child.attributes["reelflow.attempt"] == 1
        assert not step.error


def test_a_retried_attempt_is_an_error_span_in_the_same_trace(
    traced: ApiProcess, collector: Collector
) -> None:
    client = traced.client(timeout=30)
    body = {"workflow": "probe", "params": {"width": 2}, "faults": {"c[1]": 1}}
    run_id = _run_to_success(client, body)

    def attempts() -> list[Span]:
        return sorted(
            (s for s in collector.snapshot() if s.name == "reelflow.step"
             and s.attributes.get("reelflow.run_id") == run_id
             and s.attributes.get("reelflow.step_key") == "c[1]"),
            key=lambda s: s.attributes["reelflow.attempt"],
        )  # fmt: skip

    deadline = time.monotonic() + 20
    while len(attempts()) < 2:
        assert time.monotonic() < deadline, attempts()
        time.sleep(0.2)
    first, second = attempts()
    assert (first.attributes["reelflow.attempt"], first.error) == (1, True)
    assert (second.attributes["reelflow.attempt"], second.error) == (2, False)
    assert first.trace_id == second.trace_id
