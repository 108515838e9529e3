"""Controllers built with the builder, run by a manager against a real kube-apiserver."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from agentkube.runtime import (
    GVK,
    Client,
    ExponentialFailureRateLimiter,
    Manager,
    NotFound,
    Request,
    TerminalError,
    metrics,
)
from test.integration.runtime_helpers import CM, configmap, eventually, manager_options, running

pytestmark = pytest.mark.integration

SECRET = GVK("", "v1", "Secret")
SERVICE = GVK("", "v1", "Service")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "configmap_controller.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("configmap_controller_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def sample(metric: str, controller: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(metric, {"controller": controller, **labels}) or 0.0


_names = itertools.count()


def controller_name(prefix: str) -> str:
    return f"it-{prefix}-{next(_names)}"


async def test_example_controller_reconciles_creates_and_updates(client: Client, namespace: str) -> None:
    example = load_example()
    manager = Manager(client, manager_options(namespace))
    example.add_controller(manager, name=controller_name("example"))

    async def stamped(name: str) -> bool:
        cm = await client.get(CM, name, namespace)
        return bool(cm["metadata"].get("annotations", {}).get(example.HASH) == example.data_hash(cm))

    await client.create(configmap("before-start", namespace, {"a": "1"}))
    async with running(manager) as task:
        await eventually(lambda: stamped("before-start"), "the ConfigMap present at start is stamped")
        await client.create(configmap("created", namespace, {"b": "2"}))
        await eventually(lambda: stamped("created"), "a created ConfigMap is stamped")
        before = (await client.get(CM, "created", namespace))["metadata"]["annotations"][example.HASH]
        await client.patch(CM, "created", namespace, {"data": {"b": "3"}})
        await eventually(lambda: stamped("created"), "an updated ConfigMap is stamped again")
        after = (await client.get(CM, "created", namespace))["metadata"]["annotations"][example.HASH]
        assert after != before
        assert not task.done()


async def test_failing_reconcile_retries_with_growing_delays_and_counts_errors(
    client: Client, namespace: str
) -> None:
    """The reconciler needs a Secret that appears only after it has failed three times."""
    name = controller_name("retry")
    attempts: list[float] = []

    async def reconcile(request: Request) -> None:
        attempts.append(asyncio.get_running_loop().time())
        await client.get(SECRET, f"{request.name}-credentials", request.namespace)  # NotFound until created

    manager = Manager(client, manager_options(namespace))
    (
        manager.controller(name)
        .for_kind(CM)
        .with_options(rate_limiter=ExponentialFailureRateLimiter(0.1, 10.0))
        .complete(reconcile)
    )
    async with running(manager):
        await client.create(configmap("flaky", namespace))
        await eventually(lambda: len(attempts) >= 4, "the reconcile failed and was retried three times")
        await client.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "flaky-credentials", "namespace": namespace},
                "stringData": {"token": "t"},
            }
        )
        await eventually(
            lambda: sample("controller_runtime_reconcile_total", name, result="success") == 1, "success"
        )

    failures = len(attempts) - 1
    gaps = [b - a for a, b in itertools.pairwise(attempts[:4])]
    for gap, backoff in zip(gaps, [0.1, 0.2, 0.4], strict=True):
        assert gap >= backoff
    assert gaps[0] < gaps[1] < gaps[2]
    assert sample("controller_runtime_reconcile_total", name, result="error") == failures
    assert sample("controller_runtime_reconcile_errors_total", name) == failures
    # NotFound is an ApiError: an expected failure, not a bug.
    assert sample("controller_runtime_reconcile_panics_total", name) == 0
    assert sample("workqueue_retries_total", name, name=name) == failures
    assert sample("controller_runtime_reconcile_time_seconds_count", name) == len(attempts)


async def test_terminal_error_is_not_retried_until_the_object_changes(client: Client, namespace: str) -> None:
    name = controller_name("terminal")
    calls: list[str] = []

    async def reconcile(request: Request) -> None:
        cm = manager.cache.get(CM, request.name, request.namespace)
        calls.append(request.name)
        if cm is not None and cm.get("data", {}).get("port") == "not-a-number":
            raise TerminalError(f"ConfigMap {request}: data.port: must be a number")

    manager = Manager(client, manager_options(namespace))
    controller = (
        manager.controller(name)
        .for_kind(CM)
        .with_options(rate_limiter=ExponentialFailureRateLimiter(0.01, 1.0))
        .complete(reconcile)
    )
    async with running(manager):
        await client.create(configmap("bad", namespace, {"port": "not-a-number"}))
        await eventually(
            lambda: sample("controller_runtime_terminal_reconcile_errors_total", name) == 1,
            "a terminal error",
        )
        # Nothing is scheduled for it, and well past the first backoffs it has not come back.
        assert controller.queue.waiting == 0
        await asyncio.sleep(0.3)
        assert calls.count("bad") == 1
        assert sample("controller_runtime_reconcile_total", name, result="error") == 1
        await client.patch(CM, "bad", namespace, {"data": {"port": "8080"}})
        await eventually(
            lambda: sample("controller_runtime_reconcile_total", name, result="success") >= 1, "fixed"
        )
        assert calls.count("bad") == 2


async def test_owned_and_mapped_kinds_enqueue_their_primary(client: Client, namespace: str) -> None:
    name = controller_name("owns")
    seen: list[Request] = []

    async def reconcile(request: Request) -> None:
        seen.append(request)

    def service_to_primary(svc: dict[str, Any]) -> list[Request]:
        primary = (svc["metadata"].get("labels") or {}).get("example.com/primary")
        return [Request(svc["metadata"]["namespace"], primary)] if primary else []

    manager = Manager(client, manager_options(namespace))
    (
        manager.controller(name)
        .for_kind(CM)
        .owns(SECRET, metadata_only=True)
        .watches(SERVICE, map_to=service_to_primary)
        .complete(reconcile)
    )
    async with running(manager):
        owner = await client.create(configmap("owner", namespace))
        await eventually(lambda: Request(namespace, "owner") in seen, "the primary is reconciled")
        seen.clear()
        # A child controlled by the primary wakes the primary (the ConfigMap itself did not change).
        await client.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "child",
                    "namespace": namespace,
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "name": "owner",
                            "uid": owner["metadata"]["uid"],
                            "controller": True,
                        }
                    ],
                },
            }
        )
        await eventually(lambda: seen == [Request(namespace, "owner")], "the owned Secret enqueues its owner")
        # A Service names a primary through a label: mapped, even though no such ConfigMap exists.
        await client.create(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": "svc",
                    "namespace": namespace,
                    "labels": {"example.com/primary": "mapped"},
                },
                "spec": {"ports": [{"port": 80}]},
            }
        )
        await eventually(lambda: Request(namespace, "mapped") in seen, "the Service maps to its primary")
        assert Request(namespace, "child") not in seen and Request(namespace, "svc") not in seen
        # Deleting the child wakes the owner again.
        seen.clear()
        await client.delete(SECRET, "child", namespace)
        await eventually(lambda: Request(namespace, "owner") in seen, "deleting the child enqueues its owner")
        with contextlib.suppress(NotFound):
            await client.delete(SERVICE, "svc", namespace)


async def test_watched_and_owned_kinds_are_cached_through_their_transform(
    client: Client, namespace: str
) -> None:
    name = controller_name("transform")
    mapped: list[dict[str, Any]] = []

    def without_values(obj: dict[str, Any]) -> dict[str, Any]:
        # What a controller caching Secrets does: keep the keys, never the values.
        return {**obj, "data": dict.fromkeys(obj.get("data") or {}, "")}

    def secret_to_primary(secret: dict[str, Any]) -> list[Request]:
        mapped.append(secret)
        return [Request(namespace, secret["metadata"]["name"])]

    async def reconcile(request: Request) -> None:
        return None

    manager = Manager(client, manager_options(namespace))
    (
        manager.controller(name)
        .for_kind(CM)
        .owns(SERVICE, transform=without_values)
        .watches(SECRET, map_to=secret_to_primary, transform=without_values)
        .complete(reconcile)
    )
    await client.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "token", "namespace": namespace},
            "data": {"token": "c2VjcmV0"},
        }
    )
    async with running(manager):
        await eventually(lambda: mapped, "the Secret is mapped")
        assert mapped[0]["data"] == {"token": ""}
        cached = manager.cache.get(SECRET, "token", namespace)
        assert cached is not None and cached["data"] == {"token": ""}
        assert "managedFields" in cached["metadata"], (
            "a transform replaces the default, it does not add to it"
        )
        # The owned kind's informer was created with the same transform: asking for the default fails.
        with pytest.raises(ValueError, match="v1/Service is already cached with transform"):
            manager.cache.informer(SERVICE)
