"""The first list of a kind against a real kube-apiserver: streamed where the server can, else paged."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from agentkube.runtime import metrics
from agentkube.runtime.client import Client
from agentkube.runtime.gvk import ObjectKey
from agentkube.runtime.informer import EventType, Informer
from test.integration.runtime_helpers import CM, DEADLINE, configmap, eventually

pytestmark = pytest.mark.integration

OBJECTS = 35


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(informer.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def many(client: Client, namespace: str, n: int = OBJECTS) -> set[str]:
    names = {f"cm-{i:03d}" for i in range(n)}
    await asyncio.gather(*(client.create(configmap(name, namespace)) for name in names))
    return names


def gets(client: Client) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "rest_client_requests_total", {"code": "200", "method": "GET", "host": client._host_label}
    )
    return value or 0.0


async def test_the_first_sync_streams_the_initial_state_where_the_server_supports_it(
    client: Client, namespace: str
) -> None:
    names = await many(client, namespace)
    informer = Informer(client, CM, namespace=namespace)
    added: list[str] = []
    informer.add_handler(
        lambda e: added.append(e.obj["metadata"]["name"]) if e.type is EventType.ADDED else None
    )
    async with running(informer):
        assert await informer.wait_for_sync(DEADLINE)
        assert informer.reflector.last_list_mode == "stream"
        assert {o["metadata"]["name"] for o in informer.store.list()} == names
        assert set(added) == names and len(added) == OBJECTS, "each object is delivered once"
        assert informer.resource_version, "the initial-events-end bookmark gives the version to watch from"
        # The watch that follows the stream picks up later changes.
        await client.create(configmap("later", namespace))
        await eventually(lambda: "later" in added, "a change after the first sync arrives")


async def test_a_paginated_first_list_reads_pages_of_the_asked_size(client: Client, namespace: str) -> None:
    names = await many(client, namespace)
    await client.resource(CM)  # discovery out of the way of the count
    informer = Informer(client, CM, namespace=namespace, initial_list="paginate")
    informer.reflector._page_size = 10
    before = gets(client)
    async with running(informer):
        assert await informer.wait_for_sync(DEADLINE)
        pages = gets(client) - before
        assert informer.reflector.last_list_mode == "paginate"
        assert {o["metadata"]["name"] for o in informer.store.list()} == names
        # 35 objects in pages of 10 are 4 pages (a watch request may have been answered meanwhile).
        assert pages in (4, 5), f"{pages} GETs for a list of {OBJECTS} in pages of 10"
        await client.create(configmap("later", namespace))
        await eventually(
            lambda: informer.store.get(ObjectKey(namespace, "later")) is not None, "watching follows"
        )
