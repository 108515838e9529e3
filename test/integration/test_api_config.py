"""config/ on a real API server: the default deployment applies, RBAC grants what the controllers use,
and the CRDs' descriptions reach ``kubectl explain``."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentkube.testing import ControlPlane

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).with_name("kubectl")
MANAGER = "system:serviceaccount:agentkube-system:agentkube-controller-manager"


def kubectl(
    plane: ControlPlane | None, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    config = [f"--kubeconfig={plane.kubeconfig}"] if plane else []
    return subprocess.run(
        [str(KUBECTL), *config, *args], input=stdin, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    result = kubectl(None, "kustomize", str(ROOT / "config" / "default"))
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _one(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def test_default_renders_prefixed_into_agentkube_system(rendered: list[dict[str, Any]]) -> None:
    assert _one(rendered, "Namespace", "agentkube-system")
    cluster_scoped = ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding")
    namespaced = [o for o in rendered if o["kind"] not in cluster_scoped]
    assert {o["metadata"]["namespace"] for o in namespaced} == {"agentkube-system"}
    assert all(
        o["metadata"]["name"].startswith("agentkube-")
        for o in rendered
        if o["kind"] != "CustomResourceDefinition"
    )
    assert sum(o["kind"] == "CustomResourceDefinition" for o in rendered) == 5
    binding = _one(rendered, "ClusterRoleBinding", "agentkube-manager-rolebinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "agentkube-controller-manager", "namespace": "agentkube-system"}
    ]


def test_manager_deployment_is_locked_down_and_probed(rendered: list[dict[str, Any]]) -> None:
    pod = _one(rendered, "Deployment", "agentkube-controller-manager")["spec"]["template"]["spec"]
    (manager,) = pod["containers"]
    assert manager["args"] == [
        "manager",
        "--leader-elect",
        "--metrics-bind-address=:8080",
        "--health-probe-bind-address=:8081",
    ]
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert manager["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert manager["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "health"}
    assert manager["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in manager["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    assert {"requests", "limits"} <= set(manager["resources"])
    assert pod["serviceAccountName"] == "agentkube-controller-manager"
    service = _one(rendered, "Service", "agentkube-controller-manager-metrics-service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_default_applies_with_server_side_dry_run(
    control_plane: ControlPlane, rendered: list[dict[str, Any]]
) -> None:
    # A dry run cannot create the namespace the other objects go into; create that one for real.
    namespace = yaml.safe_dump(_one(rendered, "Namespace", "agentkube-system"))
    assert kubectl(control_plane, "apply", "--server-side", "-f", "-", stdin=namespace).returncode == 0
    stream = yaml.safe_dump_all(rendered)
    result = kubectl(control_plane, "apply", "--server-side", "--dry-run=server", "-f", "-", stdin=stream)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(rendered)


@pytest.fixture(scope="module")
def installed_rbac(control_plane: ControlPlane, rendered: list[dict[str, Any]]) -> None:
    rbac = [o for o in rendered if o["kind"] in ("Namespace", "ServiceAccount") or "Role" in o["kind"]]
    result = kubectl(control_plane, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(rbac))
    assert result.returncode == 0, result.stderr


def _can(plane: ControlPlane, verb: str, resource: str, namespace: str = "team-a") -> bool:
    """Ask the API server's authorizer (a SubjectAccessReview) whether the manager may do ``verb``.

    ``resource`` reads ``plural.group/subresource``; asking the authorizer directly works for kinds
    whose CRDs are not installed, where ``kubectl auth can-i`` would first need discovery.
    """
    resource, _, subresource = resource.partition("/")
    plural, _, group = resource.partition(".")
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": MANAGER,
            "groups": [
                "system:serviceaccounts",
                "system:serviceaccounts:agentkube-system",
                "system:authenticated",
            ],
            "resourceAttributes": {
                "namespace": namespace,
                "verb": verb,
                "group": group,
                "resource": plural,
                "subresource": subresource,
            },
        },
    }
    answer = plane.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    return bool(answer["status"].get("allowed"))


@pytest.mark.parametrize(
    ("verb", "resource"),
    [
        ("watch", "mcps.agentkube.io"),
        ("list", "toolgatewayclasses.runtime.agentic-layer.ai"),
        ("patch", "mcps.agentkube.io/status"),
        ("patch", "toolservers.runtime.agentic-layer.ai/status"),
        ("create", "deployments.apps"),
        ("delete", "services"),
        ("patch", "configmaps"),
        ("create", "poddisruptionbudgets.policy"),
        ("watch", "secrets"),
        ("create", "secrets"),  # an MCP's session key, made once
        ("create", "events.events.k8s.io"),
        ("patch", "httproutes.gateway.networking.k8s.io"),
        ("delete", "gateways.gateway.networking.k8s.io"),
        ("create", "agentgatewaybackends.agentgateway.dev"),
        ("patch", "agentgatewayparameters.agentgateway.dev"),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    ],
)
def test_manager_may_do_what_controllers_need(
    control_plane: ControlPlane, installed_rbac: None, verb: str, resource: str
) -> None:
    assert _can(control_plane, verb, resource)


@pytest.mark.parametrize(
    ("verb", "resource"),
    [
        ("update", "mcps.agentkube.io"),  # spec belongs to users
        ("delete", "llmgateways.agentkube.io"),
        ("patch", "secrets"),  # secrets are never copied, nor rewritten once made
        ("update", "secrets"),
        ("delete", "secrets"),  # the garbage collector removes the session key with its MCP
        ("create", "pods"),
        ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "leases.coordination.k8s.io"),  # only in its own namespace
    ],
)
def test_manager_may_not_do_more(
    control_plane: ControlPlane, installed_rbac: None, verb: str, resource: str
) -> None:
    assert not _can(control_plane, verb, resource)


def test_leader_election_lease_is_granted_in_the_manager_namespace(
    control_plane: ControlPlane, installed_rbac: None
) -> None:
    for verb in ("get", "create", "update"):
        assert _can(control_plane, verb, "leases.coordination.k8s.io", namespace="agentkube-system"), verb


def test_kubectl_explain_teaches_the_fields(control_plane: ControlPlane) -> None:
    # The OpenAPI document is republished a moment after a CRD is installed: poll, do not sleep.
    deadline = time.monotonic() + 30
    while True:
        result = kubectl(control_plane, "explain", "mcp.spec.upstreams.auth")
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "Credentials sent to the upstream" in text
    assert "bearer sends 'Authorization: Bearer <secret>'" in text
    assert "Defaults to none." in text
    assert "enum: none, bearer, header" in text
    routing = kubectl(control_plane, "explain", "llmgw.spec.routing.modelMap")
    assert "Model name clients request" in " ".join(routing.stdout.split())
