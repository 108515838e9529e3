"""The client against a real kube-apiserver: reads, watches, writes, apply, errors, timeouts, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from agentkube.runtime import metrics
from agentkube.runtime.client import Client
from agentkube.runtime.errors import (
    AlreadyExists,
    Conflict,
    Invalid,
    KindNotServed,
    NotFound,
    RequestTimeout,
    ServerUnreachable,
    WatchStalled,
)
from agentkube.runtime.gvk import GVK
from agentkube.testing.controlplane import ControlPlane

pytestmark = pytest.mark.integration

CM = GVK("", "v1", "ConfigMap")
WIDGET = GVK("clienttest.agentkube.io", "v1", "Widget")

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.clienttest.agentkube.io"},
    "spec": {
        "group": "clienttest.agentkube.io",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                            },
                            "status": {
                                "type": "object",
                                "properties": {"phase": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


CRD = GVK("apiextensions.k8s.io", "v1", "CustomResourceDefinition")


async def install_crd(client: Client, crd: dict[str, Any], kind: GVK) -> None:
    """Apply ``crd`` and wait until discovery serves ``kind`` (CRDs take a moment to be served)."""
    await client.apply(crd)
    async with asyncio.timeout(30):
        while True:
            client.forget_discovery(kind)
            try:
                await client.resource(kind)
                return
            except KindNotServed:
                await asyncio.sleep(0.1)


@pytest.fixture
async def widget_crd(client: Client) -> GVK:
    await install_crd(client, WIDGET_CRD, WIDGET)
    return WIDGET


def configmap(namespace: str, name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def requests_counted(client: Client, code: str, method: str) -> float:
    host = client.host.split("://", 1)[1]
    value = metrics.REGISTRY.get_sample_value(
        "rest_client_requests_total", {"code": code, "method": method, "host": host}
    )
    return value or 0.0


@contextlib.contextmanager
def apiserver_frozen(control_plane: ControlPlane) -> Iterator[None]:
    """Freeze kube-apiserver (SIGSTOP): its sockets stay open but nothing answers, exactly like a
    half-open connection to a dead peer."""
    if control_plane.apiserver is None or control_plane.apiserver.pid is None:
        pytest.skip("needs a kube-apiserver this test session started")
    pid = control_plane.apiserver.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def next_event(events: AsyncIterator[dict[str, Any]], within: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        return await anext(events)


# ----------------------------------------------------------------------------------- reads and writes


async def test_create_then_get_returns_the_object(client: Client, namespace: str) -> None:
    created = await client.create(configmap(namespace, "one", k="v"))
    got = await client.get(CM, "one", namespace)
    assert got["data"] == {"k": "v"}
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    assert (got["apiVersion"], got["kind"]) == ("v1", "ConfigMap")


async def test_get_of_a_missing_object_raises_not_found_with_the_server_message(
    client: Client, namespace: str
) -> None:
    with pytest.raises(NotFound) as info:
        await client.get(CM, "absent", namespace)
    assert info.value.status == 404
    assert info.value.reason == "NotFound"
    assert '"absent" not found' in info.value.message


async def test_create_of_a_taken_name_raises_already_exists(client: Client, namespace: str) -> None:
    await client.create(configmap(namespace, "taken"))
    with pytest.raises(AlreadyExists) as info:
        await client.create(configmap(namespace, "taken"))
    assert isinstance(info.value, Conflict)
    assert info.value.status == 409


async def test_invalid_object_raises_invalid_naming_every_field(client: Client, namespace: str) -> None:
    bad = configmap(namespace, "Not_A_Valid_Name")
    bad["data"] = {"bad key!": "x"}
    with pytest.raises(Invalid) as info:
        await client.create(bad)
    fields = {cause.get("field") for cause in info.value.causes}
    assert "metadata.name" in fields
    assert any(f and f.startswith("data[bad key!]") for f in fields)
    assert "metadata.name" in str(info.value) and "data[bad key!]" in str(info.value)


async def test_delete_removes_the_object_and_a_second_delete_raises_not_found(
    client: Client, namespace: str
) -> None:
    await client.create(configmap(namespace, "doomed"))
    await client.delete(CM, "doomed", namespace)
    with pytest.raises(NotFound):
        await client.get(CM, "doomed", namespace)
    with pytest.raises(NotFound):
        await client.delete(CM, "doomed", namespace)


async def test_delete_with_a_stale_uid_precondition_raises_conflict(client: Client, namespace: str) -> None:
    await client.create(configmap(namespace, "guarded"))
    with pytest.raises(Conflict):
        await client.delete(CM, "guarded", namespace, uid="00000000-0000-0000-0000-000000000000")
    assert (await client.get(CM, "guarded", namespace))["metadata"]["name"] == "guarded"


async def test_replace_with_a_stale_resource_version_raises_conflict(client: Client, namespace: str) -> None:
    created = await client.create(configmap(namespace, "cas", k="1"))
    first = dict(created, data={"k": "2"})
    replaced = await client.replace(first)
    assert replaced["data"] == {"k": "2"}
    stale = dict(created, data={"k": "3"})  # still carries the first resourceVersion
    with pytest.raises(Conflict):
        await client.replace(stale)


async def test_merge_and_json_patches_change_only_what_they_name(client: Client, namespace: str) -> None:
    await client.create(configmap(namespace, "patched", a="1", b="2"))
    merged = await client.patch(CM, "patched", namespace, {"data": {"a": "10", "b": None}})
    assert merged["data"] == {"a": "10"}
    jsoned = await client.patch(
        CM, "patched", namespace, [{"op": "add", "path": "/data/c", "value": "3"}], patch_type="json"
    )
    assert jsoned["data"] == {"a": "10", "c": "3"}


async def test_dry_run_create_persists_nothing(client: Client, namespace: str) -> None:
    answer = await client.create(configmap(namespace, "dry"), dry_run=True)
    assert answer["metadata"]["name"] == "dry"
    with pytest.raises(NotFound):
        await client.get(CM, "dry", namespace)


# ----------------------------------------------------------------------------------- list


async def test_list_follows_continue_through_every_page(client: Client, namespace: str) -> None:
    for i in range(7):
        await client.create(configmap(namespace, f"page-{i}"))
    before = requests_counted(client, "200", "GET")
    items, resource_version = await client.list(CM, namespace, limit=3)
    pages = requests_counted(client, "200", "GET") - before
    names = sorted(item["metadata"]["name"] for item in items if item["metadata"]["name"].startswith("page-"))
    assert names == [f"page-{i}" for i in range(7)]
    assert pages >= 3  # 7 objects (plus the namespace's kube-root-ca.crt, if any) at 3 a page
    assert all((item["apiVersion"], item["kind"]) == ("v1", "ConfigMap") for item in items)
    assert int(resource_version) > 0


async def test_list_filters_by_label_selector(client: Client, namespace: str) -> None:
    labelled = configmap(namespace, "labelled")
    labelled["metadata"]["labels"] = {"team": "a"}
    await client.create(labelled)
    await client.create(configmap(namespace, "plain"))
    items, _ = await client.list(CM, namespace, label_selector="team=a")
    assert [item["metadata"]["name"] for item in items] == ["labelled"]


async def test_metadata_only_list_returns_metadata_keyed_as_the_kind(client: Client, namespace: str) -> None:
    await client.create(configmap(namespace, "meta", secret="do-not-fetch"))
    items, resource_version = await client.list(CM, namespace, metadata_only=True)
    (item,) = [i for i in items if i["metadata"]["name"] == "meta"]
    assert set(item) == {"apiVersion", "kind", "metadata"}
    assert (item["apiVersion"], item["kind"]) == ("v1", "ConfigMap")
    assert item["metadata"]["resourceVersion"]
    assert resource_version


# ----------------------------------------------------------------------------------- watch


async def test_watch_delivers_added_modified_deleted_in_order(client: Client, namespace: str) -> None:
    _, resource_version = await client.list(CM, namespace)
    events = client.watch(CM, namespace, resource_version=resource_version, timeout_seconds=30)
    async with contextlib.aclosing(events):
        await client.create(configmap(namespace, "watched", k="1"))
        await client.patch(CM, "watched", namespace, {"data": {"k": "2"}})
        await client.delete(CM, "watched", namespace)
        seen = []
        while len(seen) < 3:
            event = await next_event(events)
            if event["type"] != "BOOKMARK":
                seen.append(event)
    assert [e["type"] for e in seen] == ["ADDED", "MODIFIED", "DELETED"]
    assert [e["object"]["data"]["k"] for e in seen] == ["1", "2", "2"]
    assert all(e["object"]["kind"] == "ConfigMap" for e in seen)


async def test_watch_ends_when_the_server_closes_it_after_a_bookmark(client: Client, namespace: str) -> None:
    _, resource_version = await client.list(CM, namespace)
    await client.create(configmap(namespace, "ticker", n="0"))
    types: list[str] = []
    last_rv = resource_version
    started = time.monotonic()
    async with asyncio.timeout(30):
        async for event in client.watch(CM, namespace, resource_version=resource_version, timeout_seconds=8):
            types.append(event["type"])
            last_rv = event["object"]["metadata"]["resourceVersion"]
            if types == ["ADDED"]:
                # The watcher is registered now; the apiserver schedules bookmarks for watchers that
                # have been sent a live event.
                await client.patch(CM, "ticker", namespace, {"data": {"n": "1"}})
    assert time.monotonic() - started >= 7
    # kube-apiserver sends a bookmark shortly before a watch's deadline so the client can resume
    # from a recent resourceVersion rather than from its last change.
    assert types[:2] == ["ADDED", "MODIFIED"]
    assert types[2:] and set(types[2:]) == {"BOOKMARK"}
    assert int(last_rv) > int(resource_version)


async def test_metadata_only_watch_yields_metadata_keyed_as_the_kind(client: Client, namespace: str) -> None:
    _, resource_version = await client.list(CM, namespace, metadata_only=True)
    events = client.watch(
        CM, namespace, resource_version=resource_version, timeout_seconds=30, metadata_only=True
    )
    async with contextlib.aclosing(events):
        await client.create(configmap(namespace, "meta-watched", big="x" * 1000))
        event = await next_event(events)
    assert event["type"] == "ADDED"
    assert set(event["object"]) == {"apiVersion", "kind", "metadata"}
    assert event["object"]["kind"] == "ConfigMap"
    assert event["object"]["metadata"]["name"] == "meta-watched"


async def test_watch_that_goes_silent_raises_watch_stalled(
    client: Client, namespace: str, control_plane: ControlPlane
) -> None:
    _, resource_version = await client.list(CM, namespace)
    events = client.watch(
        CM, namespace, resource_version=resource_version, timeout_seconds=60, inactivity_timeout=1.0
    )
    async with contextlib.aclosing(events):
        await client.create(configmap(namespace, "before-freeze"))
        assert (await next_event(events))["type"] == "ADDED"
        with apiserver_frozen(control_plane), pytest.raises(WatchStalled):
            await next_event(events, within=10)


# ----------------------------------------------------------------------------------- apply


async def test_apply_creates_then_updates_and_apply_status_sets_only_status(
    client: Client, namespace: str, widget_crd: GVK
) -> None:
    client.forget_discovery(widget_crd)
    desired = {
        "apiVersion": "clienttest.agentkube.io/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": namespace},
        "spec": {"size": 1},
    }
    created = await client.apply(desired)
    assert created["spec"] == {"size": 1}
    desired["spec"]["size"] = 3
    updated = await client.apply(desired)
    assert updated["spec"] == {"size": 3}
    assert updated["metadata"]["generation"] == 2
    managers = {m["manager"] for m in updated["metadata"]["managedFields"]}
    assert managers == {"agentkube"}

    status = {
        "apiVersion": "clienttest.agentkube.io/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": namespace},
        "status": {"phase": "Ready"},
    }
    with_status = await client.apply(status, subresource="status", field_manager="agentkube-status")
    assert with_status["status"] == {"phase": "Ready"}
    assert with_status["spec"] == {"size": 3}
    assert with_status["metadata"]["generation"] == 2  # status writes do not bump generation
    # Through the main resource, status is ignored for kinds with a status subresource.
    desired["status"] = {"phase": "Broken"}
    assert (await client.apply(desired))["status"] == {"phase": "Ready"}


async def test_apply_dry_run_validates_without_persisting(
    client: Client, namespace: str, widget_crd: GVK
) -> None:
    widget = {
        "apiVersion": "clienttest.agentkube.io/v1",
        "kind": "Widget",
        "metadata": {"name": "dry", "namespace": namespace},
        "spec": {"size": 2},
    }
    answer = await client.apply(widget, dry_run=True)
    assert answer["spec"] == {"size": 2}
    with pytest.raises(NotFound):
        await client.get(WIDGET, "dry", namespace)
    widget["spec"]["size"] = 0
    with pytest.raises(Invalid) as info:
        await client.apply(widget, dry_run=True)
    assert any(c.get("field") == "spec.size" for c in info.value.causes)


async def test_apply_requires_a_name(client: Client, namespace: str) -> None:
    with pytest.raises(ValueError, match=r"metadata\.name"):
        await client.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": namespace}})


# ----------------------------------------------------------------------------------- discovery


async def test_unknown_kind_raises_kind_not_served_naming_it(client: Client) -> None:
    with pytest.raises(KindNotServed, match=r"Gizmo.*example\.com/v1"):
        await client.resource(GVK("example.com", "v1", "Gizmo"))
    with pytest.raises(KindNotServed, match="Gizmo"):
        await client.get(GVK("", "v1", "Gizmo"), "x", "default")
    assert not isinstance(KindNotServed("v1", "Gizmo"), NotFound)


async def test_discovery_describes_scope_plural_and_subresources(client: Client) -> None:
    pods = await client.resource(GVK("", "v1", "Pod"))
    assert pods.plural == "pods" and pods.namespaced
    assert {"status", "log", "eviction"} <= pods.subresources
    assert pods.path("ns", "p", "status") == "/api/v1/namespaces/ns/pods/p/status"
    namespaces = await client.resource(GVK("", "v1", "Namespace"))
    assert not namespaces.namespaced
    assert namespaces.path("ignored", "n") == "/api/v1/namespaces/n"
    deployments = await client.resource(GVK("apps", "v1", "Deployment"))
    assert deployments.path("ns") == "/apis/apps/v1/namespaces/ns/deployments"
    assert "scale" in deployments.subresources


async def test_a_crd_installed_later_is_found_after_forget_discovery(client: Client) -> None:
    crd = copy.deepcopy(WIDGET_CRD)
    crd["metadata"]["name"] = "gadgets.latecomer.agentkube.io"
    crd["spec"]["group"] = "latecomer.agentkube.io"
    crd["spec"]["names"] = {
        "plural": "gadgets",
        "singular": "gadget",
        "kind": "Gadget",
        "listKind": "GadgetList",
    }
    gadget = GVK("latecomer.agentkube.io", "v1", "Gadget")
    with pytest.raises(KindNotServed):
        await client.resource(gadget)
    await install_crd(client, crd, gadget)  # polls forget_discovery() + resource() until served
    assert (await client.resource(gadget)).plural == "gadgets"
    assert (await client.get(CRD, "gadgets.latecomer.agentkube.io"))["spec"][
        "group"
    ] == "latecomer.agentkube.io"


# ----------------------------------------------------------------------------------- timeouts, metrics


async def test_request_timeout_is_honoured_on_a_server_that_does_not_answer(
    control_plane: ControlPlane,
) -> None:
    assert control_plane.kubeconfig is not None
    client = await Client.from_kubeconfig(str(control_plane.kubeconfig), request_timeout=1.0)
    try:
        await client.resource(CM)  # discovery cached, so only the GET itself can hang
        started = time.monotonic()
        with apiserver_frozen(control_plane), pytest.raises(RequestTimeout, match="1 s"):
            await client.get(CM, "anything", "default")
        assert time.monotonic() - started < 5
    finally:
        await client.close()


async def test_requests_are_counted_by_code_method_and_host(client: Client, namespace: str) -> None:
    await client.resource(CM)
    gets_ok = requests_counted(client, "200", "GET")
    gets_missing = requests_counted(client, "404", "GET")
    posts = requests_counted(client, "201", "POST")
    await client.create(configmap(namespace, "counted"))
    await client.get(CM, "counted", namespace)
    with pytest.raises(NotFound):
        await client.get(CM, "uncounted", namespace)
    assert requests_counted(client, "201", "POST") == posts + 1
    assert requests_counted(client, "200", "GET") == gets_ok + 1
    assert requests_counted(client, "404", "GET") == gets_missing + 1


# ----------------------------------------------------------------------------------- exec credentials

EXEC_PLUGIN = """
import json, pathlib, sys
counter = pathlib.Path(sys.argv[1])
runs = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(runs + 1))
status = {"token": sys.argv[2] if runs >= int(sys.argv[3]) else "rejected-token"}
if len(sys.argv) > 4:
    status["expirationTimestamp"] = sys.argv[4]
credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": status}
print(json.dumps(credential))
"""


def service_account_token(control_plane: ControlPlane, namespace: str) -> str:
    control_plane.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
    )
    # Not the "view" ClusterRole: it is aggregated, and nothing aggregates without a controller manager.
    control_plane.request(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        },
    )
    control_plane.request(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    answer = control_plane.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/reader/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    return str(answer["status"]["token"])


def exec_kubeconfig(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, *plugin_args: str
) -> tuple[Path, Path]:
    """A kubeconfig whose user runs ``EXEC_PLUGIN`` with (counter file, a service account token of
    ``namespace``, *plugin_args), and the counter file (how many times the plugin ran)."""
    if control_plane.apiserver is None:
        pytest.skip("needs a kube-apiserver this test session started")
    assert control_plane.kubeconfig is not None
    token = service_account_token(control_plane, namespace)
    counter = tmp_path / "runs"
    admin = yaml.safe_load(control_plane.kubeconfig.read_text())
    plugin = tmp_path / "plugin.py"
    plugin.write_text(EXEC_PLUGIN)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [
            {
                "name": "exec",
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1",
                        "command": sys.executable,
                        "args": [str(plugin), str(counter), token, *plugin_args],
                        "interactiveMode": "Never",
                    }
                },
            }
        ],
        "contexts": [{"name": "exec", "context": {"cluster": admin["clusters"][0]["name"], "user": "exec"}}],
        "current-context": "exec",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path, counter


async def test_exec_plugin_is_rerun_after_a_401_and_the_request_retried(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    # The first run (while loading the config) hands out a token the server rejects.
    kubeconfig, counter = exec_kubeconfig(control_plane, namespace, tmp_path, "1")
    client = await Client.from_kubeconfig(str(kubeconfig))
    try:
        items, _ = await client.list(CM, namespace)
        assert isinstance(items, list)
        assert counter.read_text() == "2"
        assert requests_counted(client, "401", "GET") >= 1
        await client.list(CM, namespace)
        assert counter.read_text() == "2"  # a token without expiry is kept while it works
    finally:
        await client.close()


async def test_exec_plugin_token_near_expiry_is_refreshed_before_each_request(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    # An expiry one minute away is inside the refresh margin, so every request asks the plugin again.
    expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
    kubeconfig, counter = exec_kubeconfig(control_plane, namespace, tmp_path, "0", expiry)
    client = await Client.from_kubeconfig(str(kubeconfig))
    try:
        await client.list(CM, namespace)
        runs = int(counter.read_text())
        await client.list(CM, namespace)
        assert int(counter.read_text()) == runs + 1
    finally:
        await client.close()


# ------------------------------------------------------------------------------------------ the proxy


async def test_the_environments_proxy_is_used_and_no_proxy_honoured_looked_up_once(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentkube.testing.podnet import ServiceRouter

    assert control_plane.kubeconfig is not None
    async with ServiceRouter() as router:  # a real forward proxy that speaks CONNECT
        monkeypatch.setenv("HTTPS_PROXY", f"http://{router.proxy_address}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with await Client.from_kubeconfig(str(control_plane.kubeconfig)) as through:
            # Changing the environment afterwards changes nothing: it was read once.
            monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
            lookups: list[object] = []
            real = aiohttp.client.get_env_proxy_for_url
            monkeypatch.setattr(
                aiohttp.client, "get_env_proxy_for_url", lambda url: lookups.append(url) or real(url)
            )
            for _ in range(5):
                assert (await through.get(GVK("", "v1", "Namespace"), "default"))["metadata"][
                    "name"
                ] == "default"
            assert lookups == [], "aiohttp looked the proxy up per request (in a worker thread)"
    # A proxy that does not answer: each request fails to connect through it, unless NO_PROXY exempts it.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    async with await Client.from_kubeconfig(str(control_plane.kubeconfig), request_timeout=5) as broken:
        with pytest.raises(ServerUnreachable, match="cannot connect to"):
            await broken.get(GVK("", "v1", "Namespace"), "default")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    async with await Client.from_kubeconfig(str(control_plane.kubeconfig)) as direct:
        assert (await direct.get(GVK("", "v1", "Namespace"), "default"))["metadata"]["name"] == "default"
