"""Gateway API and agentgateway objects, class ownership rules and CRD checks: the pure parts."""

from __future__ import annotations

from typing import Any

import pytest

from agentkube.api.toolgateway import parse_tool_gateway
from agentkube.controllers.gatewayapi import (
    AGENTGATEWAY_CRDS,
    GATEWAY_API_CRDS,
    MAX_MCP_TARGETS,
    McpTarget,
    ServerRef,
    admission,
    agentgateway_parameters,
    crd_problem,
    decide_class,
    default_classes,
    gateway,
    http_route,
    mcp_backend,
    missing_crds,
    multiplex_name,
    multiplex_targets,
    selector_matches,
    server_route_name,
    trim_crd,
)

CONTROLLER = "runtime.agentic-layer.ai/tool-gateway-agentgateway-controller"


def test_gateway_has_one_http_listener_for_its_own_namespace_and_points_at_its_parameters() -> None:
    assert gateway("gw", "ns", gateway_class_name="agentgateway", parameters_name="gw") == {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "ns"},
        "spec": {
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
                "parametersRef": {"group": "agentgateway.dev", "kind": "AgentgatewayParameters", "name": "gw"}
            },
        },
    }


def test_parameters_carry_env_envfrom_through_the_overlay_clusterip_and_tracing() -> None:
    params = agentgateway_parameters(
        "gw",
        "ns",
        env=[{"name": "LOG_LEVEL", "value": "info"}],
        env_from=[{"configMapRef": {"name": "my-config"}}],
        tracing={"otlpEndpoint": "http://c:4317", "otlpProtocol": "grpc"},
    )
    assert params == {
        "apiVersion": "agentgateway.dev/v1alpha1",
        "kind": "AgentgatewayParameters",
        "metadata": {"name": "gw", "namespace": "ns"},
        "spec": {
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
            "rawConfig": {"config": {"tracing": {"otlpEndpoint": "http://c:4317", "otlpProtocol": "grpc"}}},
        },
    }


def test_parameters_without_tracing_have_no_raw_config() -> None:
    params = agentgateway_parameters("gw", "ns", env=[], env_from=[], tracing=None)
    assert "rawConfig" not in params["spec"]
    assert params["spec"]["env"] == []


def test_backend_lists_static_mcp_targets() -> None:
    target = McpTarget("weather", "weather.team-a.svc.cluster.local", 8000, "/mcp", "StreamableHTTP")
    assert mcp_backend("weather", "team-a", [target]) == {
        "apiVersion": "agentgateway.dev/v1alpha1",
        "kind": "AgentgatewayBackend",
        "metadata": {"name": "weather", "namespace": "team-a"},
        "spec": {
            "mcp": {
                "targets": [
                    {
                        "name": "weather",
                        "static": {
                            "host": "weather.team-a.svc.cluster.local",
                            "port": 8000,
                            "path": "/mcp",
                            "protocol": "StreamableHTTP",
                        },
                    }
                ]
            }
        },
    }


def test_multiplex_backend_fails_open_and_carries_its_labels() -> None:
    target = McpTarget("a", "a.x.svc.cluster.local", 1, "/mcp", "SSE")
    backend = mcp_backend("gw.mcp", "ns", [target], fail_open=True, labels={"k": "v"})
    assert backend["spec"]["mcp"]["failureMode"] == "FailOpen"
    assert backend["metadata"]["labels"] == {"k": "v"}


@pytest.mark.parametrize("count", [0, MAX_MCP_TARGETS + 1])
def test_backend_refuses_a_target_count_agentgateway_would_reject(count: int) -> None:
    targets = [McpTarget(f"t{i}", "h", 1, "/mcp", "SSE") for i in range(count)]
    with pytest.raises(ValueError, match="1 to 32 targets"):
        mcp_backend("b", "ns", targets)


def test_route_attaches_to_the_gateway_listener_and_sends_the_prefix_to_the_local_backend() -> None:
    route = http_route(
        "weather",
        "team-a",
        gateway_name="gw",
        gateway_namespace="tools",
        path_prefix="/team-a/weather/mcp",
        backend_name="weather",
    )
    assert route == {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "weather", "namespace": "team-a"},
        "spec": {
            "parentRefs": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": "Gateway",
                    "name": "gw",
                    "namespace": "tools",
                    "sectionName": "http",
                }
            ],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/team-a/weather/mcp"}}],
                    "backendRefs": [
                        {
                            "group": "agentgateway.dev",
                            "kind": "AgentgatewayBackend",
                            "name": "weather",
                            "weight": 1,
                        }
                    ],
                }
            ],
        },
    }


