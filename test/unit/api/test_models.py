"""The typed models read the seeds, fill in documented defaults and name fields in their errors."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from agentkube.api import (
    KINDS,
    LLM_GATEWAY_KIND,
    MCP_KIND,
    TOOL_GATEWAY_CLASS_KIND,
    TOOL_GATEWAY_KIND,
    TOOL_SERVER_KIND,
    InvalidSpec,
    kind_of,
    parse_llm_gateway,
    parse_mcp,
    parse_tool_gateway,
    parse_tool_gateway_class,
    parse_tool_server,
)
from agentkube.api.core import quantity_value
from agentkube.api.model import Rule
from agentkube.api.toolgateway import AGENTGATEWAY_CONTROLLER

from .conftest import ALL_SAMPLES as SAMPLES
from .conftest import load_docs, seed_object


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_of_ours_parses(path: Any) -> None:
    ours = [doc for doc in load_docs(path) if kind_of(doc) is not None]
    assert ours, f"{path.name} holds none of our kinds"
    for doc in ours:
        kind = kind_of(doc)
        assert kind is not None
        kind.parse(doc)


def test_mcp_seed_reads_as_typed_spec() -> None:
    spec = parse_mcp(seed_object("MCP", "github-tools"))
    assert (spec.port, spec.replicas) == (8080, 2)
    (github,) = spec.upstreams
    assert github.kind == "http"
    assert github.endpoint == "https://mcp.github.com"
    assert github.auth is not None and github.auth.mode == "bearer"
    assert github.auth.secret_ref is not None
    assert (github.auth.secret_ref.name, github.auth.secret_ref.key) == ("github-upstream-pat", "token")
    assert github.tools is not None and github.tools.allow == ["create_issue", "list_issues", "add_comment"]


def test_llm_gateway_seed_gets_defaults_for_what_it_omits() -> None:
    spec = parse_llm_gateway(seed_object("LLMGateway", "shared-gateway"))
    # replicas unset: the Deployment's own (1 until an autoscaler or kubectl scale sets it).
    assert (spec.port, spec.replicas) == (8080, None)
    assert spec.auth is not None and spec.auth.mode == "apikey" and spec.auth.secret_ref is None
    assert spec.rate_limit is not None and spec.rate_limit.scope == "perClient"
    assert spec.routing is not None
    assert [(m.from_, m.to, m.upstream) for m in spec.routing.model_map] == [
        ("opus", "claude-opus-4-7", "anthropic"),
        ("sonnet", "claude-sonnet-4-6", "anthropic"),
    ]
    assert spec.caching is None
    assert spec.upstreams[0].priority == 1


def test_tool_kinds_seeds_read_as_typed_specs() -> None:
    klass = parse_tool_gateway_class(seed_object("ToolGatewayClass", "agentgateway"))
    assert klass.controller == AGENTGATEWAY_CONTROLLER
    gateway = parse_tool_gateway(seed_object("ToolGateway", "my-tool-gateway"))
    assert gateway.tool_gateway_class_name == "agentgateway"
    assert gateway.env_from[0].config_map_ref is not None
    server = parse_tool_server(seed_object("ToolServer", "my-tool-server"))
    assert (server.protocol, server.transport_type, server.port, server.replicas) == ("mcp", "http", 8000, 1)
    assert server.args == ["--host", "0.0.0.0"]
    assert server.tool_gateway_ref is not None and server.tool_gateway_ref.namespace == "tool-gateway"


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({}, "/mcp"),
        ({"transportType": "sse"}, "/sse"),
        ({"transportType": "sse", "path": "/events"}, "/events"),
    ],
)
def test_tool_server_path_defaults_by_transport(spec: dict[str, Any], path: str) -> None:
    obj = {"metadata": {"name": "t"}, "spec": {"image": "img", "port": 80, **spec}}
    assert parse_tool_server(obj).effective_path == path


def test_snake_case_names_are_accepted_and_wire_form_is_camel_case() -> None:
    spec = TOOL_SERVER_KIND.spec_model.model_validate({"image": "img", "port": 80, "transport_type": "sse"})
    assert spec.to_dict() == {
        "protocol": "mcp",
        "transportType": "sse",
        "image": "img",
        "command": [],
        "args": [],
        "port": 80,
        "replicas": 1,
        "env": [],
        "envFrom": [],
        "security": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": [],
            "seccompProfile": "RuntimeDefault",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
        },
    }


def test_unknown_fields_are_ignored_like_go_clients_do() -> None:
    obj = {"metadata": {"name": "t"}, "spec": {"image": "img", "port": 80, "futureField": {"x": 1}}}
    assert parse_tool_server(obj).image == "img"


def test_invalid_spec_names_kind_object_and_every_field() -> None:
    obj = {
        "metadata": {"name": "tools", "namespace": "team-a"},
        "spec": {"port": 0, "upstreams": [{"name": "github", "kind": "http"}]},
    }
    with pytest.raises(InvalidSpec) as caught:
        parse_mcp(obj)
    err = caught.value
    assert (err.kind, err.key) == ("MCP", "team-a/tools")
    assert [e.path for e in err.errors] == ["spec.port", "spec.upstreams[0].endpoint"]
    assert str(err).startswith("MCP team-a/tools: spec.port: ")
    assert "spec.upstreams[0].endpoint: kind http needs endpoint" in str(err)


def test_missing_spec_reports_required_fields() -> None:
    with pytest.raises(InvalidSpec, match=r"ToolGatewayClass agentgateway: spec.controller: Field required"):
        parse_tool_gateway_class({"metadata": {"name": "agentgateway"}})


def test_bad_map_key_is_named_in_the_path() -> None:
    obj = {"metadata": {"name": "t"}, "spec": {"upstreams": [{"name": "a", "kind": "stdio", "stdio": {
        "command": "x"}}], "resources": {"limits": {"memory": "lots"}}}}  # fmt: skip
    with pytest.raises(InvalidSpec, match=r"spec\.resources\.limits\.memory: .*quantity"):
        parse_mcp(obj)


def test_status_parses_conditions_and_empty_status() -> None:
    assert MCP_KIND.parse_status({"metadata": {"name": "m"}}).conditions == []
    status = MCP_KIND.parse_status(
        {
            "metadata": {"name": "m"},
            "status": {
                "url": "http://m.team-a.svc:8080/mcp",
                "readyReplicas": 2,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Available",
                        "message": "",
                        "lastTransitionTime": "2025-01-01T00:00:00Z",
                        "observedGeneration": 3,
                    }
                ],
            },
        }
    )
    assert status.ready_replicas == 2
    assert status.conditions[0].observed_generation == 3


def test_model_map_error_names_the_first_entry_with_an_unknown_upstream() -> None:
    gateway = copy.deepcopy(seed_object("LLMGateway", "shared-gateway"))
    gateway["spec"]["routing"]["modelMap"] = [
        {"from": "opus", "to": "claude-opus-4-7", "upstream": "anthropic"},
        {"from": "sonnet", "to": "claude-sonnet-4-6", "upstream": "anthropik"},
        {"from": "haiku", "to": "claude-haiku-4-5", "upstream": "nowhere"},
    ]
    with pytest.raises(InvalidSpec) as caught:
        parse_llm_gateway(gateway)
    (error,) = caught.value.errors
    assert str(error) == (
        'spec.routing.modelMap: modelMap entry "sonnet" names upstream "anthropik", not one of spec.upstreams'
    )


def test_rule_message_expression_comes_with_its_python_form() -> None:
    with pytest.raises(ValueError, match="together"):
        Rule(cel="true", message="m", holds=None, message_expression="'m'")
    rule = Rule(cel="self > 0", message="m", holds=lambda v: v > 0, message_expression="'m'", explain=str)
    assert rule.message_for(-1) == "-1"
    assert rule.to_schema()["messageExpression"] == "'m'"


def test_service_name_rule_rejects_names_that_cannot_name_a_service() -> None:
    obj = {"metadata": {"name": "github.tools"}, "spec": {"image": "img", "port": 80}}
    with pytest.raises(InvalidSpec, match=r"metadata\.name must be"):
        parse_tool_server(obj)
    # Cluster-scoped classes name no Service, so a dotted name is fine.
    parse_tool_gateway_class({"metadata": {"name": "a.b"}, "spec": {"controller": "example.com/x"}})


def test_kinds_carry_their_api_coordinates() -> None:
    assert [(k.api_version, k.kind, k.plural, k.scope) for k in KINDS] == [
        ("agentkube.io/v1alpha1", "MCP", "mcps", "Namespaced"),
        ("agentkube.io/v1alpha1", "LLMGateway", "llmgateways", "Namespaced"),
        ("runtime.agentic-layer.ai/v1alpha1", "ToolGatewayClass", "toolgatewayclasses", "Cluster"),
        ("runtime.agentic-layer.ai/v1alpha1", "ToolGateway", "toolgateways", "Namespaced"),
        ("runtime.agentic-layer.ai/v1alpha1", "ToolServer", "toolservers", "Namespaced"),
    ]
    assert LLM_GATEWAY_KIND.short_names == ("llmgw",)
    assert TOOL_GATEWAY_KIND.short_names == ("tgw",)
    assert TOOL_GATEWAY_CLASS_KIND.short_names == ("tgc",)
    assert TOOL_SERVER_KIND.short_names == ("ts",)
    assert kind_of({"apiVersion": "v1", "kind": "Secret"}) is None


@pytest.mark.parametrize(
    ("quantity", "value"),
    [
        (2, "2"),
        ("500m", "0.5"),
        ("1Gi", "1073741824"),
        ("128Mi", "134217728"),
        ("1e3", "1000"),
        ("1.5k", "1500"),
    ],
)
def test_quantity_value_reads_kubernetes_quantities(quantity: int | str, value: str) -> None:
    assert quantity_value(quantity) == Decimal(value)


def test_requests_above_limits_are_rejected_across_units() -> None:
    base = {"metadata": {"name": "t"}, "spec": {"image": "img", "port": 80}}
    ok = {**base, "spec": {**base["spec"], "resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": 1}}}}
    parse_tool_server(ok)
    bad = {
        **base,
        "spec": {**base["spec"], "resources": {"requests": {"cpu": 2}, "limits": {"cpu": "1500m"}}},
    }
    with pytest.raises(InvalidSpec, match=r"spec\.resources\.requests"):
        parse_tool_server(bad)
