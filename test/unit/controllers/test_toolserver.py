"""ToolServer: the workload, its hardening, its NetworkPolicy and its URLs, the pure parts."""

from __future__ import annotations

from typing import Any

from agentkube.api.toolgateway import parse_tool_server
from agentkube.controllers.toolserver import deployment, server_network_policy, server_url, service

PORT_PROBE = {"tcpSocket": {"port": "mcp"}}


def owner(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "runtime.agentic-layer.ai/v1alpha1",
        "kind": "ToolServer",
        "metadata": {"name": "weather", "namespace": "team-a", "uid": "uid-ts"},
        "spec": {"image": "weather:1", "port": 8000, **spec},
    }


def test_deployment_runs_the_image_restricted_with_tcp_probes() -> None:
    obj = owner(
        args=["--host", "0.0.0.0"],
        command=["python", "-m", "weather"],
        env=[
            {"name": "A", "value": "1"},
            {"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
        envFrom=[{"configMapRef": {"name": "cfg"}}],
        resources={"limits": {"memory": "256Mi"}},
        replicas=3,
    )
    selector = {"app.kubernetes.io/name": "tool-server", "app.kubernetes.io/instance": "weather"}
    kinds = {"runtime.agentic-layer.ai/protocol": "mcp", "runtime.agentic-layer.ai/transport": "http"}
    assert deployment(obj, parse_tool_server(obj)) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "weather",
            "namespace": "team-a",
            "labels": {
                **selector,
                "app.kubernetes.io/managed-by": "agentkube",
                "app.kubernetes.io/part-of": "agentkube",
                **kinds,
            },
            "ownerReferences": [
                {
                    "apiVersion": "runtime.agentic-layer.ai/v1alpha1",
                    "kind": "ToolServer",
                    "name": "weather",
                    "uid": "uid-ts",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {**selector, **kinds}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [
                        {
                            "name": "tool-server",
                            "image": "weather:1",
                            "command": ["python", "-m", "weather"],
                            "args": ["--host", "0.0.0.0"],
                            "ports": [{"name": "mcp", "containerPort": 8000, "protocol": "TCP"}],
                            "env": [
                                {"name": "A", "value": "1"},
                                {"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                            ],
                            "envFrom": [{"configMapRef": {"name": "cfg"}}],
                            "resources": {"limits": {"memory": "256Mi"}},
                            "startupProbe": {**PORT_PROBE, "periodSeconds": 5, "failureThreshold": 30},
                            "readinessProbe": {**PORT_PROBE, "periodSeconds": 10, "failureThreshold": 3},
                            "livenessProbe": {**PORT_PROBE, "periodSeconds": 20, "failureThreshold": 3},
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "runAsNonRoot": True,
                                "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                        }
                    ],
                },
            },
        },
    }


def test_unset_optional_container_fields_are_left_out() -> None:
    obj = owner()
    container = deployment(obj, parse_tool_server(obj))["spec"]["template"]["spec"]["containers"][0]
    assert not {"command", "args", "env", "envFrom", "resources"} & set(container)
    assert deployment(obj, parse_tool_server(obj))["spec"]["replicas"] == 1


def test_service_sends_the_port_to_the_named_container_port() -> None:
    obj = owner(transportType="sse")
    svc = service(obj, parse_tool_server(obj))
    assert svc["spec"] == {
        "type": "ClusterIP",
        "selector": {"app.kubernetes.io/name": "tool-server", "app.kubernetes.io/instance": "weather"},
        "ports": [{"name": "mcp", "port": 8000, "targetPort": "mcp", "protocol": "TCP"}],
    }
    assert svc["metadata"]["labels"]["runtime.agentic-layer.ai/transport"] == "sse"


def test_url_uses_the_path_or_the_transport_default() -> None:
    for spec, url in (
        ({}, "http://weather.team-a.svc.cluster.local:8000/mcp"),
        ({"transportType": "sse"}, "http://weather.team-a.svc.cluster.local:8000/sse"),
        ({"path": "/v2/mcp"}, "http://weather.team-a.svc.cluster.local:8000/v2/mcp"),
    ):
        obj = owner(**spec)
        assert server_url("weather", "team-a", parse_tool_server(obj)) == url


def test_security_fields_loosen_one_setting_each() -> None:
    obj = owner(
        security={
            "runAsNonRoot": False,
            "allowPrivilegeEscalation": True,
            "capabilities": ["NET_BIND_SERVICE"],
            "seccompProfile": "Unconfined",
            "automountServiceAccountToken": True,
            "enableServiceLinks": True,
        }
    )
    pod = deployment(obj, parse_tool_server(obj))["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    assert pod["enableServiceLinks"] is True
    assert pod["securityContext"] == {"runAsNonRoot": False, "seccompProfile": {"type": "Unconfined"}}
    assert pod["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": True,
        "runAsNonRoot": False,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
        "seccompProfile": {"type": "Unconfined"},
    }


def test_network_policy_admits_the_own_namespace_and_the_gateways() -> None:
    obj = owner()
    policy = server_network_policy(obj, parse_tool_server(obj), "tools")
    assert policy["metadata"]["name"] == "weather"
    assert policy["metadata"]["ownerReferences"][0]["uid"] == "uid-ts"
    assert policy["spec"] == {
        "podSelector": {
            "matchLabels": {"app.kubernetes.io/name": "tool-server", "app.kubernetes.io/instance": "weather"}
        },
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [
                    {"podSelector": {}},
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "tools"}}},
                ],
                "ports": [{"protocol": "TCP", "port": "mcp"}],
            }
        ],
    }
    # Without a gateway, or with one in its own namespace, only the namespace's pods.
    for gateway_namespace in (None, "team-a"):
        alone = server_network_policy(obj, parse_tool_server(obj), gateway_namespace)
        assert alone["spec"]["ingress"][0]["from"] == [{"podSelector": {}}]
