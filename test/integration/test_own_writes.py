"""Own writes do not wake their writer: an MCP converges in one reconcile, and drift is still put back.

Each reconcile of an MCP applies its children and writes its status; the watch events of those writes
come back through the owned kinds' watches (and the MCP's own). The controller recognises them as
the echo of what that reconcile wrote (same object, same resourceVersion) and does not reconcile
the MCP again for them; a change by anyone else still does.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from agentkube.controllers.kinds import (
    CONFIG_MAP,
    DEPLOYMENT,
    MCP,
    NETWORK_POLICY,
    POD_DISRUPTION_BUDGET,
    SECRET,
    SERVICE,
)
from agentkube.runtime.client import Client
from agentkube.runtime.controller import Controller
from agentkube.runtime.gvk import ObjectKey
from agentkube.runtime.reconcile import Reconciler, Request, Result
from test.integration.operator_harness import (
    HTTP_UPSTREAM,
    RunningOperator,
    condition,
    eventually,
    mcp_object,
    secret_object,
)

pytestmark = pytest.mark.integration

KINDS = (MCP, CONFIG_MAP, DEPLOYMENT, SERVICE, NETWORK_POLICY, POD_DISRUPTION_BUDGET, SECRET)
NAMES = ("one", "two", "three")


class Counting:
    """The MCP reconciler, counting its reconciles per request."""

    def __init__(self, inner: Reconciler) -> None:
        self.inner = inner
        self.seen: Counter[Request] = Counter()

    async def reconcile(self, request: Request) -> Result | None:
        self.seen[request] += 1
        return await self.inner.reconcile(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # the recorder, for flush_events


def counted(operator: RunningOperator) -> tuple[Controller, Counting]:
    controller = next(c for c in operator.manager.controllers if c.name == "mcp")
    counting = Counting(controller.reconciler)
    controller.reconciler = counting
    return controller, counting


async def converged(client: Client, namespace: str) -> bool:
    for name in NAMES:
        obj = await client.get(MCP, name, namespace)
        accepted = condition(obj, "Accepted")
        if accepted is None or accepted.get("observedGeneration") != obj["metadata"]["generation"]:
            return False
        if accepted["status"] != "True" or (obj.get("status") or {}).get("observedGeneration") is None:
            return False
    return True


async def caught_up(operator: RunningOperator, client: Client, namespace: str) -> bool:
    """Every informer of the operator shows every object of ours at the server's resourceVersion: the
    watch events of every write so far have been delivered (the store changes just before its event)."""
    informers = operator.manager.cache.informers
    for gvk in KINDS:
        items, _ = await client.list(gvk, namespace)
        for item in items:
            key = ObjectKey.of(item)
            rv = item["metadata"]["resourceVersion"]
            for informer in informers:
                if informer.gvk != gvk or informer.namespace not in (None, namespace):
                    continue
                stored = informer.store.get(key)
                selected = informer.label_selector is not None or informer.field_selector is not None
                if stored is None and selected:
                    continue  # a narrower cache that does not take this object
                if stored is None or stored["metadata"]["resourceVersion"] != rv:
                    return False
    return True


async def settled(operator: RunningOperator, client: Client, namespace: str) -> None:
    await eventually(lambda: caught_up(operator, client, namespace), "the caches show every write")
    await eventually(operator.idle, "the controllers are idle")


async def test_each_mcp_converges_in_one_reconcile_and_a_child_changed_after_is_put_back(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    controller, counting = counted(operator)
    # The MCPs below then come as watch events, not in a first list.
    await eventually(lambda: operator.manager.cache.synced, "the operator's caches are synced")
    await client.apply(secret_object(namespace, "pat", {"token": "t"}), field_manager="t")
    # Cached before any MCP exists, so its own event wakes no MCP.
    await eventually(lambda: operator.manager.cache.get(SECRET, "pat", namespace), "the Secret is cached")
    for name in NAMES:
        await client.apply(mcp_object(namespace, name, [HTTP_UPSTREAM], replicas=2), field_manager="t")
    await eventually(lambda: converged(client, namespace), "every MCP is converged")
    await settled(operator, client, namespace)

    # Children (ConfigMap, Deployment, Service, NetworkPolicy, PodDisruptionBudget), the session-key
    # Secret and the status were written by that one reconcile; none of their events woke it again.
    assert counting.seen == {Request(namespace, name): 1 for name in NAMES}
    assert len(operator.client.writes_of("apply", "Deployment")) == len(NAMES)
    # Every note was taken by its echo: nothing waits for its age to run out.
    assert len(controller.own_writes) == 0

    # Someone else's edit of a child is put back, in one reconcile (the put-back's echo wakes nothing).
    await client.patch(DEPLOYMENT, "two", namespace, {"spec": {"replicas": 7}})

    async def replicas_restored() -> bool:
        return bool((await client.get(DEPLOYMENT, "two", namespace))["spec"]["replicas"] == 2)

    await eventually(replicas_restored, "the Deployment's replicas are back to the MCP's")
    await settled(operator, client, namespace)
    assert counting.seen[Request(namespace, "two")] == 2

    await client.patch(CONFIG_MAP, "two-config", namespace, {"data": {"config.yaml": "tampered"}})

    async def config_restored() -> bool:
        live = await client.get(CONFIG_MAP, "two-config", namespace)
        return bool(live["data"]["config.yaml"] != "tampered")

    await eventually(config_restored, "the config is back to the MCP's")
    await settled(operator, client, namespace)
    assert counting.seen[Request(namespace, "two")] == 3

    # A child deleted is made again under the same name, once.
    await client.delete(SERVICE, "one", namespace)

    await eventually(lambda: client.get(SERVICE, "one", namespace), "the Service is made again")
    await settled(operator, client, namespace)
    assert counting.seen == {
        Request(namespace, "one"): 2,
        Request(namespace, "two"): 3,
        Request(namespace, "three"): 1,
    }
