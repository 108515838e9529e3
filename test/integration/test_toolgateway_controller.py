"""ToolGatewayClass and ToolGateway controllers against a real API server: the seed's manifests, class
ownership, the Gateway's Programmed condition, OpenTelemetry translation, zero writes at rest."""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentkube.controllers.gatewayapi import multiplex_name, server_route_name
from agentkube.controllers.kinds import (
    AGENTGATEWAY_BACKEND,
    AGENTGATEWAY_PARAMETERS,
    DEPLOYMENT,
    GATEWAY,
    HTTP_ROUTE,
    SERVICE,
    TOOL_GATEWAY,
    TOOL_GATEWAY_CLASS,
    TOOL_SERVER,
)
from agentkube.controllers.toolgateway import ToolGatewayReconciler
from agentkube.runtime.gvk import GVK
from agentkube.runtime.reconcile import Request
from agentkube.testing import ControlPlane
from test.integration.operator_harness import (
    TOOL_CONTROLLERS,
    RunningOperator,
    World,
    condition,
    eventually,
    running_operator,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "config" / "samples"
CONTROLLER = "runtime.agentic-layer.ai/tool-gateway-agentgateway-controller"


def sample(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((SAMPLES / name).read_text())
    return doc


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def tool_gateway_class(name: str, *, controller: str = CONTROLLER, default: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if default:
        meta["annotations"] = {"toolgatewayclass.kubernetes.io/is-default-class": "true"}
    return {
        "apiVersion": TOOL_GATEWAY_CLASS.api_version,
        "kind": "ToolGatewayClass",
        "metadata": meta,
        "spec": {"controller": controller},
    }


def tool_gateway(name: str, namespace: str, class_name: str | None = None, **spec: Any) -> dict[str, Any]:
    if class_name is not None:
        spec["toolGatewayClassName"] = class_name
    return {
        "apiVersion": TOOL_GATEWAY.api_version,
        "kind": "ToolGateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def children_spec(obj: dict[str, Any] | None) -> Any:
    assert obj is not None
    return obj["spec"]


def owned_by(owner: dict[str, Any]) -> list[dict[str, Any]]:
    meta = owner["metadata"]
    return [
        {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": meta["name"],
            "uid": meta["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def labels(app: str, instance: str, **extra: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/managed-by": "agentkube",
        "app.kubernetes.io/part-of": "agentkube",
        **extra,
    }


async def status_condition(world: World, gvk: GVK, name: str, namespace: str | None, ctype: str) -> Any:
    return condition(await world.get(gvk, name, namespace), ctype)


def has(expected: dict[str, Any]) -> Callable[[dict[str, Any] | None], bool]:
    """A check that a condition has every field of ``expected``."""

    def check(cond: dict[str, Any] | None) -> bool:
        return cond is not None and all(cond.get(k) == v for k, v in expected.items())

    return check


async def wait_condition(
    world: World, gvk: GVK, name: str, namespace: str | None, ctype: str, **expected: Any
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        cond = await status_condition(world, gvk, name, namespace, ctype)
        return cond if has(expected)(cond) else None

    result: dict[str, Any] = await eventually(check, f"{gvk.kind} {namespace}/{name} has {ctype} {expected}")
    return result


# ------------------------------------------------------------------------------------------ seed


async def test_seed_manifests_produce_the_documented_objects(
    tool_operator: RunningOperator, world: World
) -> None:
    await world.namespace("my-namespace")
    await world.namespace("tool-gateway")
    cls = await world.apply(sample("runtime_v1alpha1_toolgatewayclass.yaml"))
    gw = await world.apply(sample("runtime_v1alpha1_toolgateway.yaml"))
    server = await world.apply(sample("runtime_v1alpha1_toolserver.yaml"))
    # The seed's ToolServer is routed through my-tool-gateway in tool-gateway: give it that gateway.
    routed_gw = await world.apply(tool_gateway("my-tool-gateway", "tool-gateway", "agentgateway"))

    await wait_condition(world, TOOL_GATEWAY_CLASS, "agentgateway", None, "Accepted", status="True")
    default = await status_condition(world, TOOL_GATEWAY_CLASS, "agentgateway", None, "Default")
    assert (default["status"], default["reason"]) == ("True", "DefaultClass")
    assert cls["metadata"].get("namespace") is None  # cluster-scoped: the seed's namespace is dropped

    # ToolGateway my-namespace/my-tool-gateway -> Gateway + AgentgatewayParameters, no multiplex routes.
    gateway = await eventually(
        lambda: world.get(GATEWAY, "my-tool-gateway", "my-namespace"), "the Gateway exists"
    )
    assert gateway["spec"] == {
        "gatewayClassName": "agentgateway",
        "listeners": [
            {
                "name": "http",
                "protocol": "HTTP",
                "port": 80,
                "allowedRoutes": {"namespaces": {"from": "Same"}},
            }
        ],
        "infrastructure": {
            "parametersRef": {
                "group": "agentgateway.dev",
                "kind": "AgentgatewayParameters",
                "name": "my-tool-gateway",
            }
        },
    }
    assert gateway["metadata"]["labels"] == labels("tool-gateway", "my-tool-gateway")
    assert gateway["metadata"]["ownerReferences"] == owned_by(gw)
    params = await eventually(
        lambda: world.get(AGENTGATEWAY_PARAMETERS, "my-tool-gateway", "my-namespace"), "the parameters exist"
    )
    assert params["spec"] == {
        "env": [{"name": "LOG_LEVEL", "value": "info"}],
        "deployment": {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "agentgateway", "envFrom": [{"configMapRef": {"name": "my-config"}}]}
                        ]
                    }
                }
            }
        },
        "service": {"spec": {"type": "ClusterIP"}},
    }
    assert params["metadata"]["ownerReferences"] == owned_by(gw)
    # The seed's server is routed by tool-gateway/my-tool-gateway: its route lives there, and
    # my-namespace holds no route at all (my-namespace/my-tool-gateway has no servers).
    await eventually(
        lambda: world.get(
            HTTP_ROUTE, server_route_name("my-tool-gateway", "my-namespace", "my-tool-server"), "tool-gateway"
        ),
        "the server's route",
    )
    routes, _ = await world.client.list(HTTP_ROUTE, "my-namespace")
    assert [r["metadata"]["name"] for r in routes] == []
    # The seed's envFrom names a ConfigMap my-config that the seed does not make: the pods could not
    # start, and the ToolGateway says so until it exists.
    missing = await wait_condition(
        world, TOOL_GATEWAY, "my-tool-gateway", "my-namespace", "Accepted", status="False"
    )
    assert missing["reason"] == "ConfigMapNotFound"
    assert 'ConfigMap "my-config" not found in namespace "my-namespace"' in missing["message"]
    await world.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "my-config", "namespace": "my-namespace"},
        }
    )
    accepted = await wait_condition(
        world, TOOL_GATEWAY, "my-tool-gateway", "my-namespace", "Accepted", status="True"
    )
    assert accepted["message"].startswith(
        'Implemented as ToolGatewayClass "agentgateway", named in spec.toolGatewayClassName.'
    )
    status = (await world.get(TOOL_GATEWAY, "my-tool-gateway", "my-namespace") or {})["status"]
    assert status["toolGatewayClassName"] == "agentgateway"
    # Nothing here plays the Gateway's controller: nothing serves the gateway, so it shows no URL.
    assert "url" not in status

    # ToolServer my-namespace/my-tool-server -> Deployment + Service (+ NetworkPolicy); its backend and
    # route are the gateway's, in tool-gateway.
    deployment = await eventually(
        lambda: world.get(DEPLOYMENT, "my-tool-server", "my-namespace"), "the Deployment"
    )
    server_labels = labels(
        "tool-server",
        "my-tool-server",
        **{"runtime.agentic-layer.ai/protocol": "mcp", "runtime.agentic-layer.ai/transport": "http"},
    )
    assert deployment["metadata"]["labels"] == server_labels
    assert deployment["metadata"]["ownerReferences"] == owned_by(server)
    probe = {"tcpSocket": {"port": "mcp"}, "timeoutSeconds": 1, "successThreshold": 1}
    selector = {"app.kubernetes.io/name": "tool-server", "app.kubernetes.io/instance": "my-tool-server"}
    assert deployment["spec"] == {
        "replicas": 1,
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {
                "labels": {
                    **selector,
                    "runtime.agentic-layer.ai/protocol": "mcp",
                    "runtime.agentic-layer.ai/transport": "http",
                }
            },
            "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [
                    {
                        "name": "tool-server",
                        "image": "my-tool-server:latest",
                        "args": ["--host", "0.0.0.0"],
                        "ports": [{"name": "mcp", "containerPort": 8000, "protocol": "TCP"}],
                        "env": [{"name": "CONFIG_VAR", "value": "value"}],
                        "resources": {},
                        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 30},
                        "readinessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
                        "livenessProbe": {**probe, "periodSeconds": 20, "failureThreshold": 3},
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "runAsNonRoot": True,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        # API server defaults:
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                        "imagePullPolicy": "Always",
                    }
                ],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "dnsPolicy": "ClusterFirst",
                "schedulerName": "default-scheduler",
            },
        },
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
    }
    service = await eventually(lambda: world.get(SERVICE, "my-tool-server", "my-namespace"), "the Service")
    assert service["metadata"]["labels"] == server_labels
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"] == [{"name": "mcp", "port": 8000, "targetPort": "mcp", "protocol": "TCP"}]
    per_server = server_route_name("my-tool-gateway", "my-namespace", "my-tool-server")
    backend = await eventually(
        lambda: world.get(AGENTGATEWAY_BACKEND, per_server, "tool-gateway"), "its backend"
    )
    target = {
        "host": "my-tool-server.my-namespace.svc.cluster.local",
        "port": 8000,
        "path": "/mcp",
        "protocol": "StreamableHTTP",
    }
    assert backend["spec"] == {"mcp": {"targets": [{"name": "my-tool-server", "static": target}]}}
    assert backend["metadata"]["ownerReferences"] == owned_by(routed_gw)
    route = await eventually(lambda: world.get(HTTP_ROUTE, per_server, "tool-gateway"), "its route")
    assert route["metadata"]["ownerReferences"] == owned_by(routed_gw)
    parent = {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": "my-tool-gateway",
        "namespace": "tool-gateway",
        "sectionName": "http",
    }

    def route_spec(prefix: str, backend_name: str) -> dict[str, Any]:
        return {
            "parentRefs": [parent],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                    "backendRefs": [
                        {
                            "group": "agentgateway.dev",
                            "kind": "AgentgatewayBackend",
                            "name": backend_name,
                            "weight": 1,
                        }
                    ],
                }
            ],
        }

    assert route["spec"] == route_spec("/my-namespace/my-tool-server/mcp", per_server)

    # Multiplex routes of tool-gateway/my-tool-gateway: /mcp and /my-namespace/mcp.
    everything = await eventually(
        lambda: world.get(AGENTGATEWAY_BACKEND, multiplex_name("my-tool-gateway", None), "tool-gateway"),
        "the /mcp backend",
    )
    assert everything["spec"] == {
        "mcp": {
            "targets": [{"name": "my-namespace-my-tool-server", "static": target}],
            "failureMode": "FailOpen",
        }
    }
    assert everything["metadata"]["ownerReferences"] == owned_by(routed_gw)
    per_namespace = await world.get(
        AGENTGATEWAY_BACKEND, multiplex_name("my-tool-gateway", "my-namespace"), "tool-gateway"
    )
    assert children_spec(per_namespace) == {
        "mcp": {"targets": [{"name": "my-tool-server", "static": target}], "failureMode": "FailOpen"}
    }
    assert per_namespace is not None
    assert per_namespace["metadata"]["labels"] == labels(
        "tool-gateway", "my-tool-gateway", **{"runtime.agentic-layer.ai/toolserver-namespace": "my-namespace"}
    )
    assert children_spec(
        await world.get(HTTP_ROUTE, multiplex_name("my-tool-gateway", None), "tool-gateway")
    ) == route_spec("/mcp", multiplex_name("my-tool-gateway", None))
    assert children_spec(
        await world.get(HTTP_ROUTE, multiplex_name("my-tool-gateway", "my-namespace"), "tool-gateway")
    ) == route_spec("/my-namespace/mcp", multiplex_name("my-tool-gateway", "my-namespace"))

    # ToolServer status: its URL, its gateway URL, Accepted; Available once the Deployment is.
    await wait_condition(world, TOOL_SERVER, "my-tool-server", "my-namespace", "Accepted", status="True")
    server_status = (await world.get(TOOL_SERVER, "my-tool-server", "my-namespace") or {})["status"]
    assert server_status["url"] == "http://my-tool-server.my-namespace.svc.cluster.local:8000/mcp"
    assert (
        server_status["gatewayUrl"]
        == "http://my-tool-gateway.tool-gateway.svc.cluster.local/my-namespace/my-tool-server/mcp"
    )
    routed = await wait_condition(
        world, TOOL_GATEWAY, "my-tool-gateway", "tool-gateway", "ToolServersRouted", status="True"
    )
    assert routed["message"] == "1 ToolServer (1 namespace) is routed at /mcp."

    # The OTEL manifest (the same ToolGateway): env translated, not passed on; envFrom gone with it.
    await world.apply(sample("runtime_v1alpha1_toolgateway_otel.yaml"))

    async def traced() -> dict[str, Any] | None:
        p = await world.get(AGENTGATEWAY_PARAMETERS, "my-tool-gateway", "my-namespace")
        return p if p is not None and "rawConfig" in p["spec"] else None

    params = await eventually(traced, "the parameters carry the tracing config")
    assert params["spec"] == {
        "env": [],
        "deployment": {
            "spec": {"template": {"spec": {"containers": [{"name": "agentgateway", "envFrom": []}]}}}
        },
        "service": {"spec": {"type": "ClusterIP"}},
        "rawConfig": {
            "config": {
                "tracing": {
                    "otlpEndpoint": "http://otel-collector:4318",
                    "otlpProtocol": "http",
                    "headers": {"api-key": "secret123"},
                }
            }
        },
    }
    telemetry = await wait_condition(
        world, TOOL_GATEWAY, "my-tool-gateway", "my-namespace", "OpenTelemetryTranslated", status="True"
    )
    assert telemetry["message"] == "Traces are exported to http://otel-collector:4318 over http."


