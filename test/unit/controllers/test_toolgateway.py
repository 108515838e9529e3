"""ToolGateway and ToolGatewayClass: desired children and conditions, the pure parts."""

from __future__ import annotations

from typing import Any

from agentkube.api.toolgateway import parse_tool_gateway
from agentkube.controllers.gatewayapi import ServerRef, multiplex_name, server_route_name
from agentkube.controllers.status import Problem
from agentkube.controllers.toolgateway import (
    attached_servers,
    class_choice,
    desired_children,
    gateway_conditions,
    programmed_condition,
    served_url,
)
from agentkube.controllers.toolgatewayclass import class_conditions

CONTROLLER = "runtime.agentic-layer.ai/tool-gateway-agentgateway-controller"


def owner(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "runtime.agentic-layer.ai/v1alpha1",
        "kind": "ToolGateway",
        "metadata": {"name": "gw", "namespace": "tools", "uid": "uid-gw", "generation": 3},
        "spec": spec,
    }


def server(namespace: str, name: str, transport: Any = "http", path: str = "/mcp") -> ServerRef:
    return ServerRef(namespace, name, 8000, path, transport)


def by_kind_and_name(children: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["kind"], c["metadata"]["name"]): c for c in children}


def test_without_servers_a_gateway_has_only_its_gateway_and_parameters() -> None:
    obj = owner(env=[{"name": "LOG_LEVEL", "value": "info"}])
    desired = desired_children(obj, parse_tool_gateway(obj), [], "agentgateway")
    assert sorted(by_kind_and_name(desired.children)) == [("AgentgatewayParameters", "gw"), ("Gateway", "gw")]
    for child in desired.children:
        assert child["metadata"]["namespace"] == "tools"
        assert child["metadata"]["ownerReferences"][0]["uid"] == "uid-gw"
        assert child["metadata"]["labels"]["app.kubernetes.io/name"] == "tool-gateway"
        assert child["metadata"]["labels"]["app.kubernetes.io/instance"] == "gw"
    gateway = by_kind_and_name(desired.children)[("Gateway", "gw")]
    assert gateway["spec"]["gatewayClassName"] == "agentgateway"
    assert (desired.servers, desired.namespaces, desired.left_out) == (0, 0, [])


def test_gateway_class_name_comes_from_the_operator_options() -> None:
    obj = owner()
    desired = desired_children(obj, parse_tool_gateway(obj), [], "my-agentgateway")
    assert (
        by_kind_and_name(desired.children)[("Gateway", "gw")]["spec"]["gatewayClassName"] == "my-agentgateway"
    )


def test_servers_get_one_multiplex_for_all_and_one_per_namespace() -> None:
    obj = owner()
    servers = [server("b", "two"), server("a", "one"), server("a", "three")]
    desired = desired_children(obj, parse_tool_gateway(obj), servers, "agentgateway")
    children = by_kind_and_name(desired.children)
    per_server = [
        server_route_name("gw", "a", "one"),
        server_route_name("gw", "a", "three"),
        server_route_name("gw", "b", "two"),
    ]
    assert sorted(name for kind, name in children if kind == "HTTPRoute") == sorted(
        [multiplex_name("gw", "a"), multiplex_name("gw", "b"), multiplex_name("gw", None), *per_server]
    )
    assert sorted(name for kind, name in children if kind == "AgentgatewayBackend") == sorted(
        [multiplex_name("gw", "a"), multiplex_name("gw", "b"), multiplex_name("gw", None), *per_server]
    )
    everything = children[("AgentgatewayBackend", multiplex_name("gw", None))]["spec"]["mcp"]
    assert [t["name"] for t in everything["targets"]] == ["a-one", "a-three", "b-two"]
    assert everything["failureMode"] == "FailOpen"
    team_a = children[("AgentgatewayBackend", multiplex_name("gw", "a"))]
    assert [t["name"] for t in team_a["spec"]["mcp"]["targets"]] == ["one", "three"]
    assert team_a["metadata"]["labels"]["runtime.agentic-layer.ai/toolserver-namespace"] == "a"
    route = children[("HTTPRoute", multiplex_name("gw", "a"))]
    assert route["spec"]["rules"][0]["matches"][0]["path"]["value"] == "/a/mcp"
    assert route["spec"]["parentRefs"][0] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": "gw",
        "namespace": "tools",
        "sectionName": "http",
    }
    assert (
        children[("HTTPRoute", multiplex_name("gw", None))]["spec"]["rules"][0]["matches"][0]["path"]["value"]
        == "/mcp"
    )
    assert (desired.servers, desired.namespaces) == (3, 2)


