"""The OTEL exporter variables of a ToolGateway, translated to agentgateway's tracing config."""

from __future__ import annotations

from typing import Any

import pytest

from agentkube.api.core import EnvVar
from agentkube.controllers.otel import DROPPED_VARIABLES, parse_headers, translate


def env(**values: str) -> list[EnvVar]:
    return [EnvVar(name=name, value=value) for name, value in values.items()]


CASES: list[tuple[str, dict[str, str], dict[str, Any] | None]] = [
    (
        "seed example: general variables, http/protobuf, k=v header",
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=secret123",
        },
        {
            "otlpEndpoint": "http://otel-collector:4318",
            "otlpProtocol": "http",
            "headers": {"api-key": "secret123"},
        },
    ),
    (
        "general endpoint only: protocol defaults to http/protobuf, as OpenTelemetry's does",
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
        {"otlpEndpoint": "http://collector:4318", "otlpProtocol": "http"},
    ),
    (
        "grpc keeps the endpoint unchanged and adds no path",
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317/", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {"otlpEndpoint": "http://collector:4317/", "otlpProtocol": "grpc"},
    ),
    (
        "protocol names are case-insensitive",
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "GRPC"},
        {"otlpEndpoint": "http://collector:4317", "otlpProtocol": "grpc"},
    ),
    (
        "http/json is sent as http",
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
        {"otlpEndpoint": "http://collector:4318", "otlpProtocol": "http"},
    ),
    (
        "trace-specific endpoint, protocol and headers win over the general ones",
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://general:4318",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_HEADERS": "a=general",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4317",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "b=traces",
        },
        {"otlpEndpoint": "http://traces:4317", "otlpProtocol": "grpc", "headers": {"b": "traces"}},
    ),
    (
        "each setting is overridden separately: trace endpoint with the general protocol and headers",
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_HEADERS": "a=1",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4317",
        },
        {"otlpEndpoint": "http://traces:4317", "otlpProtocol": "grpc", "headers": {"a": "1"}},
    ),
    (
        "trace-specific http endpoint is used as it is: its path is the traces path",
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example.com/v1/traces"},
        {"otlpEndpoint": "https://traces.example.com", "otlpProtocol": "http"},
    ),
    (
        "trace-specific http endpoint with a custom path keeps that path",
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example.com/otlp/spans"},
        {"otlpEndpoint": "https://traces.example.com", "otlpProtocol": "http", "path": "/otlp/spans"},
    ),
    (
        "general http endpoint with a base path gets /v1/traces appended to it",
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://gw.example.com/otlp/"},
        {"otlpEndpoint": "https://gw.example.com", "otlpProtocol": "http", "path": "/otlp/v1/traces"},
    ),
    (
        "headers as k=v,k2=v2 with spaces and percent-encoded values",
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key = s3cr%3Dt , Authorization=Bearer%20abc",
        },
        {
            "otlpEndpoint": "http://c:4318",
            "otlpProtocol": "http",
            "headers": {"api-key": "s3cr=t", "Authorization": "Bearer abc"},
        },
    ),
    (
        "headers as a JSON object",
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": '{"x-tenant": "team-a", "x-key": "k,v=1"}',
        },
        {
            "otlpEndpoint": "http://c:4318",
            "otlpProtocol": "http",
            "headers": {"x-tenant": "team-a", "x-key": "k,v=1"},
        },
    ),
    (
        "no endpoint: no tracing config at all",
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_HEADERS": "a=b"},
        None,
    ),
    ("empty endpoint counts as none", {"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, None),
    (
        "metrics and logs variables are not translated",
        {
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://metrics:4318",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://logs:4318",
        },
        None,
    ),
]


@pytest.mark.parametrize(("case", "values", "tracing"), CASES, ids=[c[0] for c in CASES])
def test_translates_otel_variables_to_agentgateway_tracing(
    case: str, values: dict[str, str], tracing: dict[str, Any] | None
) -> None:
    result = translate(env(**values))
    assert result.tracing == tracing
    # None of the exporter variables reaches the container.
    assert result.env == []


def test_keeps_other_variables_in_order_and_removes_every_otlp_exporter_variable() -> None:
    result = translate(
        env(
            LOG_LEVEL="info",
            OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4318",
            OTEL_SERVICE_NAME="gw",
            OTEL_EXPORTER_OTLP_METRICS_PROTOCOL="grpc",
            OTEL_EXPORTER_OTLP_LOGS_HEADERS="a=b",
            RUST_LOG="debug",
        )
    )
    assert result.env == [
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "OTEL_SERVICE_NAME", "value": "gw"},
        {"name": "RUST_LOG", "value": "debug"},
    ]
    assert result.found == (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
    )


