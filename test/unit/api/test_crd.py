"""The generated CRDs: committed as generated, structural, documented, and carrying every rule."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from agentkube.api import KINDS
from agentkube.api.crd import crd_file_name, crds, render, write_crds
from agentkube.api.schema import NotStructural, structural_schema

from .conftest import ROOT

BASES = ROOT / "config" / "crd" / "bases"
CRDS = {doc["spec"]["names"]["kind"]: doc for doc in crds()}


def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _properties(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property schema under ``node``, with its path, through objects, arrays and maps."""
    for name, sub in node.get("properties", {}).items():
        yield f"{path}.{name}", sub
        yield from _properties(sub, f"{path}.{name}")
    if "items" in node:
        yield from _properties(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _properties(node["additionalProperties"], f"{path}{{}}")


def _all_properties() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in CRDS:
        schema = _schema(kind)
        for part in ("spec", "status"):
            yield f"{kind}.{part}", schema["properties"][part]
            yield from _properties(schema["properties"][part], f"{kind}.{part}")


def test_committed_crds_match_the_models() -> None:
    stale = [
        doc["metadata"]["name"]
        for doc in crds()
        if not (BASES / crd_file_name(doc)).is_file()
        or (BASES / crd_file_name(doc)).read_text(encoding="utf-8") != render(doc)
    ]
    extra = {p.name for p in BASES.glob("*.yaml")} - {crd_file_name(doc) for doc in crds()}
    assert not stale and not extra, (
        f"config/crd/bases is out of date with agentkube/api (stale: {stale}, unexpected: {sorted(extra)}); "
        "run `make manifests` and commit the result"
    )


def test_write_crds_writes_one_file_per_kind_named_group_plural(tmp_path: Any) -> None:
    written = write_crds(tmp_path / "bases")
    assert [p.name for p in written] == [
        "agentkube.io_mcps.yaml",
        "agentkube.io_llmgateways.yaml",
        "runtime.agentic-layer.ai_toolgatewayclasses.yaml",
        "runtime.agentic-layer.ai_toolgateways.yaml",
        "runtime.agentic-layer.ai_toolservers.yaml",
    ]
    assert [p.read_text() for p in written] == [render(doc) for doc in crds()]


def test_schemas_are_structural_with_a_type_everywhere() -> None:
    text = json.dumps(crds())
    for forbidden in ('"$ref"', '"$defs"', '"title"', '"nullable"', '"allOf"', '"oneOf"', '"uniqueItems"'):
        assert forbidden not in text
    for path, prop in _all_properties():
        if prop.get("x-kubernetes-int-or-string"):
            assert prop["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        else:
            assert "type" in prop and "anyOf" not in prop, path
        if prop.get("type") == "object":
            assert "properties" not in prop or "additionalProperties" not in prop, path


def test_every_field_has_a_description() -> None:
    missing = [path for path, prop in _all_properties() if not prop.get("description")]
    # Items of arrays and values of maps are described by the field that holds them.
    missing = [p for p in missing if not p.endswith(("[]", "{}"))]
    assert not missing


def test_every_default_is_stated_in_the_description() -> None:
    undocumented = [
        path
        for path, prop in _all_properties()
        if "default" in prop
        and f"Defaults to {json.dumps(prop['default']).strip(chr(34))}" not in prop["description"]
    ]
    assert not undocumented


def test_every_list_and_string_in_a_cel_rule_is_bounded() -> None:
    # Unbounded lists and strings price CEL rules over the API server's budget; bound them all.
    unbounded = [
        path
        for path, prop in _all_properties()
        if (prop.get("type") == "array" and "maxItems" not in prop)
        or (prop.get("type") == "object" and "additionalProperties" in prop and "maxProperties" not in prop)
        or (
            prop.get("type") == "string"
            and "maxLength" not in prop
            and "enum" not in prop
            and "format" not in prop
        )
    ]
    assert not unbounded


def test_upstreams_are_list_maps_keyed_by_name() -> None:
    for kind in ("MCP", "LLMGateway"):
        upstreams = _schema(kind)["properties"]["spec"]["properties"]["upstreams"]
        assert upstreams["x-kubernetes-list-type"] == "map"
        assert upstreams["x-kubernetes-list-map-keys"] == ["name"]
        assert upstreams["minItems"] == 1


def test_cross_field_rules_have_messages_and_name_their_field() -> None:
    rules = [
        (path, rule) for path, prop in _all_properties() for rule in prop.get("x-kubernetes-validations", [])
    ]
    assert len(rules) >= 30
    for path, rule in rules:
        assert rule["message"], path
        # Without a fieldPath the API server reports the enclosing object, so the message names the field.
        if "fieldPath" not in rule and rule["rule"] != "self == oldSelf":
            assert rule.get("reason") in (None, "FieldValueInvalid"), path


@pytest.mark.parametrize(
    ("kind", "field", "fragment"),
    [
        ("MCP", "upstreams[]", "self.kind != 'http' || has(self.endpoint)"),
        ("MCP", "upstreams[].tools", "self.mode != 'allow' || (has(self.allow) && size(self.allow) > 0)"),
        ("LLMGateway", "", "self.upstreams.exists(u, u.name == m.upstream)"),
        ("LLMGateway", "", "self.routing.defaultModel in u.models"),
        ("LLMGateway", "upstreams[]", "self.provider != 'bedrock' || has(self.region)"),
        ("ToolGatewayClass", "controller", "self == oldSelf"),
    ],
)
def test_issue_rules_are_in_the_schema(kind: str, field: str, fragment: str) -> None:
    node = _schema(kind)["properties"]["spec"]
    for part in filter(None, field.split(".")):
        name, is_list = part.removesuffix("[]"), part.endswith("[]")
        node = node["properties"][name]
        if is_list:
            node = node["items"]
    assert any(fragment in r["rule"] for r in node.get("x-kubernetes-validations", []))


def test_crds_have_status_subresource_columns_short_names_and_category() -> None:
    for doc in crds():
        version = doc["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert doc["spec"]["names"]["categories"] == ["agentkube"]
        columns = [c["name"] for c in version["additionalPrinterColumns"]]
        assert columns[-1] == "Age"
    columns = {
        k: [c["name"] for c in CRDS[k]["spec"]["versions"][0]["additionalPrinterColumns"]] for k in CRDS
    }
    assert {"Ready", "URL"} <= set(columns["MCP"]) and {"Ready", "URL"} <= set(columns["LLMGateway"])
    assert {"Class", "Ready", "URL"} <= set(columns["ToolGateway"])
    assert {"Image", "Port", "Ready", "URL"} <= set(columns["ToolServer"])
    assert CRDS["ToolGatewayClass"]["spec"]["scope"] == "Cluster"
    assert "shortNames" not in CRDS["MCP"]["spec"]["names"]


def _columns(kind: str) -> dict[str, str]:
    version = CRDS[kind]["spec"]["versions"][0]
    return {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}


@pytest.mark.parametrize("kind", ["MCP", "LLMGateway"])
def test_workload_columns_show_ready_over_desired_and_why_not_ready(kind: str) -> None:
    # READY as a Deployment shows it: one string the controller writes, as a column is one JSONPath.
    assert _columns(kind) == {
        "Ready": ".status.ready",
        "Status": '.status.conditions[?(@.type=="Ready")].reason',
        "URL": ".status.url",
        "Age": ".metadata.creationTimestamp",
    }
    ready = _schema(kind)["properties"]["status"]["properties"]["ready"]
    assert ready["type"] == "string" and "ready" in ready["description"]


def test_tool_gateway_class_shows_its_default_annotation() -> None:
    assert (
        _columns("ToolGatewayClass")["Default"]
        == ".metadata.annotations.toolgatewayclass\\.kubernetes\\.io/is-default-class"
    )


def test_model_map_rule_says_which_entry_names_which_upstream() -> None:
    (rule,) = [
        r
        for r in _schema("LLMGateway")["properties"]["spec"]["x-kubernetes-validations"]
        if r.get("fieldPath") == ".routing.modelMap"
    ]
    assert "m.upstream" in rule["rule"]
    assert ".from" in rule["messageExpression"] and ".upstream" in rule["messageExpression"]
    assert rule["message"]  # what the API server says when the expression cannot be evaluated


def test_spec_is_required_unless_every_field_is_optional() -> None:
    assert {k for k in CRDS if _schema(k).get("required") == ["spec"]} == {
        "MCP",
        "LLMGateway",
        "ToolGatewayClass",
        "ToolServer",
    }


def test_crds_are_generated_in_kind_order_every_time() -> None:
    assert [doc["spec"]["names"]["kind"] for doc in crds()] == [k.kind for k in KINDS]
    assert [render(d) for d in crds()] == [render(d) for d in crds()]


class _Union(BaseModel):
    value: int | str


class _Set(BaseModel):
    values: set[str]


@pytest.mark.parametrize("model", [_Union, _Set])
def test_models_without_a_structural_form_are_refused(model: type[BaseModel]) -> None:
    with pytest.raises(NotStructural):
        structural_schema(model)