def test_each_server_gets_its_own_route_in_the_gateways_namespace() -> None:
    obj = owner()
    desired = desired_children(
        obj, parse_tool_gateway(obj), [server("team-a", "weather", transport="sse", path="/events")], "x"
    )
    children = by_kind_and_name(desired.children)
    backend = children[("AgentgatewayBackend", server_route_name("gw", "team-a", "weather"))]
    route = children[("HTTPRoute", server_route_name("gw", "team-a", "weather"))]
    for child in (backend, route):
        assert child["metadata"]["namespace"] == "tools"
        assert child["metadata"]["ownerReferences"][0]["kind"] == "ToolGateway"
        assert child["metadata"]["labels"]["runtime.agentic-layer.ai/toolserver-namespace"] == "team-a"
    assert backend["spec"] == {
        "mcp": {
            "targets": [
                {
                    "name": "weather",
                    "static": {
                        "host": "weather.team-a.svc.cluster.local",
                        "port": 8000,
                        "path": "/events",
                        "protocol": "SSE",
                    },
                }
            ]
        }
    }
    assert route["spec"]["rules"] == [
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/team-a/weather/mcp"}}],
            "backendRefs": [
                {
                    "group": "agentgateway.dev",
                    "kind": "AgentgatewayBackend",
                    "name": server_route_name("gw", "team-a", "weather"),
                    "weight": 1,
                }
            ],
        }
    ]
    assert route["spec"]["parentRefs"][0]["namespace"] == "tools"


def test_a_server_listed_twice_is_routed_once() -> None:
    obj = owner()
    desired = desired_children(
        obj, parse_tool_gateway(obj), [server("a", "one"), server("a", "one")], "agentgateway"
    )
    assert desired.servers == 1
    backend = by_kind_and_name(desired.children)[("AgentgatewayBackend", multiplex_name("gw", None))]
    assert len(backend["spec"]["mcp"]["targets"]) == 1


def test_servers_beyond_a_full_backend_are_left_out_and_listed() -> None:
    obj = owner()
    servers = [server("a", f"s{i:02d}") for i in range(34)]
    desired = desired_children(obj, parse_tool_gateway(obj), servers, "agentgateway")
    assert [s.name for s in desired.left_out] == ["s32", "s33"]
    conditions = {c["type"]: c for c in gateway_conditions(3, [], None, desired)}
    assert conditions["ToolServersRouted"]["status"] == "False"
    assert conditions["ToolServersRouted"]["reason"] == "TooManyToolServers"
    assert conditions["ToolServersRouted"]["message"].endswith("a/s32, a/s33")


def test_routed_message_counts_servers_and_namespaces_in_good_english() -> None:
    obj = owner()

    def routed(servers: list[ServerRef]) -> str:
        desired = desired_children(obj, parse_tool_gateway(obj), servers, "agentgateway")
        message: str = {c["type"]: c for c in gateway_conditions(3, [], None, desired)}["ToolServersRouted"][
            "message"
        ]
        return message

    assert routed([]) == "0 ToolServers (0 namespaces) are routed at /mcp."
    assert routed([server("a", "one")]) == "1 ToolServer (1 namespace) is routed at /mcp."
    assert (
        routed([server("a", "one"), server("a", "two")]) == "2 ToolServers (1 namespace) are routed at /mcp."
    )
    assert (
        routed([server("a", "one"), server("b", "two")]) == "2 ToolServers (2 namespaces) are routed at /mcp."
    )


