"""The priority queue against a real kube-apiserver: an edit jumps the initial list's backlog."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from agentkube.runtime import Client, Manager, Request
from test.integration.runtime_helpers import CM, configmap, eventually, manager_options, running

pytestmark = pytest.mark.integration

OBJECTS = 60
_names = itertools.count()


async def _edit_during_initial_list(client: Client, namespace: str, *, priority: bool) -> list[str]:
    """Create OBJECTS ConfigMaps, start a controller whose first reconcile is held, edit the last
    ConfigMap while the rest of the initial list waits, release; return the order of reconciles."""
    await asyncio.gather(*(client.create(configmap(f"cm-{i:03d}", namespace)) for i in range(OBJECTS)))
    manager = Manager(client, manager_options(namespace))
    order: list[str] = []
    gate = asyncio.Event()

    async def reconcile(request: Request) -> None:
        order.append(request.name)
        await gate.wait()

    controller = (
        manager.controller(f"it-priority-{next(_names)}")
        .for_kind(CM)
        .with_options(use_priority_queue=priority)
        .complete(reconcile)
    )
    target = f"cm-{OBJECTS - 1:03d}"
    async with running(manager):
        await eventually(lambda: len(order) == 1, "the first object of the initial list is reconciled")
        assert len(controller.queue) == OBJECTS - 1
        patched = await client.patch(CM, target, namespace, {"data": {"key": "edited"}})
        rv = patched["metadata"]["resourceVersion"]

        def edit_cached() -> bool:
            cached = manager.cache.get(CM, target, namespace)
            return cached is not None and cached["metadata"]["resourceVersion"] == rv

        # The informer updates the store and queues the edit in one step: once the cache shows it,
        # the queue holds it.
        await eventually(edit_cached, "the edit reaches the cache")
        gate.set()
        await eventually(lambda: len(set(order)) == OBJECTS, "every object is reconciled")
    return order


async def test_an_edit_during_the_initial_list_is_reconciled_next(client: Client, namespace: str) -> None:
    order = await _edit_during_initial_list(client, namespace, priority=True)
    assert order[1] == f"cm-{OBJECTS - 1:03d}", order[:5]
    assert order.count(f"cm-{OBJECTS - 1:03d}") == 1


async def test_without_the_priority_queue_the_edit_waits_its_turn(client: Client, namespace: str) -> None:
    order = await _edit_during_initial_list(client, namespace, priority=False)
    assert order.index(f"cm-{OBJECTS - 1:03d}") == OBJECTS - 1