def test_names_each_dropped_metrics_and_logs_variable_in_the_notes() -> None:
    result = translate(
        env(OTEL_EXPORTER_OTLP_METRICS_ENDPOINT="http://m:4318", OTEL_EXPORTER_OTLP_LOGS_PROTOCOL="grpc")
    )
    assert len(result.notes) == 2
    assert "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT was removed" in result.notes[0].message
    assert "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL was removed" in result.notes[1].message
    assert len(DROPPED_VARIABLES) == 6


def test_fully_translated_variables_leave_no_notes() -> None:
    result = translate(env(OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4317", OTEL_EXPORTER_OTLP_PROTOCOL="grpc"))
    assert result.notes == ()


def test_without_otel_variables_nothing_is_found_or_noted() -> None:
    result = translate(env(LOG_LEVEL="info"))
    assert result == translate(env(LOG_LEVEL="info"))
    assert (result.tracing, result.found, result.notes) == (None, (), ())


def test_settings_without_an_endpoint_say_tracing_is_not_configured() -> None:
    result = translate(env(OTEL_EXPORTER_OTLP_PROTOCOL="grpc"))
    assert result.tracing is None
    assert any("tracing is not configured" in note.message for note in result.notes)


def test_unknown_protocol_falls_back_to_http_and_says_so() -> None:
    result = translate(env(OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4318", OTEL_EXPORTER_OTLP_PROTOCOL="thrift"))
    assert result.tracing == {"otlpEndpoint": "http://c:4318", "otlpProtocol": "http"}
    assert any("'thrift' is unknown" in note.message for note in result.notes)


def test_variable_from_a_secret_stays_in_the_env_and_is_noted() -> None:
    headers = EnvVar.model_validate(
        {
            "name": "OTEL_EXPORTER_OTLP_HEADERS",
            "valueFrom": {"secretKeyRef": {"name": "otel", "key": "headers"}},
        }
    )
    result = translate([EnvVar(name="OTEL_EXPORTER_OTLP_ENDPOINT", value="http://c:4317"), headers])
    assert result.tracing == {"otlpEndpoint": "http://c:4317", "otlpProtocol": "http"}
    assert result.env == [
        {
            "name": "OTEL_EXPORTER_OTLP_HEADERS",
            "valueFrom": {"secretKeyRef": {"name": "otel", "key": "headers"}},
        }
    ]
    assert any("from a Secret" in note.message for note in result.notes)


@pytest.mark.parametrize(
    ("text", "headers", "skipped"),
    [
        ("a=1,b=2", {"a": "1", "b": "2"}, []),
        ("a=1,,b=2,", {"a": "1", "b": "2"}, []),
        ("a=x=y", {"a": "x=y"}, []),
        ("novalue,a=1", {"a": "1"}, ["novalue"]),
        ("=orphan", {}, ["=orphan"]),
        ('{"a": "1", "n": 2}', {"a": "1", "n": "2"}, []),
        ("{not json", {}, ["{not json"]),
    ],
)
def test_parses_headers_in_both_forms(text: str, headers: dict[str, str], skipped: list[str]) -> None:
    assert parse_headers(text) == (headers, skipped)


def test_malformed_header_entries_are_reported() -> None:
    result = translate(
        env(OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4318", OTEL_EXPORTER_OTLP_HEADERS="a=1,broken")
    )
    assert result.tracing is not None and result.tracing["headers"] == {"a": "1"}
    assert any("'broken'" in note.message for note in result.notes)
