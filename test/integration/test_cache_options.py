"""Per-kind cache options and the uncached reader against a real kube-apiserver."""

from __future__ import annotations

from typing import Any

import pytest

from agentkube.runtime import Manager, Request
from agentkube.runtime.cache import Cache, KindOptions, NotCached
from agentkube.runtime.client import Client
from agentkube.runtime.gvk import GVK, ObjectKey
from agentkube.testing.controlplane import ControlPlane
from test.integration.runtime_helpers import CM, DEADLINE, configmap, eventually, manager_options, running

pytestmark = pytest.mark.integration

SECRET = GVK("", "v1", "Secret")
OURS = "app.kubernetes.io/managed-by=agentkube"


def secret(name: str, namespace: str, value: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "stringData": {"token": value},
    }


def without_data(obj: dict[str, Any]) -> dict[str, Any]:
    obj.pop("data", None)
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


async def test_a_kind_cached_by_label_holds_only_what_we_label_and_is_read_uncached_otherwise(
    client: Client, namespace: str
) -> None:
    await client.create(secret("ours", namespace, "a", **{"app.kubernetes.io/managed-by": "agentkube"}))
    await client.create(secret("theirs", namespace, "b"))
    cache = Cache(
        client,
        default_namespace=namespace,
        by_kind={SECRET: KindOptions(label_selector=OURS, transform=without_data)},
    )
    informer = cache.informer(SECRET)
    await cache.start()
    try:
        assert await cache.wait_for_sync(DEADLINE)
        assert informer.label_selector == OURS
        assert [o["metadata"]["name"] for o in cache.list(SECRET, namespace)] == ["ours"]
        assert "data" not in cache.get(SECRET, "ours", namespace)  # type: ignore[operator]
        assert cache.get(SECRET, "theirs", namespace) is None, "an unlabelled Secret is never cached"
        # The rare direct read: from the API server, in the shape the cache would give it.
        theirs = await cache.uncached.get(SECRET, "theirs", namespace)
        assert theirs is not None and "data" not in theirs
        assert await cache.uncached.get(SECRET, "absent", namespace) is None
        listed = await cache.uncached.list(SECRET, namespace)
        assert {o["metadata"]["name"] for o in listed} >= {"ours", "theirs"}
    finally:
        await cache.stop()


async def test_a_controllers_primary_kind_takes_the_managers_kind_options(
    client: Client, namespace: str
) -> None:
    seen: list[str] = []
    manager = Manager(
        client,
        manager_options(
            namespace, cache_by_kind={SECRET: KindOptions(label_selector=OURS, transform=without_data)}
        ),
    )

    async def reconcile(request: Request) -> None:
        obj = manager.cache.get(SECRET, request.name, request.namespace)
        assert obj is not None and "data" not in obj
        seen.append(request.name)

    manager.controller("secret-options").for_kind(SECRET).complete(reconcile)
    async with running(manager):
        await client.create(secret("ours", namespace, "a", **{"app.kubernetes.io/managed-by": "agentkube"}))
        await client.create(secret("theirs", namespace, "b"))
        await eventually(lambda: "ours" in seen, "the labelled Secret is reconciled")
        await client.create(secret("later", namespace, "c", **{"app.kubernetes.io/managed-by": "agentkube"}))
        await eventually(lambda: "later" in seen, "a later labelled Secret too")
        assert "theirs" not in seen
        assert (await manager.api_reader.get(SECRET, "theirs", namespace)) is not None


async def test_a_kind_cached_in_two_namespaces_sees_both_and_nothing_else(
    client: Client, namespace: str, control_plane: ControlPlane
) -> None:
    second, third = f"{namespace[:50]}-two", f"{namespace[:50]}-three"
    for ns in (second, third):
        control_plane.create_namespace(ns)
    try:
        cache = Cache(client, by_kind={CM: KindOptions(namespaces=(namespace, second))})
        source = cache.source(CM)
        seen: list[tuple[str, str]] = []
        source.add_handler(lambda e: seen.append((e.obj["metadata"]["namespace"], e.obj["metadata"]["name"])))
        await cache.start()
        try:
            assert await source.wait_for_sync(DEADLINE)
            for ns in (namespace, second, third):
                await client.create(configmap("cm", ns))
            await eventually(
                lambda: {(namespace, "cm"), (second, "cm")} <= set(seen), "both namespaces deliver"
            )
            assert {o["metadata"]["namespace"] for o in cache.list(CM) if o["metadata"]["name"] == "cm"} == {
                namespace,
                second,
            }
            assert source.store.get(ObjectKey(second, "cm")) is not None
            with pytest.raises(NotCached):
                cache.get(CM, "cm", third)
            assert (third, "cm") not in seen
        finally:
            await cache.stop()
    finally:
        for ns in (second, third):
            control_plane.delete_namespace(ns)
