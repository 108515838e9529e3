"""An OTLP/HTTP trace receiver on loopback, for checking what a data-plane program exports.

    async with collecting(trace_id) as otlp:
        with run_proxy(work, upstreams, env=otlp.env) as proxy:
            ...  # a request carrying ``traceparent: 00-<trace_id>-...``
            await otlp.wait(20)
    ours = otlp.of_trace()

Export requests are decoded with the protocol's own protobuf types (``ExportTraceServiceRequest``),
so a span the program sends in a shape the protocol does not define fails the test. ``wait`` returns
once ``spans`` spans of the trace have arrived (and times out otherwise); spans of other traces are
kept in ``spans`` too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from test.e2e.peers import free_port

__all__ = ["Collector", "collecting"]


class Collector:
    """What the receiver has got so far, and the environment that points an exporter at it."""

    def __init__(self, trace_id: str, spans: int, endpoint: str) -> None:
        self.trace_id = trace_id
        self.endpoint = endpoint
        self.spans: list[Any] = []
        self.env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
        """``OTEL_EXPORTER_OTLP_ENDPOINT`` for this receiver, and a 50 ms batch delay so spans come soon."""
        self._want = spans
        self._enough = asyncio.Event()

    def of_trace(self) -> list[Any]:
        """The spans received that belong to ``trace_id``."""
        return [s for s in self.spans if s.trace_id.hex() == self.trace_id]

    async def wait(self, seconds: float) -> None:
        """Until ``spans`` spans of the trace have arrived; ``TimeoutError`` after ``seconds``."""
        await asyncio.wait_for(self._enough.wait(), seconds)

    async def _receive(self, request: web.Request) -> web.Response:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                self.spans.extend(scope.spans)
        if len(self.of_trace()) >= self._want:
            self._enough.set()
        return web.Response(status=200, content_type="application/x-protobuf", body=b"")


@contextlib.asynccontextmanager
async def collecting(trace_id: str, *, spans: int = 2) -> AsyncIterator[Collector]:
    """Serve ``/v1/traces`` on a free loopback port for the block; waiting is for ``spans`` spans."""
    app = web.Application()
    runner = web.AppRunner(app)
    port = free_port()
    collector = Collector(trace_id, spans, f"http://127.0.0.1:{port}")
    app.router.add_post("/v1/traces", collector._receive)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield collector
    finally:
        await runner.cleanup()
