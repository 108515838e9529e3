"""OpenTelemetry exporter variables of a ToolGateway, translated into agentgateway's tracing config.

agentgateway takes its telemetry settings from its config file, not from the standard
``OTEL_EXPORTER_OTLP_*`` variables, so a ToolGateway's variables are turned into
``rawConfig.config.tracing`` of its AgentgatewayParameters and taken out of the container's env.

What a caller may rely on (``translate``):

- Of ``OTEL_EXPORTER_OTLP_{ENDPOINT,PROTOCOL,HEADERS}`` and their ``TRACES_`` forms, each trace-specific
  variable wins over its general one, setting by setting.
- The protocol becomes ``grpc`` or ``http`` (``http/protobuf`` and ``http/json`` are both ``http``:
  agentgateway sends protobuf). With none given it is ``http``, the OpenTelemetry default; an
  unknown value falls back to that default and says so.
- For ``http`` the endpoint is split into ``otlpEndpoint`` (scheme and authority) and ``path``, with
  OpenTelemetry's rule: a general endpoint is a base URL to which ``/v1/traces`` is appended, a
  trace-specific one is used as it is. ``path`` is written only when it is not agentgateway's default
  ``/v1/traces``. For ``grpc`` the endpoint is used unchanged.
- Headers are read from ``k=v,k2=v2`` (values percent-decoded, as the OpenTelemetry spec says) or from
  a JSON object; entries without ``=`` are skipped and reported.
- Without an endpoint there is no tracing config (``tracing`` is None).
- The ``METRICS_`` and ``LOGS_`` variables are removed and not translated: agentgateway exports only
  traces over OTLP. Each is named in ``notes``.
- A variable whose value comes from a Secret or ConfigMap (``valueFrom``) cannot be translated (the
  operator never reads Secret values): it stays in the env, where the exporter library may still
  read it, and is named in ``notes``.
- Every other variable stays in the env, in its order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from agentkube.api.core import EnvVar

__all__ = [
    "DROPPED_VARIABLES",
    "TRANSLATED_VARIABLES",
    "Note",
    "OtelTranslation",
    "parse_headers",
    "translate",
]

_PREFIX = "OTEL_EXPORTER_OTLP_"
_SETTINGS = ("ENDPOINT", "PROTOCOL", "HEADERS")
TRANSLATED_VARIABLES = frozenset(f"{_PREFIX}{signal}{s}" for signal in ("", "TRACES_") for s in _SETTINGS)
"""The variables that configure agentgateway's tracing."""
DROPPED_VARIABLES = frozenset(f"{_PREFIX}{signal}{s}" for signal in ("METRICS_", "LOGS_") for s in _SETTINGS)
"""The variables removed without translation: agentgateway has no OTLP export of metrics or logs."""

# agentgateway's own default for config.tracing.path.
DEFAULT_TRACES_PATH = "/v1/traces"

Protocol = Literal["grpc", "http"]


@dataclass(frozen=True)
class Note:
    """Something of the OTEL variables that was not translated as given: a CamelCase reason, and a
    message naming the variable."""

    reason: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class OtelTranslation:
    """The outcome of ``translate``."""

    env: list[dict[str, Any]]
    """The container's env without the translated and dropped variables, in wire form."""
    tracing: dict[str, Any] | None
    """``rawConfig.config.tracing`` for agentgateway, or None without an endpoint."""
    found: tuple[str, ...] = ()
    """Names of the OTLP exporter variables the env held, in order."""
    notes: tuple[Note, ...] = field(default=())
    """What was not translated, and why; empty when everything found was translated."""


