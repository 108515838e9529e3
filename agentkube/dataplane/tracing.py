"""OpenTelemetry traces of a data-plane program, when the standard ``OTEL_EXPORTER_OTLP_*`` variables ask.

``configure_tracing(service)`` returns a tracer exporting spans over OTLP/HTTP (protobuf, in batches)
when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set, and None
otherwise: with no collector named, tracing costs nothing. Everything else is the SDK's own reading
of the standard variables (headers, timeout, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
sampling). ``shutdown_tracing()`` flushes what is buffered (on SIGTERM).

Span attributes never carry a credential, an argument or a result: only names (method, tool,
upstream), the protocol version and outcomes.
"""

from __future__ import annotations

import os
from typing import Any

import structlog

__all__ = ["configure_tracing", "shutdown_tracing"]

log = structlog.get_logger("agentkube.dataplane.tracing")

_provider: Any = None


def configure_tracing(service: str) -> Any | None:
    """A tracer for ``service`` when an OTLP endpoint is configured, else None."""
    global _provider
    if not (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        return None
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _provider = provider
    log.info("tracing", exporter="otlp/http")
    return provider.get_tracer("agentkube")


def shutdown_tracing() -> None:
    """Export what is buffered and stop (a no-op without tracing)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None
