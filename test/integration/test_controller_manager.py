"""kube-controller-manager in the test control plane: what its controllers do for the objects we make,
and that it fails loudly and leaves nothing behind.

The tests share ``control_plane_with_controllers`` (its own control plane, so the session's
``control_plane`` keeps no controllers) and make a namespace each. There is no scheduler and no node:
Pods exist and stay Pending.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from agentkube.testing import ControlPlane, ControlPlaneError, HTTPError, eventually, find_assets
from test.integration.operator_harness import mcp_object, running_operator

pytestmark = pytest.mark.integration

DEADLINE = 60.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes: its parent has not reaped it yet
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait_dead(pids: list[int], timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (alive := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def _get(plane: ControlPlane, path: str) -> dict[str, Any] | None:
    try:
        return plane.request("GET", path)
    except HTTPError as e:
        if e.status == 404:
            return None
        raise


def _items(plane: ControlPlane, path: str, selector: str = "") -> list[dict[str, Any]]:
    query = f"?labelSelector={selector}" if selector else ""
    items: list[dict[str, Any]] = plane.request("GET", f"{path}{query}")["items"]
    return items


def _owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    refs = obj["metadata"].get("ownerReferences") or []
    return any(r["uid"] == owner["metadata"]["uid"] and r.get("controller") for r in refs)


@pytest.fixture
def kcm(control_plane_with_controllers: ControlPlane) -> ControlPlane:
    return control_plane_with_controllers


@pytest.fixture
def ns(kcm: ControlPlane) -> Iterator[str]:
    name = f"kcm-{secrets.token_hex(4)}"
    kcm.create_namespace(name)
    yield name
    kcm.delete_namespace(name)


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "example.invalid/app:1"}]},
            },
        },
    }


# ----------------------------------------------------------------------------- garbage collection


async def test_deleting_an_owner_removes_its_children(kcm: ControlPlane, ns: str) -> None:
    base = f"/api/v1/namespaces/{ns}/configmaps"
    owner = kcm.request("POST", base, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    kcm.request("POST", base, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    kcm.request("POST", base, {"metadata": {"name": "bystander"}})

    kcm.request("DELETE", f"{base}/owner")

    await eventually(lambda: _get(kcm, f"{base}/child") is None, "the garbage collector deletes the child")
    assert _get(kcm, f"{base}/bystander") is not None


async def test_deleting_an_mcp_removes_everything_made_for_it(kcm: ControlPlane, ns: str) -> None:
    """Our operator's children, and what the Deployment made of them (ReplicaSet, Pods), go with the MCP."""
    assert kcm.kubeconfig is not None
    upstream = {"name": "x", "kind": "http", "endpoint": "http://x.example"}
    kinds = {
        "ConfigMap": f"/api/v1/namespaces/{ns}/configmaps",
        "Secret": f"/api/v1/namespaces/{ns}/secrets",
        "Service": f"/api/v1/namespaces/{ns}/services",
        "Deployment": f"/apis/apps/v1/namespaces/{ns}/deployments",
        "ReplicaSet": f"/apis/apps/v1/namespaces/{ns}/replicasets",
        "Pod": f"/api/v1/namespaces/{ns}/pods",
        "PodDisruptionBudget": f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
    }
    selector = "app.kubernetes.io/instance=m"

    def present() -> dict[str, int]:
        return {kind: len(_items(kcm, path, selector)) for kind, path in kinds.items()}

    async with running_operator(str(kcm.kubeconfig), namespace=ns):
        kcm.request(
            "POST",
            f"/apis/agentkube.io/v1alpha1/namespaces/{ns}/mcps",
            mcp_object(ns, "m", [upstream], replicas=2),
        )
        counts = await eventually(
            lambda: (c := present())["Pod"] == 2 and all(c.values()) and c,
            "the MCP's children, its ReplicaSet and both Pods exist",
        )
        kcm.request("DELETE", f"/apis/agentkube.io/v1alpha1/namespaces/{ns}/mcps/m")
        await eventually(
            lambda: not any(present().values()),
            f"everything made for the MCP ({counts}) is garbage-collected",
        )


# ----------------------------------------------------------------------------- namespaces


async def test_a_deleted_namespace_is_emptied_and_goes_away(kcm: ControlPlane) -> None:
    name = f"kcm-doomed-{secrets.token_hex(4)}"
    kcm.create_namespace(name)
    kcm.request("POST", f"/api/v1/namespaces/{name}/configmaps", {"metadata": {"name": "c"}})
    kcm.request("POST", f"/apis/apps/v1/namespaces/{name}/deployments", _deployment("d", 1))

    kcm.request("DELETE", f"/api/v1/namespaces/{name}")

    await eventually(lambda: _get(kcm, f"/api/v1/namespaces/{name}") is None, f"namespace {name} is gone")