def translate(env: Sequence[EnvVar]) -> OtelTranslation:
    """Split ``env`` into agentgateway's tracing config and the variables left for the container."""
    kept: list[dict[str, Any]] = []
    values: dict[str, str] = {}
    found: list[str] = []
    notes: list[Note] = []
    for var in env:
        if var.name not in TRANSLATED_VARIABLES and var.name not in DROPPED_VARIABLES:
            kept.append(var.to_dict())
            continue
        found.append(var.name)
        if var.name in DROPPED_VARIABLES:
            notes.append(
                Note(
                    "MetricsAndLogsNotTranslated",
                    f"{var.name} was removed: agentgateway exports only traces over OTLP",
                )
            )
        elif var.value_from is not None:
            kept.append(var.to_dict())
            notes.append(
                Note(
                    "ValueFromNotTranslated",
                    f"{var.name} takes its value from a {_source_kind(var)} and cannot be translated; "
                    "it is passed to the container as it is",
                )
            )
        else:
            values[var.name] = var.value or ""

    def setting(name: str) -> str:
        # An empty variable counts as unset, as OpenTelemetry SDKs treat it.
        return (values.get(f"{_PREFIX}TRACES_{name}") or values.get(f"{_PREFIX}{name}") or "").strip()

    trace_endpoint = values.get(f"{_PREFIX}TRACES_ENDPOINT", "").strip()
    endpoint = trace_endpoint or values.get(f"{_PREFIX}ENDPOINT", "").strip()
    if not endpoint:
        if values:
            notes.append(
                Note(
                    "EndpointNotSet",
                    "no OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, so tracing "
                    "is not configured",
                )
            )
        return OtelTranslation(kept, None, tuple(found), tuple(notes))

    protocol, protocol_note = _protocol(setting("PROTOCOL"))
    if protocol_note:
        notes.append(protocol_note)
    headers_text = setting("HEADERS")
    headers, bad = parse_headers(headers_text) if headers_text else ({}, [])
    if bad:
        notes.append(
            Note(
                "MalformedHeaders",
                "OTLP headers entries without '=' were skipped: " + ", ".join(repr(entry) for entry in bad),
            )
        )

    tracing: dict[str, Any] = {}
    if protocol == "http":
        tracing.update(_http_endpoint(endpoint, signal_specific=bool(trace_endpoint)))
    else:
        tracing["otlpEndpoint"] = endpoint
    tracing["otlpProtocol"] = protocol
    if headers:
        tracing["headers"] = headers
    return OtelTranslation(kept, tracing, tuple(found), tuple(notes))


def parse_headers(text: str) -> tuple[dict[str, str], list[str]]:
    """Headers from ``k=v,k2=v2`` (percent-decoded) or a JSON object; also the entries skipped."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            decoded = json.loads(stripped)
        except ValueError:
            pass
        else:
            if isinstance(decoded, dict):
                return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in decoded.items()}, []
    headers: dict[str, str] = {}
    bad: list[str] = []
    for entry in stripped.split(","):
        if not entry.strip():
            continue
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            bad.append(entry.strip())
            continue
        headers[unquote(key.strip())] = unquote(value.strip())
    return headers, bad


def _protocol(value: str) -> tuple[Protocol, Note | None]:
    normalised = value.lower()
    if normalised == "grpc":
        return "grpc", None
    if normalised in ("", "http/protobuf"):
        return "http", None
    if normalised == "http/json":
        return "http", Note(
            "JSONProtocolNotSupported",
            "OTLP protocol http/json is sent as http/protobuf: agentgateway's exporter speaks protobuf",
        )
    return "http", Note(
        "UnknownProtocol",
        f"OTLP protocol {value!r} is unknown (grpc, http/protobuf or http/json); using http/protobuf",
    )


def _http_endpoint(endpoint: str, *, signal_specific: bool) -> dict[str, Any]:
    parts = urlsplit(endpoint)
    if not parts.scheme or not parts.netloc:
        # Not a URL agentgateway could split either; hand it over unchanged.
        return {"otlpEndpoint": endpoint}
    # A signal-specific endpoint is the whole URL; a general one is a base the signal path joins.
    path = (parts.path or "/") if signal_specific else parts.path.rstrip("/") + DEFAULT_TRACES_PATH
    config: dict[str, Any] = {"otlpEndpoint": f"{parts.scheme}://{parts.netloc}"}
    if path != DEFAULT_TRACES_PATH:
        config["path"] = path
    return config


def _source_kind(var: EnvVar) -> str:
    source = var.value_from
    assert source is not None
    if source.secret_key_ref is not None:
        return "Secret"
    if source.config_map_key_ref is not None:
        return "ConfigMap"
    return "field of the pod"