def test_multiplex_names_never_equal_a_server_or_another_gateways_names() -> None:
    # Gateway "a" with servers in namespace "b-c" against gateway "a-b" with servers in "c".
    assert multiplex_name("a", "b-c") != multiplex_name("a-b", "c")
    # Readable, then a hash of what the name stands for.
    assert multiplex_name("a", None).startswith("a-mcp-")
    assert multiplex_name("a", "team").startswith("a-team-")
    # The Gateway "a-mcp" (its own name) and the multiplex of gateway "a" differ.
    assert multiplex_name("a", None) != "a-mcp"
    # A server named "mcp" in namespace "team" against the multiplex of "team".
    assert server_route_name("a", "team", "mcp") != multiplex_name("a", "team")
    assert server_route_name("a", "team", "mcp").startswith("a-team-mcp-")
    # A namespace "mcp" against the gateway-wide multiplex.
    assert multiplex_name("a", "mcp") != multiplex_name("a", None)


def gateway_object(**allowed: Any) -> tuple[dict[str, Any], Any]:
    obj = {
        "apiVersion": "runtime.agentic-layer.ai/v1alpha1",
        "kind": "ToolGateway",
        "metadata": {"name": "hub", "namespace": "tools", "uid": "u"},
        "spec": {"allowedToolServers": {"namespaces": allowed}} if allowed else {},
    }
    return obj, parse_tool_gateway(obj)


def test_admission_by_default_takes_every_namespace() -> None:
    obj, spec = gateway_object()
    assert admission(obj, spec, "anyone", None, granted=False) is None


def test_admission_same_takes_the_own_namespace_or_a_grant() -> None:
    obj, spec = gateway_object(**{"from": "Same"})
    assert admission(obj, spec, "tools", None, granted=False) is None
    assert admission(obj, spec, "team-a", {}, granted=True) is None
    refused = admission(obj, spec, "team-a", {}, granted=False)
    assert refused is not None
    assert refused.startswith("ToolGateway tools/hub: spec.allowedToolServers.namespaces admits its own")
    assert "ReferenceGrant from runtime.agentic-layer.ai/ToolServer in team-a" in refused


def test_admission_selector_matches_the_namespace_labels() -> None:
    selector = {
        "matchLabels": {"team": "a"},
        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}],
    }
    obj, spec = gateway_object(**{"from": "Selector", "selector": selector})
    assert admission(obj, spec, "team-a", {"team": "a"}, granted=False) is None
    assert admission(obj, spec, "team-a", {"team": "a", "tier": "x"}, granted=False) is not None
    assert admission(obj, spec, "team-b", {"team": "b"}, granted=False) is not None
    # An unknown namespace (not cached) is not admitted by a selector.
    assert admission(obj, spec, "team-a", None, granted=False) is not None


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({}, {}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
    ],
)
def test_selector_matches_like_kubernetes(
    selector: dict[str, Any], labels: dict[str, str], matches: bool
) -> None:
    assert selector_matches(selector, labels) is matches


def server(
    namespace: str, name: str, port: int = 8000, transport: Any = "http", path: str = "/mcp"
) -> ServerRef:
    return ServerRef(namespace, name, port, path, transport)


def test_target_names_are_readable_and_sorted() -> None:
    targets, left_out = multiplex_targets(
        [server("b", "two"), server("a", "one", 9000, "sse", "/sse")], across_namespaces=True
    )
    assert left_out == []
    assert [t.to_dict() for t in targets] == [
        {
            "name": "a-one",
            "static": {"host": "one.a.svc.cluster.local", "port": 9000, "path": "/sse", "protocol": "SSE"},
        },
        {
            "name": "b-two",
            "static": {
                "host": "two.b.svc.cluster.local",
                "port": 8000,
                "path": "/mcp",
                "protocol": "StreamableHTTP",
            },
        },
    ]
    per_namespace, _ = multiplex_targets([server("a", "one")], across_namespaces=False)
    assert per_namespace[0].name == "one"


def test_target_names_do_not_change_when_other_servers_come_or_go() -> None:
    base = [server("team-a", "weather"), server("team-b", "search")]
    before = {t.host: t.name for t in multiplex_targets(base, across_namespaces=True)[0]}
    more = [*base, server("team-a", "alpha"), server("aaa", "first")]
    after = {t.host: t.name for t in multiplex_targets(more, across_namespaces=True)[0]}
    fewer = {t.host: t.name for t in multiplex_targets(base[1:], across_namespaces=True)[0]}
    for host, name in before.items():
        assert after[host] == name
        assert fewer.get(host, name) == name


def test_colliding_target_names_both_get_a_hash_suffix_and_stay_unique() -> None:
    targets, _ = multiplex_targets(
        [server("a-b", "c"), server("a", "b-c"), server("x", "y")], across_namespaces=True
    )
    names = [t.name for t in targets]
    assert len(set(names)) == 3
    assert "x-y" in names
    collided = [n for n in names if n != "x-y"]
    assert all(n.startswith("a-b-c-") and len(n) == len("a-b-c-") + 6 for n in collided)


def test_backend_takes_at_most_32_targets_and_names_the_rest() -> None:
    servers = [server("ns", f"s{i:02d}") for i in range(40)]
    targets, left_out = multiplex_targets(servers, across_namespaces=False)
    assert len(targets) == MAX_MCP_TARGETS
    assert [s.name for s in left_out] == [f"s{i:02d}" for i in range(32, 40)]