def test_accepted_names_the_class_and_how_it_was_chosen() -> None:
    default = class_choice("agentgateway", named=False)
    accepted = {c["type"]: c for c in gateway_conditions(1, [], None, None, default)}["Accepted"]
    assert accepted["message"] == (
        'Implemented as ToolGatewayClass "agentgateway", the default class (spec.toolGatewayClassName is '
        "omitted). The spec is valid and every reference resolved."
    )
    named = class_choice("mine", named=True)
    assert named == 'Implemented as ToolGatewayClass "mine", named in spec.toolGatewayClassName.'
    # A problem is what Accepted=False is about: the class is in status.toolGatewayClassName.
    refused = gateway_conditions(1, [Problem("InvalidSpec", "bad")], None, None, named)
    assert {c["type"]: c for c in refused}["Accepted"]["message"] == "bad"


def test_url_is_shown_only_while_the_gateway_is_programmed() -> None:
    def url(programmed: dict[str, Any] | None) -> str | None:
        gateway = None if programmed is None else gateway_with([programmed])
        return served_url("gw", "tools", gateway_conditions(1, [], gateway, None))

    assert url(None) is None  # no Gateway yet
    assert url({"type": "Programmed", "status": "Unknown", "reason": "Pending", "message": ""}) is None
    assert url({"type": "Programmed", "status": "False", "reason": "NoAddress", "message": ""}) is None
    programmed = {"type": "Programmed", "status": "True", "reason": "Programmed", "message": "ok"}
    assert url(programmed) == "http://gw.tools.svc.cluster.local"


def test_otel_variables_become_tracing_and_leave_the_env() -> None:
    obj = owner(
        env=[
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://c:4317"},
            {"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": "grpc"},
            {"name": "A", "value": "1"},
        ],
        envFrom=[{"secretRef": {"name": "s"}}],
    )
    desired = desired_children(obj, parse_tool_gateway(obj), [], "agentgateway")
    params = by_kind_and_name(desired.children)[("AgentgatewayParameters", "gw")]["spec"]
    assert params["env"] == [{"name": "A", "value": "1"}]
    assert params["rawConfig"] == {
        "config": {"tracing": {"otlpEndpoint": "http://c:4317", "otlpProtocol": "grpc"}}
    }
    assert params["deployment"]["spec"]["template"]["spec"]["containers"] == [
        {"name": "agentgateway", "envFrom": [{"secretRef": {"name": "s"}}]}
    ]
    telemetry = {c["type"]: c for c in gateway_conditions(3, [], None, desired)}["OpenTelemetryTranslated"]
    assert (telemetry["status"], telemetry["reason"]) == ("True", "Translated")
    assert telemetry["message"] == "Traces are exported to http://c:4317 over grpc."


