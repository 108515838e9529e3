"""The test control plane itself: real etcd + kube-apiserver, its kubeconfig, CRDs, isolation, cleanup."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio import watch as k8s_watch

from agentkube.testing import ControlPlane, ControlPlaneError, find_assets

pytestmark = pytest.mark.integration

KUBECTL = Path(sys.executable).with_name("kubectl")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes; its parent has simply not reaped it yet.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait_dead(pids: list[int], timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def test_version_reports_the_pinned_release(control_plane: ControlPlane) -> None:
    version = control_plane.request("GET", "/version")
    assert re.fullmatch(r"v1\.(3[4-9]|[4-9]\d)\.\d+", version["gitVersion"]), version
    assert version["gitTreeState"] == "clean"


async def test_configmap_create_get_list_watch_delete(control_plane: ControlPlane, namespace: str) -> None:
    async with await k8s_config.new_client_from_config(str(control_plane.kubeconfig)) as api_client:
        core = k8s.CoreV1Api(api_client)
        body = {"metadata": {"name": "settings"}, "data": {"greeting": "hello"}}
        created = await core.create_namespaced_config_map(namespace, body)
        start_rv = created.metadata.resource_version

        got = await core.read_namespaced_config_map("settings", namespace)
        assert got.data == {"greeting": "hello"}
        listed = await core.list_namespaced_config_map(namespace)
        assert [cm.metadata.name for cm in listed.items] == ["settings"]

        await core.patch_namespaced_config_map("settings", namespace, {"data": {"greeting": "hi"}})
        await core.delete_namespaced_config_map("settings", namespace)

        seen: list[tuple[str, str | None]] = []
        w = k8s_watch.Watch()
        async with asyncio.timeout(30):
            async for event in w.stream(
                core.list_namespaced_config_map, namespace, resource_version=start_rv, timeout_seconds=20
            ):
                seen.append((event["type"], (event["object"].data or {}).get("greeting")))
                if event["type"] == "DELETED":
                    w.stop()
        assert seen == [("MODIFIED", "hi"), ("DELETED", "hi")]
        with pytest.raises(k8s.ApiException) as missing:
            await core.read_namespaced_config_map("settings", namespace)
        assert missing.value.status == 404


def test_installs_a_crd_from_a_path_and_serves_its_objects(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.harness.agentkube.io"},
        "spec": {
            "group": "harness.agentkube.io",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}
                            },
                        }
                    },
                }
            ],
        },
    }
    (tmp_path / "widgets.yaml").write_text(yaml.safe_dump(crd))
    assert control_plane.install_crds([tmp_path]) == ["widgets.harness.agentkube.io"]

    path = f"/apis/harness.agentkube.io/v1/namespaces/{namespace}/widgets"
    widget = {"apiVersion": "harness.agentkube.io/v1", "kind": "Widget", "metadata": {"name": "w"}}
    control_plane.request("POST", path, {**widget, "spec": {"size": 3}})
    assert control_plane.request("GET", f"{path}/w")["spec"] == {"size": 3}


_NAMESPACES_SEEN: list[str] = []


@pytest.mark.parametrize("attempt", [1, 2])
def test_each_test_gets_its_own_empty_namespace(
    control_plane: ControlPlane, namespace: str, attempt: int
) -> None:
    # Both runs create the same name; each must see only its own object.
    assert namespace not in _NAMESPACES_SEEN
    _NAMESPACES_SEEN.append(namespace)
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    assert control_plane.request("GET", base)["items"] == []
    control_plane.request(
        "POST", base, {"metadata": {"name": "same-name"}, "data": {"attempt": str(attempt)}}
    )
    items = control_plane.request("GET", base)["items"]
    assert [(i["metadata"]["name"], i["data"]["attempt"]) for i in items] == [("same-name", str(attempt))]


def test_kubeconfig_works_with_kubectl(control_plane: ControlPlane, namespace: str) -> None:
    out = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(control_plane.kubeconfig), "get", "ns", namespace, "-o", "name"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip() == f"namespace/{namespace}"


_CHILD = textwrap.dedent(
    """
    import sys, time
    from agentkube.testing import ControlPlane
    with ControlPlane() as cp:
        print(" ".join(map(str, cp.pids)), flush=True)
        if sys.argv[1] == "raise":
            raise RuntimeError("test body failed")
        time.sleep(120)
    """
)


@pytest.mark.parametrize("how", ["raise", "sigint", "sigkill"])
def test_leaves_no_process_behind(how: str) -> None:
    """The harness stops etcd and kube-apiserver when the body raises, on Ctrl-C, and (by the
    parent-death signal) even when the test process is killed outright."""
    env = {**os.environ, "KUBEBUILDER_ASSETS": str(find_assets())}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    pids = [int(p) for p in line.split()]
    assert len(pids) == 2, f"child printed {line!r}; stderr: {child.stderr.read() if child.stderr else ''}"
    assert all(_alive(p) for p in pids)
    if how == "sigint":
        child.send_signal(signal.SIGINT)
    elif how == "sigkill":
        child.kill()
    child.wait(30)
    assert _wait_dead(pids) == [], f"left running after {how}: {pids}"
    if how == "raise":
        assert child.returncode != 0


def test_a_failed_start_reports_the_log_tail(tmp_path: Path) -> None:
    with pytest.raises(ControlPlaneError) as failed:
        ControlPlane(apiserver_flags=["--no-such-flag=1"], start_timeout=30).start()
    message = str(failed.value)
    assert "kube-apiserver exited" in message
    assert "no-such-flag" in message


def test_user_kubeconfig_is_held_to_its_rbac(control_plane: ControlPlane, namespace: str) -> None:
    user = f"system:serviceaccount:{namespace}:reader"
    kubeconfig = control_plane.user_kubeconfig(user, ["system:serviceaccounts"])
    get = [str(KUBECTL), "--kubeconfig", str(kubeconfig), "-n", namespace, "get", "configmaps", "-o", "name"]

    denied = subprocess.run(get, capture_output=True, text=True)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()

    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    control_plane.request(
        "POST",
        f"{rbac}/roles",
        {
            "metadata": {"name": "reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
        },
    )
    control_plane.request(
        "POST",
        f"{rbac}/rolebindings",
        {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    deadline = time.monotonic() + 10  # RBAC is read through the API server's informer: poll briefly
    while (allowed := subprocess.run(get, capture_output=True, text=True)).returncode != 0:
        assert time.monotonic() < deadline, allowed.stderr
        time.sleep(0.1)