async def test_a_new_namespace_gets_its_service_account_and_root_ca(kcm: ControlPlane, ns: str) -> None:
    await eventually(
        lambda: _get(kcm, f"/api/v1/namespaces/{ns}/serviceaccounts/default"), "the default ServiceAccount"
    )
    root_ca = await eventually(
        lambda: _get(kcm, f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt"), "kube-root-ca.crt"
    )
    assert kcm.work_dir is not None
    assert root_ca["data"]["ca.crt"] == (kcm.work_dir / "ca.crt").read_text()


async def test_a_service_account_token_secret_gets_a_token_the_apiserver_accepts(
    kcm: ControlPlane, ns: str
) -> None:
    await eventually(lambda: _get(kcm, f"/api/v1/namespaces/{ns}/serviceaccounts/default"), "the account")
    secret = {
        "metadata": {"name": "legacy", "annotations": {"kubernetes.io/service-account.name": "default"}},
        "type": "kubernetes.io/service-account-token",
    }
    kcm.request("POST", f"/api/v1/namespaces/{ns}/secrets", secret)
    filled = await eventually(
        lambda: ((_get(kcm, f"/api/v1/namespaces/{ns}/secrets/legacy") or {}).get("data") or {}).get("token"),
        "the token controller fills the Secret",
    )
    token = base64.b64decode(filled).decode()

    assert kcm.work_dir is not None
    url = urlsplit(kcm.host)
    ctx = ssl.create_default_context(cafile=str(kcm.work_dir / "ca.crt"))
    conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=ctx, timeout=10)
    try:
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", json.dumps(review), headers)
        resp = conn.getresponse()
        body = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status == 201, body
    assert body["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:default"


# ----------------------------------------------------------------------------- workloads


async def test_a_deployment_makes_a_replicaset_that_makes_pending_pods(kcm: ControlPlane, ns: str) -> None:
    deployment = kcm.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", _deployment("web", 2))

    def replicaset() -> dict[str, Any] | None:
        owned = [
            rs
            for rs in _items(kcm, f"/apis/apps/v1/namespaces/{ns}/replicasets")
            if _owned_by(rs, deployment)
        ]
        return owned[0] if owned else None

    rs = await eventually(replicaset, "the deployment controller makes a ReplicaSet")
    assert rs["spec"]["replicas"] == 2

    def pods() -> list[dict[str, Any]]:
        owned = [p for p in _items(kcm, f"/api/v1/namespaces/{ns}/pods") if _owned_by(p, rs)]
        return owned if len(owned) == 2 else []

    made = await eventually(pods, "the replicaset controller makes two Pods")
    # No scheduler, no node: they are there and wait.
    assert [(p["status"]["phase"], p["spec"].get("nodeName")) for p in made] == [("Pending", None)] * 2

    def counted() -> dict[str, Any] | None:
        got = _get(kcm, f"/apis/apps/v1/namespaces/{ns}/deployments/web") or {}
        s: dict[str, Any] = got.get("status") or {}
        return s if s.get("replicas") == 2 else None

    status = await eventually(counted, "the deployment controller writes the Deployment's status")
    assert status["observedGeneration"] == deployment["metadata"]["generation"]
    assert status.get("availableReplicas", 0) == 0


async def test_a_service_with_a_selector_gets_an_endpointslice_of_its_ready_pods(
    kcm: ControlPlane, ns: str
) -> None:
    """Playing the kubelet by hand (a Node object, the Pod bound to it, a Ready status with an IP)
    is what it takes for a Pod to become an endpoint; the local node will do the same. The address
    may not be a loopback one: EndpointSlice validation refuses 127.0.0.0/8."""
    service = {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }
    kcm.request("POST", f"/api/v1/namespaces/{ns}/services", service)
    slices_path = f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"
    selector = "kubernetes.io/service-name=web"
    empty = await eventually(lambda: _items(kcm, slices_path, selector), "a slice for the Service")
    assert [(s["addressType"], s.get("endpoints")) for s in empty] == [("IPv4", None)]

    node = f"{ns}-node"
    await eventually(lambda: _get(kcm, f"/api/v1/namespaces/{ns}/serviceaccounts/default"), "the account")
    kcm.request("POST", "/api/v1/nodes", {"metadata": {"name": node}})
    pods = f"/api/v1/namespaces/{ns}/pods"
    pod = {
        "metadata": {"name": "web-1", "labels": {"app": "web"}},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "example.invalid/app:1"}]},
    }
    try:
        kcm.request("POST", pods, pod)
        ready = {
            "status": {
                "phase": "Running",
                "podIP": "10.244.0.2",
                "podIPs": [{"ip": "10.244.0.2"}],
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        }
        kcm.request("PATCH", f"{pods}/web-1/status", ready, content_type="application/merge-patch+json")

        def endpoints() -> list[tuple[Any, ...]]:
            return [
                (
                    e["addresses"],
                    e["conditions"]["ready"],
                    e.get("nodeName"),
                    e["targetRef"]["name"],
                    s["ports"],
                )
                for s in _items(kcm, slices_path, selector)
                for e in s.get("endpoints") or []
            ]

        got = await eventually(endpoints, "the ready Pod becomes an endpoint")
        assert got == [
            (["10.244.0.2"], True, node, "web-1", [{"name": "http", "port": 8080, "protocol": "TCP"}])
        ]
    finally:
        # Bound to a node no kubelet serves, the Pod would stay Terminating: delete it outright.
        with contextlib.suppress(HTTPError):
            kcm.request("DELETE", f"{pods}/web-1?gracePeriodSeconds=0")
        kcm.request("DELETE", f"/api/v1/nodes/{node}")


async def test_a_pod_disruption_budget_gets_a_status(kcm: ControlPlane, ns: str) -> None:
    kcm.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", _deployment("web", 2))
    pdb = {
        "metadata": {"name": "web"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
    }
    created = kcm.request("POST", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets", pdb)

    def status() -> dict[str, Any] | None:
        got = _get(kcm, f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/web") or {}
        s: dict[str, Any] = got.get("status") or {}
        return s if s.get("expectedPods") == 2 else None

    s = await eventually(status, "the disruption controller counts the Deployment's two Pods")
    assert s["observedGeneration"] == created["metadata"]["generation"]
    # Pending Pods are not healthy: no disruption is allowed.
    assert (s["currentHealthy"], s["desiredHealthy"], s["disruptionsAllowed"]) == (0, 1, 0)
    allowed = [c for c in s["conditions"] if c["type"] == "DisruptionAllowed"]
    assert [(c["status"], c["reason"]) for c in allowed] == [("False", "InsufficientPods")]


# ----------------------------------------------------------------------------- failures, clean-up


def test_a_controller_manager_that_cannot_start_names_its_log_and_stops_everything() -> None:
    plane = ControlPlane(
        controller_manager=True, controller_manager_flags=["--no-such-flag=1"], start_timeout=30
    )
    try:
        with pytest.raises(ControlPlaneError) as failed:
            plane.start()
    finally:
        plane.stop()
    message = str(failed.value)
    assert "kube-controller-manager exited" in message
    assert "no-such-flag" in message
    procs = [plane.etcd, plane.apiserver, plane.controller_manager]
    pids = [p.pid for p in procs if p is not None and p.pid is not None]
    assert len(pids) == 3
    assert _wait_dead(pids) == []


def test_a_taken_port_fails_the_controller_manager_alone_and_a_restart_recovers(kcm: ControlPlane) -> None:
    port = urlsplit(kcm.controller_manager_url).port
    kcm.stop_controller_manager()
    try:
        with socket.socket() as taken:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            taken.bind(("127.0.0.1", port or 0))
            taken.listen()
            with pytest.raises(ControlPlaneError) as failed:
                kcm.start_controller_manager()
            assert "kube-controller-manager exited" in str(failed.value)
            assert "address already in use" in str(failed.value)
            assert kcm.request("GET", "/version")["major"] == "1"
            assert len(kcm.pids) == 2
    finally:
        kcm.start_controller_manager()
    assert urlsplit(kcm.controller_manager_url).port == port
    assert len(kcm.pids) == 3


_CHILD = textwrap.dedent(
    """
    import sys, time
    from agentkube.testing import ControlPlane
    with ControlPlane(controller_manager=True) as cp:
        print(" ".join(map(str, cp.pids)), flush=True)
        print(cp.work_dir, flush=True)
        if sys.argv[1] == "raise":
            sys.stdin.readline()
            raise RuntimeError("test body failed")
        time.sleep(120)
    """
)


@pytest.mark.parametrize("how", ["raise", "sigkill"])
def test_leaves_no_controller_manager_behind(how: str) -> None:
    """When the body raises, the control plane stops all three; when the test process is killed, the
    parent-death signal takes them down."""
    env = {**os.environ, "KUBEBUILDER_ASSETS": str(find_assets())}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    work_dir: Path | None = None
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        pids = [int(p) for p in line.split()]
        work_dir = Path(child.stdout.readline().strip())
        assert len(pids) == 3, (
            f"child printed {line!r}; stderr: {child.stderr.read() if child.stderr else ''}"
        )
        assert all(_alive(p) for p in pids)
        assert child.stdin is not None
        if how == "sigkill":
            child.send_signal(signal.SIGKILL)
        else:
            child.stdin.write("raise\n")
            child.stdin.flush()
        child.wait(30)
        assert _wait_dead(pids) == [], f"left running after {how}: {pids}"
        if how == "raise":
            assert child.returncode != 0
            assert not work_dir.exists(), "the work directory is removed with the processes"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if how == "sigkill" and work_dir is not None and work_dir.name.startswith("agentkube-envtest-"):
            # A killed parent cannot remove its work directory; the test that killed it does.
            shutil.rmtree(work_dir, ignore_errors=True)
