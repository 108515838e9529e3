"""Lists of a big kind, against a loopback server speaking kube-apiserver's list protocol: pages have
no total timeout (only an inactivity one), an expired continue token starts the list over, and a
server without streaming lists (WatchList) gets paginated ones.

A stand-in where the real API server cannot be made to do the thing on cue (trickle a body, expire a
continue token between two pages, refuse ``sendInitialEvents``); the real server's side of each is in
test/integration/test_first_list.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from kubernetes_asyncio import client as k8s_client

from agentkube.runtime.client import Client
from agentkube.runtime.errors import RequestTimeout
from agentkube.runtime.gvk import GVK
from agentkube.runtime.reflector import Reflector
from agentkube.runtime.store import Store
from test.unit.runtime.loopback import serve

CM = GVK("", "v1", "ConfigMap")
DISCOVERY = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {"name": "configmaps", "namespaced": True, "kind": "ConfigMap", "verbs": ["list", "watch"]}
    ],
}


def item(i: int) -> dict[str, object]:
    return {
        "metadata": {
            "name": f"cm-{i:03d}",
            "namespace": "ns",
            "resourceVersion": str(100 + i),
            "uid": f"u{i}",
        }
    }


def status(code: int, reason: str, message: str) -> bytes:
    return orjson.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": code,
            "reason": reason,
            "message": message,
        }
    )


@dataclass
class Server:
    objects: int = 25
    trickle: float = 0.0  # seconds between the chunks of a list body
    stall_after: int | None = None  # chunks sent before the body goes silent
    expire_continue_once: bool = False
    refuse_streaming: bool = False
    queries: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/api/v1":
            return web.json_response(DISCOVERY)
        query = dict(request.query)
        self.queries.append(query)
        if query.get("watch") == "true":
            if query.get("sendInitialEvents") == "true" and self.refuse_streaming:
                message = (
                    "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"
                )
                return web.Response(
                    status=422, body=status(422, "Invalid", message), content_type="application/json"
                )
            response = web.StreamResponse()
            await response.prepare(request)
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await asyncio.sleep(3600)
            return response
        limit = int(query.get("limit") or 0) or self.objects
        start = int(query.get("continue") or 0)
        if start and self.expire_continue_once:
            self.expire_continue_once = False
            message = "The provided continue parameter is too old to display a consistent list result."
            return web.Response(
                status=410, body=status(410, "Expired", message), content_type="application/json"
            )
        end = min(start + limit, self.objects)
        meta: dict[str, str] = {"resourceVersion": "999"}
        if end < self.objects:
            meta["continue"] = str(end)
        body = orjson.dumps(
            {
                "kind": "ConfigMapList",
                "apiVersion": "v1",
                "metadata": meta,
                "items": [item(i) for i in range(start, end)],
            }
        )
        if not self.trickle and self.stall_after is None:
            return web.Response(body=body, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        chunks = [body[i : i + 64] for i in range(0, len(body), 64)]
        for n, chunk in enumerate(chunks):
            if self.stall_after is not None and n == self.stall_after:
                await asyncio.sleep(3600)
            await response.write(chunk)
            await asyncio.sleep(self.trickle)
        await response.write_eof()
        return response


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    async with serve(state.handle) as state.url:
        yield state


@pytest_asyncio.fixture
async def client(server: Server) -> AsyncIterator[Client]:
    configuration = k8s_client.Configuration()
    configuration.host = server.url
    c = Client(k8s_client.ApiClient(configuration=configuration), request_timeout=0.5)
    try:
        yield c
    finally:
        await c.close()


async def test_a_list_page_that_takes_longer_than_the_request_timeout_but_keeps_coming_is_read_whole(
    server: Server, client: Client
) -> None:
    server.objects, server.trickle = 40, 0.05  # about 60 chunks: 3 s, six times the request timeout
    items, rv = await client.list(CM, "ns", limit=0)
    assert len(items) == 40 and rv == "999"


async def test_a_list_body_that_goes_silent_is_abandoned_after_the_inactivity_timeout(
    server: Server, client: Client
) -> None:
    server.stall_after = 2
    with pytest.raises(RequestTimeout, match="stopped arriving"):
        await asyncio.wait_for(client.list(CM, "ns", limit=0), 10)


async def test_an_expired_continue_token_starts_the_list_over_in_pages(
    server: Server, client: Client
) -> None:
    server.expire_continue_once = True
    items, _ = await client.list(CM, "ns", limit=10)
    assert [i["metadata"]["name"] for i in items] == [f"cm-{i:03d}" for i in range(25)]
    # Page 1, page 2 refused, then pages 1-3 again: never one request without a limit.
    assert [q.get("continue", "") for q in server.queries] == ["", "10", "", "10", "20"]
    assert all(q.get("limit") == "10" for q in server.queries)


async def test_a_server_that_refuses_streaming_lists_gets_a_paginated_consistent_list(
    server: Server, client: Client
) -> None:
    server.refuse_streaming = True
    store = Store()
    reflector = Reflector(client, CM, store, lambda _: None, namespace="ns", page_size=10)
    task = asyncio.create_task(reflector.run())
    try:
        assert await reflector.wait_for_sync(10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert reflector.last_list_mode == "paginate" and len(store) == 25
    streamed, *listed = server.queries[:4]
    assert streamed.get("sendInitialEvents") == "true"
    assert streamed.get("resourceVersionMatch") == "NotOlderThan"
    # The list asks for pages and a consistent read (no resourceVersion=0, which ignores limit).
    assert [q.get("limit") for q in listed[:3]] == ["10", "10", "10"]
    assert all("resourceVersion" not in q for q in listed[:3])