def klass(
    name: str, controller: str = CONTROLLER, default: bool = False, created: str = "2024-01-01T00:00:00Z"
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created}
    if default:
        meta["annotations"] = {"toolgatewayclass.kubernetes.io/is-default-class": "true"}
    return {"metadata": meta, "spec": {"controller": controller}}


def test_explicit_class_of_ours_is_ours() -> None:
    decision = decide_class("agentgateway", [klass("agentgateway")], CONTROLLER)
    assert (decision.ours, decision.class_name) == (True, "agentgateway")


def test_explicit_class_of_another_controller_is_not_ours_even_with_a_default_of_ours() -> None:
    classes = [klass("theirs", controller="example.com/other"), klass("ours", default=True)]
    decision = decide_class("theirs", classes, CONTROLLER)
    assert (decision.ours, decision.class_name) == (False, "theirs")
    assert "example.com/other" in decision.message


def test_explicit_class_that_does_not_exist_never_falls_back_to_the_default() -> None:
    decision = decide_class("missing", [klass("ours", default=True)], CONTROLLER)
    assert (decision.ours, decision.class_name) == (False, "missing")
    assert "does not exist" in decision.message


def test_no_class_name_uses_the_default_class() -> None:
    assert decide_class(None, [klass("plain"), klass("ours", default=True)], CONTROLLER).ours
    theirs = decide_class(None, [klass("theirs", controller="example.com/other", default=True)], CONTROLLER)
    assert (theirs.ours, theirs.class_name) == (False, "theirs")


def test_no_class_name_and_no_default_is_not_ours() -> None:
    decision = decide_class(None, [klass("ours")], CONTROLLER)
    assert not decision.ours
    assert "no default" in decision.message


def test_oldest_of_several_default_classes_decides() -> None:
    older = klass("older", controller="example.com/other", default=True, created="2023-01-01T00:00:00Z")
    newer = klass("newer", default=True, created="2024-06-01T00:00:00Z")
    assert [c["metadata"]["name"] for c in default_classes([newer, older])] == ["older", "newer"]
    assert not decide_class(None, [newer, older], CONTROLLER).ours


def test_default_annotation_must_say_true() -> None:
    cls = klass("ours")
    cls["metadata"]["annotations"] = {"toolgatewayclass.kubernetes.io/is-default-class": "false"}
    assert default_classes([cls]) == []


def established(
    name: str, group: str, versions: list[tuple[str, bool]], established: bool = True
) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"group": group, "versions": [{"name": v, "served": s} for v, s in versions]},
        "status": {"conditions": [{"type": "Established", "status": "True" if established else "False"}]},
    }


def test_crd_problems_name_the_crd_and_what_is_wrong() -> None:
    gateways = GATEWAY_API_CRDS[0]
    assert crd_problem(None, gateways) == (
        "CustomResourceDefinition gateways.gateway.networking.k8s.io is not installed; "
        "Gateway gateway.networking.k8s.io/v1 cannot be created"
    )
    not_yet = established(gateways.name, "gateway.networking.k8s.io", [("v1", True)], established=False)
    assert "not established" in str(crd_problem(not_yet, gateways))
    old = established(gateways.name, "gateway.networking.k8s.io", [("v1beta1", True), ("v1", False)])
    assert "does not serve v1 (served: v1beta1)" in str(crd_problem(old, gateways))
    good = established(gateways.name, "gateway.networking.k8s.io", [("v1", True)])
    assert crd_problem(good, gateways) is None


def test_missing_crds_lists_those_not_served_with_their_reason() -> None:
    crds = {c.name: established(c.name, c.gvk.group, [(c.gvk.version, True)]) for c in GATEWAY_API_CRDS}
    missing = missing_crds(crds.get, GATEWAY_API_CRDS + AGENTGATEWAY_CRDS)
    assert [m.crd.name for m in missing] == [
        "agentgatewayparameters.agentgateway.dev",
        "agentgatewaybackends.agentgateway.dev",
    ]
    assert {m.crd.reason for m in missing} == {"AgentgatewayNotInstalled"}


def test_trimmed_crd_keeps_what_the_checks_read_and_drops_schemas() -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": "gateways.gateway.networking.k8s.io",
            "uid": "u",
            "resourceVersion": "7",
            "managedFields": [{}],
        },
        "spec": {
            "group": "gateway.networking.k8s.io",
            "names": {"kind": "Gateway", "plural": "gateways", "listKind": "GatewayList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
        "status": {
            "conditions": [
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "",
                    "lastTransitionTime": "t",
                }
            ]
        },
    }
    trimmed = trim_crd(crd)
    assert trimmed["metadata"] == {
        "name": "gateways.gateway.networking.k8s.io",
        "uid": "u",
        "resourceVersion": "7",
    }
    assert trimmed["spec"]["versions"] == [{"name": "v1", "served": True}]
    assert crd_problem(trimmed, GATEWAY_API_CRDS[0]) is None