def test_telemetry_condition_is_false_with_the_first_note_and_absent_without_variables() -> None:
    obj = owner(env=[{"name": "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "value": "http://l:4318"}])
    desired = desired_children(obj, parse_tool_gateway(obj), [], "agentgateway")
    telemetry = {c["type"]: c for c in gateway_conditions(3, [], None, desired)}["OpenTelemetryTranslated"]
    assert (telemetry["status"], telemetry["reason"]) == ("False", "MetricsAndLogsNotTranslated")
    plain = owner(env=[{"name": "A", "value": "1"}])
    types = [
        c["type"]
        for c in gateway_conditions(3, [], None, desired_children(plain, parse_tool_gateway(plain), [], "x"))
    ]
    assert "OpenTelemetryTranslated" not in types


def test_attached_servers_skip_invalid_and_deleting_ones() -> None:
    def ts(name: str, **extra: Any) -> dict[str, Any]:
        meta = {"name": name, "namespace": "a", **extra.pop("meta", {})}
        return {"metadata": meta, "spec": {"image": "i", "port": 9000, "transportType": "sse", **extra}}

    refs = attached_servers(
        [ts("ok"), ts("bad", port=0), ts("going", meta={"deletionTimestamp": "2026-01-01T00:00:00Z"})]
    )
    assert refs == [ServerRef("a", "ok", 9000, "/sse", "sse")]
    assert refs[0].transport == "sse" and refs[0].path == "/sse"


def gateway_with(conditions: list[dict[str, Any]] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "gw", "namespace": "tools", "generation": generation}}
    if conditions is not None:
        obj["status"] = {"conditions": conditions}
    return obj


def test_programmed_mirrors_the_gateway_condition() -> None:
    assert programmed_condition(None, 2)["reason"] == "Pending"
    assert programmed_condition(gateway_with(None), 2)["status"] == "Unknown"
    mirrored = programmed_condition(
        gateway_with(
            [
                {
                    "type": "Programmed",
                    "status": "False",
                    "reason": "Invalid",
                    "message": "bad",
                    "observedGeneration": 1,
                }
            ]
        ),
        2,
    )
    assert mirrored == {
        "type": "Programmed",
        "status": "False",
        "observedGeneration": 2,
        "reason": "Invalid",
        "message": "Gateway tools/gw: bad",
    }


def test_programmed_of_an_older_gateway_generation_is_pending() -> None:
    stale = gateway_with(
        [
            {
                "type": "Programmed",
                "status": "True",
                "reason": "Programmed",
                "message": "",
                "observedGeneration": 1,
            }
        ],
        generation=2,
    )
    condition = programmed_condition(stale, 5)
    assert (condition["status"], condition["reason"]) == ("Unknown", "Pending")
    assert "generation 2" in condition["message"]


def test_ready_needs_accepted_and_programmed() -> None:
    programmed = gateway_with(
        [{"type": "Programmed", "status": "True", "reason": "Programmed", "message": "ok"}]
    )
    ready = {c["type"]: c for c in gateway_conditions(1, [], programmed, None)}["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "Ready")
    pending = {c["type"]: c for c in gateway_conditions(1, [], gateway_with(None), None)}["Ready"]
    assert (pending["status"], pending["reason"]) == ("Unknown", "Pending")
    refused = gateway_conditions(1, [Problem("GatewayAPINotInstalled", "no CRDs")], None, None)
    by_type = {c["type"]: c for c in refused}
    assert by_type["Accepted"]["status"] == "False"
    assert (by_type["Programmed"]["status"], by_type["Programmed"]["reason"]) == ("False", "NotAccepted")
    assert (by_type["Ready"]["status"], by_type["Ready"]["reason"]) == ("False", "GatewayAPINotInstalled")
    assert [c["type"] for c in refused] == ["Accepted", "Programmed", "Ready"]


def klass(
    name: str, default: bool = False, created: str = "2024-01-01T00:00:00Z", controller: str = CONTROLLER
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created, "generation": 1}
    if default:
        meta["annotations"] = {"toolgatewayclass.kubernetes.io/is-default-class": "true"}
    return {"metadata": meta, "spec": {"controller": controller}}


def test_class_of_ours_is_accepted_and_says_whether_it_is_the_default() -> None:
    plain = klass("plain")
    conditions = {c["type"]: c for c in class_conditions(plain, [plain], CONTROLLER)}
    assert conditions["Accepted"]["status"] == "True"
    assert (conditions["Default"]["status"], conditions["Default"]["reason"]) == ("False", "NotDefault")
    default = klass("only", default=True)
    only = {c["type"]: c for c in class_conditions(default, [plain, default], CONTROLLER)}["Default"]
    assert (only["status"], only["reason"]) == ("True", "DefaultClass")


def test_several_default_classes_say_so_and_name_the_one_used() -> None:
    older = klass("older", default=True, created="2024-01-01T00:00:00Z")
    newer = klass("newer", default=True, created="2024-02-01T00:00:00Z", controller="example.com/other")
    everyone = [newer, older]
    winner = {c["type"]: c for c in class_conditions(older, everyone, CONTROLLER)}["Default"]
    assert (winner["status"], winner["reason"]) == ("True", "MultipleDefaultClasses")
    assert "(older, newer)" in winner["message"]
    loser = {c["type"]: c for c in class_conditions(newer, everyone, CONTROLLER)}["Default"]
    assert (loser["status"], loser["reason"]) == ("False", "MultipleDefaultClasses")
    assert "the oldest, older, not this one" in loser["message"]
