"""The client's own retries of throttled reads, against a loopback HTTP server that answers as
kube-apiserver's priority-and-fairness filter does (429, ``Retry-After``, a Status with
``details.retryAfterSeconds``).

A stand-in, because the real API server cannot be made to throttle on cue: a priority level without
seats still runs one request at a time, so whether a read is rejected depends on timing. The answers
below are byte-for-byte what the filter sends.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from kubernetes_asyncio import client as k8s_client

from agentkube.runtime.client import Client
from agentkube.runtime.errors import TooManyRequests
from agentkube.runtime.gvk import GVK
from test.unit.runtime.loopback import serve

CM = GVK("", "v1", "ConfigMap")

DISCOVERY = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [{"name": "configmaps", "namespaced": True, "kind": "ConfigMap", "verbs": ["get"]}],
}


def throttled_body(seconds: int) -> bytes:
    return orjson.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Too many requests, please try again later.",
            "reason": "TooManyRequests",
            "details": {"retryAfterSeconds": seconds},
            "code": 429,
        }
    )


@dataclass
class Server:
    """Answers 429 to the first ``throttle`` requests for the ConfigMap (and to every write)."""

    throttle: int = 0
    retry_after: int = 1
    seen: list[tuple[str, float]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        if request.path == "/api/v1":
            return web.json_response(DISCOVERY)
        self.seen.append((request.method, time.monotonic()))
        if request.method != "GET" or len(self.seen) <= self.throttle:
            return web.Response(
                status=429,
                body=throttled_body(self.retry_after),
                content_type="application/json",
                headers={"Retry-After": str(self.retry_after)},
            )
        return web.json_response(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}}
        )


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    async with serve(state.handle) as state.url:
        yield state


@pytest_asyncio.fixture
async def client(server: Server) -> AsyncIterator[Client]:
    configuration = k8s_client.Configuration()
    configuration.host = server.url
    c = Client(k8s_client.ApiClient(configuration=configuration))
    try:
        yield c
    finally:
        await c.close()


def gaps(seen: list[tuple[str, float]]) -> list[float]:
    return [b - a for (_, a), (_, b) in itertools.pairwise(seen)]


async def test_a_throttled_read_is_retried_no_sooner_than_retry_after_and_succeeds(
    server: Server, client: Client
) -> None:
    server.throttle, server.retry_after = 2, 1
    got = await client.get(CM, "c", "ns")
    assert got["metadata"]["name"] == "c"
    assert len(server.seen) == 3
    assert all(gap >= 1.0 for gap in gaps(server.seen)), gaps(server.seen)


async def test_a_read_throttled_beyond_its_budget_raises_with_the_servers_wait(
    server: Server, client: Client
) -> None:
    server.throttle, server.retry_after = 100, 1
    client.read_retries = 2
    with pytest.raises(TooManyRequests) as caught:
        await client.get(CM, "c", "ns")
    assert caught.value.retry_after == 1.0
    assert len(server.seen) == 3, "one try and two retries"
    assert all(gap >= 1.0 for gap in gaps(server.seen))


async def test_the_retry_budget_bounds_the_time_spent_waiting(server: Server, client: Client) -> None:
    server.throttle, server.retry_after = 100, 5
    client.read_retry_budget = 4.0
    started = time.monotonic()
    with pytest.raises(TooManyRequests):
        await client.get(CM, "c", "ns")
    # A wait of 5 s does not fit a budget of 4 s: no retry at all rather than one cut short.
    assert len(server.seen) == 1
    assert time.monotonic() - started < 4.0


async def test_writes_are_not_retried_by_the_client(server: Server, client: Client) -> None:
    server.throttle = 100
    with pytest.raises(TooManyRequests) as caught:
        await client.create(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}}
        )
    assert len(server.seen) == 1
    # The caller (the controller's requeue) gets the server's wait to honour.
    assert caught.value.retry_after == 1.0
