"""The MCP wire helpers: header values, the Mcp-Param-* headers a tools/call mirrors, envelopes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agentkube.dataplane.mcp import wire


@given(st.text())
def test_any_header_value_round_trips_and_is_visible_ascii(value: str) -> None:
    encoded = wire.encode_header_value(value)
    assert all(0x20 <= ord(c) <= 0x7E for c in encoded)
    assert wire.decode_header_value(encoded) == value


def test_plain_values_stay_as_they_are_and_others_are_wrapped() -> None:
    assert wire.encode_header_value("get_weather") == "get_weather"
    assert wire.encode_header_value(" padded") == "=?base64?IHBhZGRlZA==?="
    assert wire.encode_header_value("=?base64?abc?=").startswith("=?base64?")
    assert wire.decode_header_value("=?base64?not base64?=") is None
    assert wire.decode_header_value("=?base64?YQ?=") is None  # not canonical base64


SCHEMA = {
    "type": "object",
    "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "count": {"type": "integer", "x-mcp-header": "Count"},
        "dry": {"type": "boolean", "x-mcp-header": "Dry-Run"},
        "nested": {"type": "object", "properties": {"zone": {"type": "string", "x-mcp-header": "Zone"}}},
        "plain": {"type": "string"},
    },
}


def test_param_headers_mirror_annotated_arguments_only() -> None:
    arguments = {"region": "eu", "count": 3.0, "dry": True, "nested": {"zone": "b"}, "plain": "x"}
    assert wire.param_headers(SCHEMA, arguments) == {
        "Mcp-Param-Region": "eu",
        "Mcp-Param-Count": "3",
        "Mcp-Param-Dry-Run": "true",
        "Mcp-Param-Zone": "b",
    }


def test_param_headers_skip_absent_and_unrenderable_values() -> None:
    assert wire.param_headers(SCHEMA, {"region": ["a"], "nested": "not an object"}) == {}
    assert wire.param_headers(SCHEMA, None) == {}
    assert wire.param_headers(None, {"region": "eu"}) == {}


def test_a_malformed_or_duplicated_annotation_yields_no_headers() -> None:
    bad_token = {"properties": {"a": {"type": "string", "x-mcp-header": "has space"}}}
    twice = {
        "properties": {
            "a": {"type": "string", "x-mcp-header": "Same"},
            "b": {"type": "string", "x-mcp-header": "same"},
        }
    }
    at_root = {"x-mcp-header": "Root", "properties": {}}
    for schema in (bad_token, twice, at_root):
        assert wire.param_headers(schema, {"a": "1", "b": "2"}) == {}


def test_non_ascii_values_are_wrapped() -> None:
    assert wire.param_headers(SCHEMA, {"region": "zürich"}) == {"Mcp-Param-Region": "=?base64?esO8cmljaA==?="}


def test_without_envelope_keeps_other_meta_and_drops_an_emptied_one() -> None:
    meta = {wire.PROTOCOL_VERSION_KEY: wire.MODERN, wire.CAPABILITIES_KEY: {}, "progressToken": 7}
    assert wire.without_envelope({"name": "x", "_meta": meta}) == {"name": "x", "_meta": {"progressToken": 7}}
    assert wire.without_envelope({"_meta": {wire.PROTOCOL_VERSION_KEY: wire.MODERN}}) == {}
    assert wire.list_kind("notifications/tools/list_changed") == "tools"
    assert wire.list_kind("notifications/roots/list_changed") is None


def test_egress_takes_the_proxy_of_the_scheme_once_and_honours_no_proxy() -> None:
    from agentkube.dataplane.mcp.http import egress

    env = {
        "HTTPS_PROXY": "http://user:pw@proxy.internal:3128",
        "http_proxy": "http://plain.internal:8080",
        "NO_PROXY": "localhost,.svc.cluster.local,10.0.0.1:443",
    }
    assert egress("https://mcp.example.com/mcp", env) == {
        "proxy": "http://proxy.internal:3128",
        "proxy_headers": {"Proxy-Authorization": "Basic dXNlcjpwdw=="},
    }
    assert egress("http://mcp.example.com/mcp", env) == {"proxy": "http://plain.internal:8080"}
    assert egress("http://tools.team-a.svc.cluster.local:8080/", env) == {}
    assert egress("http://localhost:9000/mcp", env) == {}
    assert egress("https://10.0.0.1/mcp", env) == {}
    assert egress("https://mcp.example.com/mcp", {}) == {}
    assert egress("https://anything.example/", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}) == {}
