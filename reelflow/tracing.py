"""OpenTelemetry traces: one trace from POST /runs through every step of the run.

reelflow's own spans (`reelflow.dispatch`, `reelflow.step`, `reelflow.claim`,
`reelflow.complete`) go through the OpenTelemetry API, which does nothing until an SDK is
installed. With TRACING=true (and the `otel` extra) each process installs the SDK itself:
the API at start, each worker pool process as it is forked (a span processor's export
thread does not survive a fork, which is why `opentelemetry-instrument` alone loses a
prefork worker's spans), with the exporter and endpoint from the standard OTEL_* variables.
FastAPI and Celery are instrumented too, so trace context rides in every message's headers.

A dispatch intent stores the trace context it was written in, so a run published later by
a background relay still joins the request's trace.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context, propagate, trace

from reelflow.settings import get_settings

tracer = trace.get_tracer("reelflow")

RUN_ID, STEP_KEY, ATTEMPT = "reelflow.run_id", "reelflow.step_key", "reelflow.attempt"


def run_attributes(
    run_id: uuid.UUID | str, key: str | None = None, attempt: int | None = None
) -> dict[str, Any]:
    attributes: dict[str, Any] = {RUN_ID: str(run_id)}
    if key is not None:
        attributes[STEP_KEY] = key
    if attempt is not None:
        attributes[ATTEMPT] = attempt
    return attributes


def current_context() -> dict[str, str]:
    """The active trace context as W3C headers (empty when nothing is being traced)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextmanager
def continued(carrier: Mapping[str, str] | None) -> Iterator[None]:
    """Make a stored trace context current for the block (a relay publishing an intent
    some other process wrote); without one, the block runs in whatever context it has."""
    if not carrier:
        yield
        return
    token = context.attach(propagate.extract(dict(carrier)))
    try:
        yield
    finally:
        context.detach(token)


_installed: str | None = None


def install(service: str) -> bool:
    """Install the SDK and the FastAPI/Celery instrumentation in this process, once, when
    TRACING is on. Returns whether tracing is on here."""
    global _installed
    if _installed is not None:
        return True
    if not get_settings().tracing:
        return False
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(_exporter()))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _installed = service
    return True


def _exporter() -> Any:
    """OTEL_TRACES_EXPORTER: otlp (OTLP over HTTP, the default) or console."""
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")[0].strip()
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, headers, timeout


def flush(timeout_ms: int = 5000) -> None:
    """Export what is buffered (a worker process about to exit)."""
    provider: Any = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush(timeout_ms)
