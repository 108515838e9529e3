"""A watch's deadlines and failures, against a loopback server that streams watch events as
kube-apiserver does (chunked, one JSON event per line) and then misbehaves on cue: never ends the
stream, goes silent, or drops the connection inside it.

A stand-in, because the real API server always ends a watch at ``timeoutSeconds`` and cannot be made
to cut a stream half-way; its silences are tested against it in test/integration/test_client.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from agentkube.runtime import client as client_module
from agentkube.runtime.client import Client, Connection
from agentkube.runtime.errors import RequestTimeout, ServerUnreachable, WatchStalled
from agentkube.runtime.gvk import GVK
from agentkube.runtime.kubeconfig import Configuration
from test.unit.runtime.loopback import serve

CM = GVK("", "v1", "ConfigMap")
DISCOVERY = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [{"name": "configmaps", "namespaced": True, "kind": "ConfigMap", "verbs": ["watch"]}],
}


def bookmark(rv: int) -> bytes:
    event = {"type": "BOOKMARK", "object": {"kind": "ConfigMap", "metadata": {"resourceVersion": str(rv)}}}
    return orjson.dumps(event) + b"\n"


@dataclass
class Server:
    mode: str = "forever"  # forever | silent | cut
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/api/v1":
            return web.json_response(DISCOVERY)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(bookmark(1))
        if self.mode == "cut":
            assert request.transport is not None
            request.transport.close()  # inside the chunked body: no last chunk
            return response
        if self.mode == "silent":
            await asyncio.Event().wait()  # until the client gives up and the handler is cancelled
        for rv in range(2, 10_000):
            await asyncio.sleep(0.05)
            await response.write(bookmark(rv))
        return response


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    async with serve(state.handle) as state.url:
        yield state


@pytest_asyncio.fixture
async def client(server: Server) -> AsyncIterator[Client]:
    c = Client(Connection(Configuration(host=server.url)), request_timeout=2)
    try:
        yield c
    finally:
        await c.close()


async def events(client: Client, **kwargs: object) -> tuple[list[str], BaseException]:
    seen: list[str] = []
    try:
        async with contextlib.aclosing(
            client.watch(CM, "ns", resource_version="1", **kwargs)  # type: ignore[arg-type]
        ) as stream:
            async for event in stream:
                seen.append(event["object"]["metadata"]["resourceVersion"])
    except Exception as exc:  # what ended it is the answer
        return seen, exc
    raise AssertionError(f"the watch ended without an error after {len(seen)} events")


async def test_a_watch_the_server_never_ends_is_ended_at_its_timeout_plus_the_margin(
    server: Server, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "_WATCH_MARGIN", 0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    seen, error = await asyncio.wait_for(events(client, timeout_seconds=1), 20)
    took = loop.time() - started
    assert isinstance(error, RequestTimeout) and "not closed by the server" in str(error), error
    assert 1.5 <= took < 5, took  # bookmarks kept coming all along: no inactivity to blame
    assert len(seen) >= 10 and seen[:3] == ["1", "2", "3"]


async def test_a_watch_that_goes_silent_is_stalled_after_its_inactivity_timeout(
    server: Server, client: Client
) -> None:
    server.mode = "silent"
    seen, error = await asyncio.wait_for(events(client, timeout_seconds=60, inactivity_timeout=0.3), 20)
    assert isinstance(error, WatchStalled) and "no data for 0.3 s" in str(error), error
    assert seen == ["1"]


async def test_a_watch_cut_inside_its_stream_is_a_server_unreachable_error(
    server: Server, client: Client
) -> None:
    server.mode = "cut"
    seen, error = await asyncio.wait_for(events(client, timeout_seconds=60), 20)
    assert isinstance(error, ServerUnreachable) and isinstance(error, ConnectionError), error
    assert "closed the connection inside its answer" in str(error)
    assert seen == ["1"]
