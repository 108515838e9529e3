"""The finalizer helper against a real kube-apiserver: order of add/apply/cleanup, and no clobbering."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from agentkube.runtime import (
    GVK,
    Client,
    ExponentialFailureRateLimiter,
    Finalizer,
    GenerationChanged,
    Manager,
    NotFound,
    Request,
    Result,
)
from agentkube.testing import ControlPlane
from test.integration.runtime_helpers import (
    CM,
    configmap,
    eventually,
    installed_crd,
    manager_options,
    running,
    schemaless_crd,
)

pytestmark = pytest.mark.integration

OURS = "finalizers.agentkube.io/cleanup"
EVENT = GVK("events.k8s.io", "v1", "Event")
_names = itertools.count()


async def finalizers_of(client: Client, name: str, namespace: str) -> list[str]:
    obj = await client.get(CM, name, namespace)
    return list(obj["metadata"].get("finalizers") or [])


async def gone(client: Client, gvk: GVK, name: str, namespace: str) -> bool:
    try:
        await client.get(gvk, name, namespace)
    except NotFound:
        return True
    return False


class Calls:
    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []
        self.cleaned: list[dict[str, Any]] = []

    async def apply(self, obj: dict[str, Any]) -> Result | None:
        self.applied.append(obj)
        return None

    async def cleanup(self, obj: dict[str, Any]) -> Result | None:
        self.cleaned.append(obj)
        return None


async def test_our_finalizer_is_stored_before_apply_runs_and_others_are_kept(
    client: Client, namespace: str
) -> None:
    obj = await client.create(configmap("a", namespace, finalizers=["other.example.com/keep"]))
    calls = Calls()
    finalizer = Finalizer(client, OURS)
    assert await finalizer.reconcile(obj, apply=calls.apply, cleanup=calls.cleanup) is None
    assert len(calls.applied) == 1 and not calls.cleaned
    # apply got the object as stored with our finalizer: its side effects have their cleanup.
    assert calls.applied[0]["metadata"]["finalizers"] == ["other.example.com/keep", OURS]
    assert await finalizers_of(client, "a", namespace) == ["other.example.com/keep", OURS]
    # Present already: apply runs again, no write.
    rv = calls.applied[0]["metadata"]["resourceVersion"]
    await finalizer.reconcile(calls.applied[0], apply=calls.apply, cleanup=calls.cleanup)
    assert (await client.get(CM, "a", namespace))["metadata"]["resourceVersion"] == rv


async def test_deletion_runs_cleanup_and_removes_only_our_finalizer(client: Client, namespace: str) -> None:
    keep = ["a.example.com/first", OURS, "b.example.com/last"]
    await client.create(configmap("b", namespace, finalizers=keep))
    await client.delete(CM, "b", namespace)
    deleting = await client.get(CM, "b", namespace)
    calls = Calls()
    await Finalizer(client, OURS).reconcile(deleting, apply=calls.apply, cleanup=calls.cleanup)
    assert len(calls.cleaned) == 1 and not calls.applied
    assert await finalizers_of(client, "b", namespace) == ["a.example.com/first", "b.example.com/last"]


async def test_a_stale_copy_never_clobbers_another_controllers_finalizers(
    client: Client, namespace: str
) -> None:
    # Add from a copy read before another controller added its finalizer.
    stale = await client.create(configmap("c", namespace))
    await client.patch(CM, "c", namespace, {"metadata": {"finalizers": ["other.example.com/early"]}})
    finalizer = Finalizer(client, OURS)
    added = await finalizer.add(stale)
    assert added is not None
    assert await finalizers_of(client, "c", namespace) == ["other.example.com/early", OURS]

    # Remove from a copy in which ours is at index 1; the other controller's has gone meanwhile,
    # and a third one added its own: ours is now at index 0, theirs must stay.
    await client.patch(
        CM,
        "c",
        namespace,
        [
            {"op": "remove", "path": "/metadata/finalizers/0"},
            {"op": "add", "path": "/metadata/finalizers/-", "value": "third.example.com/late"},
        ],
        patch_type="json",
    )
    await finalizer.remove(added)
    assert await finalizers_of(client, "c", namespace) == ["third.example.com/late"]


async def test_a_recreated_object_of_the_same_name_is_not_touched(client: Client, namespace: str) -> None:
    old = await client.create(configmap("d", namespace, finalizers=[OURS]))
    await client.delete(CM, "d", namespace)
    await client.patch(CM, "d", namespace, {"metadata": {"finalizers": None}})
    await eventually(lambda: gone(client, CM, "d", namespace), "the old object is gone")
    await client.create(configmap("d", namespace, finalizers=[OURS, "other.example.com/x"]))
    assert await Finalizer(client, OURS).remove(old) is None
    assert await finalizers_of(client, "d", namespace) == [OURS, "other.example.com/x"]


async def test_an_object_deleted_before_our_finalizer_was_added_needs_no_cleanup(
    client: Client, namespace: str
) -> None:
    await client.create(configmap("e", namespace, finalizers=["other.example.com/holds"]))
    await client.delete(CM, "e", namespace)
    deleting = await client.get(CM, "e", namespace)
    calls = Calls()
    finalizer = Finalizer(client, OURS)
    assert await finalizer.reconcile(deleting, apply=calls.apply, cleanup=calls.cleanup) is None
    assert not calls.applied and not calls.cleaned
    assert await finalizers_of(client, "e", namespace) == ["other.example.com/holds"]
    # A copy read before the delete: adding is refused (re-read shows the deletion), nothing runs.
    assert (
        await finalizer.reconcile(
            {**deleting, "metadata": {**deleting["metadata"], "deletionTimestamp": None}},
            apply=calls.apply,
            cleanup=calls.cleanup,
        )
        is None
    )
    assert not calls.applied and not calls.cleaned
    assert await finalizers_of(client, "e", namespace) == ["other.example.com/holds"]


async def test_a_controller_with_generation_changed_cleans_up_after_failures_and_reports_them(
    client: Client, namespace: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    n = next(_names)
    gvk = GVK("finalizers.agentkube.io", "v1", f"Bucket{n}")
    crd = schemaless_crd(gvk, f"buckets{n}")
    name = f"it-finalizer-{n}"
    manager = Manager(client, manager_options(namespace))
    recorder = manager.event_recorder(name)
    finalizer = Finalizer(client, OURS, recorder=recorder)
    external: set[str] = set()
    failures_left = 2

    async def apply(obj: dict[str, Any]) -> Result | None:
        assert OURS in obj["metadata"]["finalizers"]
        external.add(obj["metadata"]["name"])
        return None

    async def cleanup(obj: dict[str, Any]) -> Result | None:
        nonlocal failures_left
        if failures_left:
            failures_left -= 1
            raise OSError("storage backend unreachable")
        external.discard(obj["metadata"]["name"])
        return None

    async def reconcile(request: Request) -> Result | None:
        obj = manager.cache.get(gvk, request.name, request.namespace)
        return await finalizer.reconcile(obj, apply=apply, cleanup=cleanup)

    async with installed_crd(control_plane, crd, tmp_path):
        (
            manager.controller(name)
            .for_kind(gvk, predicates=[GenerationChanged()])
            .with_options(rate_limiter=ExponentialFailureRateLimiter(0.05, 1.0))
            .complete(reconcile)
        )
        async with running(manager):
            obj = {
                "apiVersion": gvk.api_version,
                "kind": gvk.kind,
                "metadata": {"name": "b1", "namespace": namespace},
                "spec": {"size": 1},
            }
            await client.create(obj)
            # The finalizer add does not bump the generation (so its event is filtered out): apply
            # must have run in the same reconcile.
            await eventually(lambda: "b1" in external, "apply ran after the finalizer was added")
            await client.delete(gvk, "b1", namespace)
            await eventually(lambda: gone(client, gvk, "b1", namespace), "the object is deleted")
            assert "b1" not in external
            assert failures_left == 0

            async def reported() -> bool:
                items, _ = await client.list(EVENT, namespace, field_selector="regarding.name=b1")
                return any(e.get("reason") == "FinalizerCleanupFailed" for e in items)

            await eventually(reported, "the failed cleanup is reported as an Event")
            items, _ = await client.list(EVENT, namespace, field_selector="regarding.name=b1")
            note = next(e["note"] for e in items if e.get("reason") == "FinalizerCleanupFailed")
            assert OURS in note and "storage backend unreachable" in note
