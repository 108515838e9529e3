"""The informer cache against a real kube-apiserver: list+watch, resumed watches, 410 relists, outages."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from agentkube.runtime.cache import Cache, NotCached
from agentkube.runtime.client import Client
from agentkube.runtime.gvk import GVK, ObjectKey
from agentkube.runtime.informer import Event, EventType, Informer
from agentkube.runtime.metrics import REGISTRY
from agentkube.runtime.store import INDEX_OWNER_UID
from agentkube.testing.controlplane import ControlPlane
from test.integration.runtime_helpers import (
    CM,
    DEADLINE,
    configmap,
    eventually,
    installed_crd,
    schemaless_crd,
)

pytestmark = pytest.mark.integration


# ----------------------------------------------------------------------------------------- helpers


class Recorder:
    """A handler that keeps every event it is given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    @classmethod
    def attached_to(cls, informer: Informer) -> Recorder:
        recorder = cls()
        informer.add_handler(recorder)
        return recorder

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, name: str) -> list[str]:
        return [e.type.value for e in self.events if e.obj["metadata"]["name"] == name]

    def names(self, kind: EventType) -> list[str]:
        return [e.obj["metadata"]["name"] for e in self.events if e.type is kind]


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(informer.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def cached(informer: Informer, namespace: str, name: str) -> dict[str, Any]:
    obj = informer.store.get(ObjectKey(namespace, name))
    assert obj is not None, f"{namespace}/{name} is not cached"
    return obj


def cached_names(informer: Informer) -> list[str]:
    return sorted(o["metadata"]["name"] for o in informer.store.list())


def etcd(control_plane: ControlPlane, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """One call to etcd's JSON gateway (the gRPC API over HTTP)."""
    import urllib.request

    req = urllib.request.Request(
        control_plane.etcd_url + path,
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        result: dict[str, Any] = orjson.loads(resp.read())
        return result


def compact_etcd(control_plane: ControlPlane) -> int:
    """Compact etcd's history up to its current revision; returns that revision."""
    # range over a key that does not exist: the answer's header still carries the current revision.
    header = etcd(control_plane, "/v3/kv/range", {"key": "AA=="})["header"]
    revision = int(header["revision"])
    etcd(control_plane, "/v3/kv/compaction", {"revision": str(revision), "physical": True})
    return revision


def gauge(kind: str) -> float:
    return REGISTRY.get_sample_value("agentkube_cache_objects", {"kind": kind}) or 0.0


# ------------------------------------------------------------------------------------ list + watch


async def test_initial_list_is_delivered_as_added_before_sync_completes(
    client: Client, namespace: str
) -> None:
    for name in ("a", "b", "c"):
        await client.create(configmap(name, namespace))
    informer = Informer(client, CM, namespace=namespace)
    seen = Recorder.attached_to(informer)
    async with running(informer):
        assert await informer.wait_for_sync(DEADLINE)
        assert sorted(seen.names(EventType.ADDED)) == ["a", "b", "c"]
        assert cached_names(informer) == ["a", "b", "c"]
        assert informer.reflector.lists == 1


async def test_informer_sees_create_update_and_delete(client: Client, namespace: str) -> None:
    informer = Informer(client, CM, namespace=namespace)
    seen = Recorder.attached_to(informer)
    async with running(informer):
        assert await informer.wait_for_sync(DEADLINE)
        await client.create(configmap("web", namespace, {"v": "1"}))
        await eventually(lambda: seen.of("web") == ["ADDED"], "the create arrives")
        await client.patch(CM, "web", namespace, {"data": {"v": "2"}})
        await eventually(lambda: seen.of("web") == ["ADDED", "MODIFIED"], "the update arrives")
        modified = seen.events[-1]
        assert modified.obj["data"] == {"v": "2"}
        assert modified.old is not None and modified.old["data"] == {"v": "1"}
        assert informer.store.get(ObjectKey(namespace, "web")) is modified.obj
        await client.delete(CM, "web", namespace)
        await eventually(lambda: seen.of("web") == ["ADDED", "MODIFIED", "DELETED"], "the delete arrives")
        assert informer.store.get(ObjectKey(namespace, "web")) is None


async def test_cached_objects_have_no_managed_fields(client: Client, namespace: str) -> None:
    created = await client.create(configmap("a", namespace))
    assert created["metadata"].get("managedFields"), "the server should have sent managedFields"
    informer = Informer(client, CM, namespace=namespace)
    async with running(informer):
        assert await informer.wait_for_sync(DEADLINE)
        await client.create(configmap("b", namespace))
        await eventually(lambda: len(informer.store) == 2, "the watched object arrives")
        for obj in informer.store.list():
            assert "managedFields" not in obj["metadata"]
            assert obj["data"] == {"key": "value"}


async def test_metadata_only_informer_stores_only_metadata(client: Client, namespace: str) -> None:
    await client.create(configmap("listed", namespace, {"secret-ish": "x" * 1000}, labels={"a": "b"}))
    informer = Informer(client, CM, namespace=namespace, metadata_only=True)
    async with running(informer):
        assert await informer.wait_for_sync(DEADLINE)
        await client.create(configmap("watched", namespace, {"secret-ish": "y" * 1000}))
        await eventually(lambda: len(informer.store) == 2, "the watched object arrives")
        for obj in informer.store.list():
            assert set(obj) == {"apiVersion", "kind", "metadata"}
            assert (obj["apiVersion"], obj["kind"]) == ("v1", "ConfigMap")
            assert obj["metadata"]["uid"]
            assert "managedFields" not in obj["metadata"]
        assert cached(informer, namespace, "listed")["metadata"]["labels"] == {"a": "b"}


async def test_namespace_and_label_selector_scope_the_informer(
    client: Client, namespace: str, control_plane: ControlPlane
) -> None:
    elsewhere = f"{namespace[:50]}-other"
    control_plane.create_namespace(elsewhere)
    try:
        informer = Informer(client, CM, namespace=namespace, label_selector="team=a")
        seen = Recorder.attached_to(informer)
        await client.create(configmap("mine", namespace, labels={"team": "a"}))
        await client.create(configmap("other-team", namespace, labels={"team": "b"}))
        await client.create(configmap("other-ns", elsewhere, labels={"team": "a"}))
        async with running(informer):
            assert await informer.wait_for_sync(DEADLINE)
            assert cached_names(informer) == ["mine"]
            await client.create(configmap("late", namespace, labels={"team": "a"}))
            await client.create(configmap("late-other-ns", elsewhere, labels={"team": "a"}))
            await eventually(
                lambda: cached_names(informer) == ["late", "mine"], "the matching object arrives"
            )
            # Leaving the selector looks like a delete to a filtered watch.
            await client.patch(CM, "mine", namespace, {"metadata": {"labels": {"team": "b"}}})
            await eventually(
                lambda: seen.of("mine") == ["ADDED", "DELETED"], "the object leaves the selection"
            )
            assert cached_names(informer) == ["late"]
            assert not any(e.obj["metadata"]["namespace"] == elsewhere for e in seen.events)
    finally:
        control_plane.delete_namespace(elsewhere)


async def test_field_selector_scopes_the_informer(client: Client, namespace: str) -> None:
    for name in ("target", "bystander"):
        await client.create(configmap(name, namespace))
    informer = Informer(client, CM, namespace=namespace, field_selector="metadata.name=target")
    async with running(informer):
        assert await informer.wait_for_sync(DEADLINE)
        await client.patch(CM, "bystander", namespace, {"data": {"key": "changed"}})
        await client.patch(CM, "target", namespace, {"data": {"key": "changed"}})
        await eventually(
            lambda: cached(informer, namespace, "target")["data"] == {"key": "changed"}, "the update arrives"
        )
        assert cached_names(informer) == ["target"]


# --------------------------------------------------------------------------------------- handlers


async def test_handler_added_after_sync_gets_current_objects_as_added(client: Client, namespace: str) -> None:
    for name in ("a", "b"):
        await client.create(configmap(name, namespace))
    informer = Informer(client, CM, namespace=namespace)
    async with running(informer):
        assert await informer.wait_for_sync(DEADLINE)
        late = Recorder()
        informer.add_handler(late)
        assert sorted(late.names(EventType.ADDED)) == ["a", "b"]
        await client.create(configmap("c", namespace))
        await eventually(lambda: late.of("c") == ["ADDED"], "the late handler hears of new objects too")
        assert len(late.events) == 3


async def test_handler_that_raises_stops_neither_other_handlers_nor_the_informer(
    client: Client, namespace: str
) -> None:
    informer = Informer(client, CM, namespace=namespace)
    calls = 0

    def broken(event: Event) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("handler bug")

    seen = Recorder()
    informer.add_handler(broken)
    informer.add_handler(seen)
    async with running(informer) as task:
        assert await informer.wait_for_sync(DEADLINE)
        for name in ("a", "b"):
            await client.create(configmap(name, namespace))
        await eventually(lambda: seen.names(EventType.ADDED) == ["a", "b"], "both creates arrive")
        assert calls == 2
        assert not task.done()


async def test_resync_redelivers_the_store_as_resync_events(client: Client, namespace: str) -> None:
    await client.create(configmap("a", namespace))
    informer = Informer(client, CM, namespace=namespace, resync_period=0.3)
    seen = Recorder.attached_to(informer)
    async with running(informer):
        assert await informer.wait_for_sync(DEADLINE)
        await eventually(lambda: seen.of("a").count("RESYNC") >= 2, "two resyncs arrive")
        resync = next(e for e in seen.events if e.type is EventType.RESYNC)
        assert resync.obj is resync.old is informer.store.get(ObjectKey(namespace, "a"))
        assert seen.of("a")[0] == "ADDED"
        assert "MODIFIED" not in seen.of("a")
        assert informer.reflector.lists == 1


# ------------------------------------------------------------------------------- resuming watches


async def test_watch_closed_by_the_server_resumes_without_missing_an_event(
    client: Client, namespace: str
) -> None:
    # Watches of 2 s: the server ends several while objects are being created.
    informer = Informer(client, CM, namespace=namespace, watch_timeout=(2, 2))
    seen = Recorder.attached_to(informer)
    created: list[str] = []
    async with running(informer):
        assert await informer.wait_for_sync(DEADLINE)
        first_watch = informer.reflector.watches
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while informer.reflector.watches < first_watch + 3:
            assert loop.time() < deadline, "the server never closed the watch"
            name = f"cm-{len(created):03d}"
            await client.create(configmap(name, namespace))
            created.append(name)
            await asyncio.sleep(0.05)  # pacing: spread creates across watch boundaries
        await eventually(lambda: len(seen.events) >= len(created), "every create arrives")
        assert seen.names(EventType.ADDED) == created  # each once, in order
        assert len(seen.events) == len(created)
        assert informer.reflector.lists == 1, "resuming must not need a relist"


async def test_relists_after_410_and_delivers_deletes_missed_while_disconnected(
    client: Client, namespace: str, control_plane: ControlPlane
) -> None:
    for name in ("kept", "changed", "deleted"):
        await client.create(configmap(name, namespace))
    informer = Informer(client, CM, namespace=namespace)
    seen = Recorder.attached_to(informer)
    async with running(informer):
        assert await informer.wait_for_sync(DEADLINE)
    stale_rv = informer.resource_version
    kept_rv = cached(informer, namespace, "kept")["metadata"]["resourceVersion"]

    # While no watch is open: change the world, then make the informer's resourceVersion history.
    await client.delete(CM, "deleted", namespace)
    await client.patch(CM, "changed", namespace, {"data": {"key": "new"}})
    await client.create(configmap("added", namespace))
    assert compact_etcd(control_plane) > int(stale_rv)
    # The API server's watch cache would still replay from the old version; a restarted one starts
    # at the current revision, so a watch from the old version can only get 410 Gone.
    await asyncio.to_thread(control_plane.restart_apiserver)

    seen.events.clear()
    async with running(informer):
        await eventually(
            lambda: cached_names(informer) == ["added", "changed", "kept"],
            "the cache converges after the relist",
        )
        assert informer.reflector.lists == 2, "the 410 must have caused exactly one relist"
        assert sorted((e.type.value, e.obj["metadata"]["name"]) for e in seen.events) == [
            ("ADDED", "added"),
            ("DELETED", "deleted"),
            ("MODIFIED", "changed"),
        ]
        assert cached(informer, namespace, "changed")["data"] == {"key": "new"}
        # The unchanged object is untouched: same resourceVersion, no event.
        assert cached(informer, namespace, "kept")["metadata"]["resourceVersion"] == kept_rv
        # And the informer is live again afterwards.
        await client.create(configmap("after", namespace))
        await eventually(lambda: seen.of("after") == ["ADDED"], "watching resumes after the relist")


async def test_cache_recovers_when_the_apiserver_is_stopped_and_restarted(
    client: Client, namespace: str, control_plane: ControlPlane
) -> None:
    for name in ("stays", "goes", "changes"):
        await client.create(configmap(name, namespace))
    informer = Informer(client, CM, namespace=namespace)
    seen = Recorder.attached_to(informer)
    async with running(informer) as task:
        assert await informer.wait_for_sync(DEADLINE)
        await asyncio.to_thread(control_plane.stop_apiserver)
        # Let the reflector notice the outage (its watch breaks and retries fail) before the restart.
        watches = informer.reflector.watches
        await eventually(lambda: informer.reflector.watches > watches, "the reflector retries")
        await asyncio.to_thread(control_plane.start_apiserver)
        await client.delete(CM, "goes", namespace)
        await client.patch(CM, "changes", namespace, {"data": {"key": "changed"}})
        await client.create(configmap("new", namespace))
        await eventually(
            lambda: (
                cached_names(informer) == ["changes", "new", "stays"]
                and cached(informer, namespace, "changes")["data"] == {"key": "changed"}
            ),
            "the cache converges after the outage",
        )
        assert seen.of("goes") == ["ADDED", "DELETED"]
        assert seen.of("new") == ["ADDED"]
        assert seen.of("changes") == ["ADDED", "MODIFIED"]
        assert seen.of("stays") == ["ADDED"]
        assert not task.done()


async def test_kind_not_served_is_retried_until_its_crd_is_installed(
    client: Client, control_plane: ControlPlane, tmp_path: Path
) -> None:
    group = f"cachetest{secrets.token_hex(3)}.agentkube.io"
    gvk = GVK(group, "v1", "Gadget")
    crd = schemaless_crd(gvk, "gadgets", scope="Cluster")
    informer = Informer(client, gvk, namespace="ignored-for-cluster-scoped-kinds")
    async with running(informer) as task:
        assert not await informer.wait_for_sync(1.5)
        assert not task.done()
        async with installed_crd(control_plane, crd, tmp_path):
            await client.create({"apiVersion": f"{group}/v1", "kind": "Gadget", "metadata": {"name": "g1"}})
            assert await informer.wait_for_sync(DEADLINE)
            await eventually(lambda: cached_names(informer) == ["g1"], "the custom object is cached")


# ------------------------------------------------------------------------------------------- cache


async def test_cache_reads_from_its_informers_without_io(client: Client, namespace: str) -> None:
    owner = await client.create(configmap("owner", namespace))
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    await client.create(configmap("child", namespace, labels={"tier": "web"}, ownerReferences=[ref]))
    await client.create(configmap("loner", namespace, labels={"tier": "db"}))
    cache = Cache(client, default_namespace=namespace)
    cache.add_indexer(CM, "by-tier", lambda o: [(o["metadata"].get("labels") or {}).get("tier", "")])
    informer = cache.informer(CM)
    assert cache.informer(CM) is informer
    with pytest.raises(NotCached, match="v1/Secret"):
        cache.get(GVK("", "v1", "Secret"), "x", namespace)
    await cache.start()
    try:
        assert await cache.wait_for_sync(DEADLINE)
        child = cache.get(CM, "child", namespace)
        assert child is not None and child["metadata"]["labels"] == {"tier": "web"}
        assert cache.get(CM, "absent", namespace) is None
        assert sorted(o["metadata"]["name"] for o in cache.list(CM, namespace)) == ["child", "loner", "owner"]
        assert [o["metadata"]["name"] for o in cache.list(CM, index=(INDEX_OWNER_UID, ref["uid"]))] == [
            "child"
        ]
        assert [o["metadata"]["name"] for o in cache.list(CM, index=("by-tier", "db"))] == ["loner"]
        assert [o["metadata"]["name"] for o in cache.list(CM, namespace, label_selector="tier in (web)")] == [
            "child"
        ]
        # An informer created after start is started at once.
        meta = cache.informer(CM, metadata_only=True)
        assert await meta.wait_for_sync(DEADLINE)
        assert len(meta.store) == 3
        # Reads prefer the full-object informer over the metadata-only one.
        owner_cached = cache.get(CM, "owner", namespace)
        assert owner_cached is not None and "data" in owner_cached
    finally:
        await cache.stop()


async def test_cache_objects_gauge_counts_what_running_informers_hold(client: Client, namespace: str) -> None:
    baseline = gauge("v1/ConfigMap")
    for name in ("a", "b", "c"):
        await client.create(configmap(name, namespace))
    cache = Cache(client, default_namespace=namespace)
    informer = cache.informer(CM)
    await cache.start()
    try:
        assert await cache.wait_for_sync(DEADLINE)
        assert gauge("v1/ConfigMap") == baseline + 3
        await client.delete(CM, "a", namespace)
        await eventually(lambda: len(informer.store) == 2, "the delete arrives")
        assert gauge("v1/ConfigMap") == baseline + 2
    finally:
        await cache.stop()
    assert gauge("v1/ConfigMap") == baseline