# -------------------------------------------------------------------------------- zero writes


def requeue(operator: RunningOperator, namespace: str, class_name: str) -> int:
    """Put this test's objects back on their controllers' queues (other tests' leftovers may sit in
    namespaces being deleted, where every write fails and is retried: they are not this test's)."""
    added = 0
    kinds = {"toolgatewayclass": TOOL_GATEWAY_CLASS, "toolgateway": TOOL_GATEWAY, "toolserver": TOOL_SERVER}
    for controller in operator.manager.controllers:
        for obj in operator.manager.cache.list(kinds[controller.name]):
            if obj["metadata"].get("namespace") == namespace or obj["metadata"]["name"] == class_name:
                controller.queue.add(Request.of(obj))
                added += 1
    return added


async def test_each_child_and_status_is_written_once_and_again_at_rest_nothing(
    control_plane: ControlPlane, world: World, namespace: str
) -> None:
    # Everything exists before the operator starts, so its first pass sees the whole world.
    # Names of their own: write records carry no namespace, and other tests leave objects behind.
    cls, gw, server = unique("it-rest"), unique("rest-gw"), unique("rest-tools")
    await world.apply(tool_gateway_class(cls))
    await world.apply(
        tool_gateway(
            gw, namespace, cls, env=[{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://c:4317"}]
        )
    )
    await world.apply(
        {
            "apiVersion": TOOL_SERVER.api_version,
            "kind": "ToolServer",
            "metadata": {"name": server, "namespace": namespace},
            "spec": {"image": "tools:1", "port": 8000, "toolGatewayRef": {"name": gw}},
        }
    )
    assert control_plane.kubeconfig is not None
    async with running_operator(str(control_plane.kubeconfig), controllers=TOOL_CONTROLLERS) as operator:
        await wait_condition(world, TOOL_GATEWAY, gw, namespace, "ToolServersRouted", status="True")
        await wait_condition(world, TOOL_SERVER, server, namespace, "Accepted", status="True")
        await eventually(operator.idle, "the controllers are idle")
        per_server = server_route_name(gw, namespace, server)
        mine = {cls, gw, server, multiplex_name(gw, None), multiplex_name(gw, namespace), per_server}
        applied = Counter(
            (w.kind, w.name, w.subresource) for w in operator.client.writes_of("apply") if w.name in mine
        )
        assert applied == Counter(
            {
                ("ToolGatewayClass", cls, "status"): 1,
                ("ToolGateway", gw, "status"): 1,
                ("Gateway", gw, None): 1,
                ("AgentgatewayParameters", gw, None): 1,
                ("AgentgatewayBackend", multiplex_name(gw, None), None): 1,
                ("HTTPRoute", multiplex_name(gw, None), None): 1,
                ("AgentgatewayBackend", multiplex_name(gw, namespace), None): 1,
                ("HTTPRoute", multiplex_name(gw, namespace), None): 1,
                ("AgentgatewayBackend", per_server, None): 1,
                ("HTTPRoute", per_server, None): 1,
                ("ToolServer", server, "status"): 1,
                ("Deployment", server, None): 1,
                ("Service", server, None): 1,
                ("NetworkPolicy", server, None): 1,
            }
        )
        before = len(operator.client.writes)
        assert requeue(operator, namespace, cls) == 3
        await eventually(operator.idle, "the controllers are idle again")
        again = [
            (w.verb, w.kind, w.name, w.subresource) for w in operator.client.writes[before:] if w.name in mine
        ]
        assert again == []


# ---------------------------------------------------------------------------- class ownership


async def test_gateway_naming_a_class_of_ours_is_accepted(
    tool_operator: RunningOperator, world: World, namespace: str
) -> None:
    cls = unique("it-ours")
    await world.apply(tool_gateway_class(cls))
    await world.apply(tool_gateway("gw", namespace, cls))
    accepted = await wait_condition(world, TOOL_GATEWAY, "gw", namespace, "Accepted", status="True")
    assert accepted["reason"] == "Accepted"
    assert await world.get(GATEWAY, "gw", namespace) is not None
    cls_accepted = await wait_condition(world, TOOL_GATEWAY_CLASS, cls, None, "Accepted", status="True")
    assert CONTROLLER in cls_accepted["message"]
    default = await status_condition(world, TOOL_GATEWAY_CLASS, cls, None, "Default")
    assert (default["status"], default["reason"]) == ("False", "NotDefault")


async def test_explicit_class_of_another_controller_never_falls_back_to_our_default(
    tool_operator: RunningOperator, world: World, namespace: str
) -> None:
    theirs, ours = unique("it-theirs"), unique("it-default")
    await world.apply(tool_gateway_class(theirs, controller="example.com/other-controller"))
    await world.apply(tool_gateway_class(ours, default=True))
    await world.apply(tool_gateway("theirs", namespace, theirs))
    # A gateway without a class in the same namespace shows the controller is running and acting.
    await world.apply(tool_gateway("witness", namespace))
    await wait_condition(world, TOOL_GATEWAY, "witness", namespace, "Accepted", status="True")
    await eventually(tool_operator.idle, "the controllers are idle")
    assert await world.get(GATEWAY, "theirs", namespace) is None
    assert "status" not in (await world.get(TOOL_GATEWAY, "theirs", namespace) or {})
    # The other controller's class is not ours to write either.
    assert "status" not in (await world.get(TOOL_GATEWAY_CLASS, theirs) or {})


async def test_missing_explicit_class_is_not_ours_until_it_is_created(
    tool_operator: RunningOperator, world: World, namespace: str
) -> None:
    later, ours = unique("it-later"), unique("it-default")
    await world.apply(tool_gateway_class(ours, default=True))
    await world.apply(tool_gateway("gw", namespace, later))
    await world.apply(tool_gateway("witness", namespace))
    await wait_condition(world, TOOL_GATEWAY, "witness", namespace, "Accepted", status="True")
    await eventually(tool_operator.idle, "the controllers are idle")
    assert await world.get(GATEWAY, "gw", namespace) is None
    await world.apply(tool_gateway_class(later))
    await wait_condition(world, TOOL_GATEWAY, "gw", namespace, "Accepted", status="True")
    assert await world.get(GATEWAY, "gw", namespace) is not None


async def test_gateway_without_class_follows_the_default_class(
    tool_operator: RunningOperator, world: World, namespace: str
) -> None:
    theirs = unique("it-their-default")
    await world.apply(tool_gateway_class(theirs, controller="example.com/other-controller", default=True))
    await world.apply(tool_gateway("gw", namespace))
    witness_class = unique("it-witness")
    await world.apply(tool_gateway_class(witness_class))
    await world.apply(tool_gateway("witness", namespace, witness_class))
    await wait_condition(world, TOOL_GATEWAY, "witness", namespace, "Accepted", status="True")
    await eventually(tool_operator.idle, "the controllers are idle")
    assert await world.get(GATEWAY, "gw", namespace) is None
    # The other controller's default goes; ours becomes the default: the gateway is taken up.
    await world.delete(TOOL_GATEWAY_CLASS, theirs)
    ours = unique("it-our-default")
    await world.apply(tool_gateway_class(ours, default=True))
    accepted = await wait_condition(world, TOOL_GATEWAY, "gw", namespace, "Accepted", status="True")
    assert await world.get(GATEWAY, "gw", namespace) is not None
    # The gateway names no class: it says which one it got, and why that one.
    assert accepted["message"].startswith(
        f'Implemented as ToolGatewayClass "{ours}", the default class (spec.toolGatewayClassName is omitted).'
    )
    gw = await world.get(TOOL_GATEWAY, "gw", namespace)
    assert gw is not None and gw["status"]["toolGatewayClassName"] == ours


async def test_two_default_classes_are_reported_and_the_oldest_decides(
    tool_operator: RunningOperator, world: World, namespace: str
) -> None:
    older, newer = unique("it-older"), unique("it-newer")
    await world.apply(tool_gateway_class(older, default=True))
    await wait_condition(
        world, TOOL_GATEWAY_CLASS, older, None, "Default", status="True", reason="DefaultClass"
    )
    # creationTimestamp has whole seconds: make sure the second class is younger.
    first = await world.get(TOOL_GATEWAY_CLASS, older)
    assert first is not None
    created = datetime.fromisoformat(first["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    await eventually(lambda: datetime.now(UTC) >= created + timedelta(seconds=1), "a second has passed")
    await world.apply(tool_gateway_class(newer, controller="example.com/other-controller", default=True))
    winner = await wait_condition(
        world, TOOL_GATEWAY_CLASS, older, None, "Default", status="True", reason="MultipleDefaultClasses"
    )
    assert older in winner["message"] and newer in winner["message"]
    await world.apply(tool_gateway("gw", namespace))
    await wait_condition(world, TOOL_GATEWAY, "gw", namespace, "Accepted", status="True")
    # When the older default goes, the other controller's class decides: our children go away.
    await world.delete(TOOL_GATEWAY_CLASS, older)
    await eventually(
        lambda: _absent(world, GATEWAY, "gw", namespace), "the Gateway of a gateway no longer ours is deleted"
    )


async def _absent(world: World, gvk: GVK, name: str, namespace: str | None) -> bool:
    return await world.get(gvk, name, namespace) is None


async def test_failure_to_read_classes_is_retried_and_never_taken_as_not_ours(
    tool_operator: RunningOperator, world: World, namespace: str
) -> None:
    cls = unique("it-flaky")
    await world.apply(tool_gateway_class(cls))
    await world.apply(tool_gateway("gw", namespace, cls))
    await wait_condition(world, TOOL_GATEWAY, "gw", namespace, "Accepted", status="True")
    reconciler = next(c.reconciler for c in tool_operator.manager.controllers if c.name == "toolgateway")
    assert isinstance(reconciler, ToolGatewayReconciler)
    calls = 0

    def unreadable() -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        raise TimeoutError("ToolGatewayClasses cannot be read")

    reconciler.classes = unreadable  # type: ignore[method-assign]
    try:
        before = await world.get(TOOL_GATEWAY, "gw", namespace)
        assert before is not None
        touched = tool_gateway("gw", namespace, cls)
        touched["metadata"]["labels"] = {"touched": "yes"}
        await world.apply(touched)
        await eventually(lambda: calls >= 3, "the failed read is retried")
        assert await world.get(GATEWAY, "gw", namespace) is not None
        after = await world.get(TOOL_GATEWAY, "gw", namespace)
        assert after is not None and after["status"] == before["status"]
    finally:
        del reconciler.classes
    touched = tool_gateway("gw", namespace, cls)
    touched["metadata"]["labels"] = {"touched": "again"}
    await world.apply(touched)
    await eventually(tool_operator.idle, "the controllers are idle")
    assert await world.get(GATEWAY, "gw", namespace) is not None


async def test_gateway_moved_to_another_controllers_class_loses_our_children_and_status(
    tool_operator: RunningOperator, world: World, namespace: str
) -> None:
    ours, theirs = unique("it-ours"), unique("it-theirs")
    await world.apply(tool_gateway_class(ours))
    await world.apply(tool_gateway_class(theirs, controller="example.com/other-controller"))
    await world.apply(tool_gateway("gw", namespace, ours))
    await wait_condition(world, TOOL_GATEWAY, "gw", namespace, "Accepted", status="True")
    assert await world.get(AGENTGATEWAY_PARAMETERS, "gw", namespace) is not None
    await world.apply(tool_gateway("gw", namespace, theirs))

    async def released() -> bool:
        obj = await world.get(TOOL_GATEWAY, "gw", namespace)
        return obj is not None and not (obj.get("status") or {}).get("conditions")

    await eventually(released, "our conditions are released")

    # The status is released first and the children deleted after it (so a failed delete is retried
    # while the children still mark the gateway as once ours): poll for the children too.
    async def children_gone() -> bool:
        return (
            await world.get(GATEWAY, "gw", namespace) is None
            and await world.get(AGENTGATEWAY_PARAMETERS, "gw", namespace) is None
        )

    await eventually(children_gone, "our children are deleted")


# -------------------------------------------------------------------------- gateway status


async def test_programmed_mirrors_the_gateway_and_makes_the_tool_gateway_ready(
    tool_operator: RunningOperator, world: World, namespace: str
) -> None:
    cls = unique("it-prog")
    await world.apply(tool_gateway_class(cls))
    await world.apply(tool_gateway("gw", namespace, cls))
    pending = await wait_condition(world, TOOL_GATEWAY, "gw", namespace, "Programmed", status="Unknown")
    assert pending["reason"] == "Pending"
    ready = await status_condition(world, TOOL_GATEWAY, "gw", namespace, "Ready")
    assert ready["status"] == "Unknown"
    url = f"http://gw.{namespace}.svc.cluster.local"

    async def shown_url() -> str | None:
        obj = await world.get(TOOL_GATEWAY, "gw", namespace)
        return ((obj or {}).get("status") or {}).get("url")

    assert await shown_url() is None  # nothing serves it yet
    gateway = await world.get(GATEWAY, "gw", namespace)
    assert gateway is not None

    def programmed(status: str, reason: str, message: str) -> dict[str, Any]:
        return {
            "type": "Programmed",
            "status": status,
            "reason": reason,
            "message": message,
            "observedGeneration": gateway["metadata"]["generation"],
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }

    # Play the Gateway's controller.
    await world.client.patch(
        GATEWAY,
        "gw",
        namespace,
        {"status": {"conditions": [programmed("True", "Programmed", "Address assigned")]}},
        subresource="status",
    )
    mirrored = await wait_condition(world, TOOL_GATEWAY, "gw", namespace, "Programmed", status="True")
    assert (mirrored["reason"], mirrored["message"]) == (
        "Programmed",
        f"Gateway {namespace}/gw: Address assigned",
    )
    await wait_condition(world, TOOL_GATEWAY, "gw", namespace, "Ready", status="True", reason="Ready")
    assert await shown_url() == url
    await world.client.patch(
        GATEWAY,
        "gw",
        namespace,
        {"status": {"conditions": [programmed("False", "AddressNotAssigned", "No address")]}},
        subresource="status",
    )
    await wait_condition(
        world, TOOL_GATEWAY, "gw", namespace, "Ready", status="False", reason="AddressNotAssigned"
    )
    assert await shown_url() is None  # the URL goes with what served it


async def test_metrics_and_logs_variables_are_dropped_and_reported(
    tool_operator: RunningOperator, world: World, namespace: str
) -> None:
    cls = unique("it-otel")
    await world.apply(tool_gateway_class(cls))
    env = [
        {"name": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "value": "http://traces:4317"},
        {"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": "grpc"},
        {"name": "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "value": "http://metrics:4318"},
        {"name": "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "value": "http://logs:4318"},
        {"name": "RUST_LOG", "value": "debug"},
    ]
    await world.apply(tool_gateway("gw", namespace, cls, env=env))
    dropped = await wait_condition(
        world, TOOL_GATEWAY, "gw", namespace, "OpenTelemetryTranslated", status="False"
    )
    assert dropped["reason"] == "MetricsAndLogsNotTranslated"
    assert "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" in dropped["message"]
    assert "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT" in dropped["message"]
    params = await world.get(AGENTGATEWAY_PARAMETERS, "gw", namespace)
    assert params is not None
    assert params["spec"]["env"] == [{"name": "RUST_LOG", "value": "debug"}]
    assert params["spec"]["rawConfig"] == {
        "config": {"tracing": {"otlpEndpoint": "http://traces:4317", "otlpProtocol": "grpc"}}
    }
    # Without OTEL variables the condition and the tracing config go.
    await world.apply(tool_gateway("gw", namespace, cls, env=[{"name": "RUST_LOG", "value": "debug"}]))

    async def untraced() -> bool:
        obj = await world.get(TOOL_GATEWAY, "gw", namespace)
        p = await world.get(AGENTGATEWAY_PARAMETERS, "gw", namespace)
        return (
            obj is not None
            and p is not None
            and condition(obj, "OpenTelemetryTranslated") is None
            and "rawConfig" not in p["spec"]
        )

    await eventually(untraced, "the tracing config and its condition are gone")
