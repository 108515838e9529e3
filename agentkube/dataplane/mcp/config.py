"""The MCP proxy's config file (``apiVersion: agentkube.io/v1alpha1``, ``kind: MCPProxyConfig``).

The operator renders one per MCP object into its ConfigMap; ``agentkube mcp-proxy --config PATH``
reads it with ``load_mcp_proxy_config``. What the program may rely on:

- Upstreams are ``http`` (a Streamable HTTP MCP endpoint) or ``stdio`` (a process the proxy starts).
  An MCP's ``mcpRef`` upstream arrives already resolved: an ``http`` upstream whose ``url`` is the
  referenced proxy's in-cluster URL (``http://<name>.<namespace>.svc.cluster.local:<port>``, the same
  URL its status shows), with ``mcpRef`` naming the MCP for logs. So the proxy serves MCP at ``/``.
- No secret value is in the file. A credential is named by the environment variable that carries it
  (``auth.secretEnv``; a stdio variable's ``valueFromEnv``); the Deployment fills those variables from
  Secrets. The proxy reads them at start-up.
- Names are unique: upstream names within the file, variable names within one stdio upstream.
- ``sessions.keysEnv`` names the variable holding the key ring that seals session ids: one or more
  ``<kid>:<base64 of 32 bytes>`` entries separated by commas; the first seals, every one opens (so a
  new key is put first and the old one kept until the sessions it sealed have expired). Every
  replica of one MCP reads the same Secret, so any replica can continue any session.
- ``limits`` and ``metrics`` have defaults (documented on their fields) and may be left out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, model_validator

from agentkube.dataplane.configfile import (
    API_VERSION,
    ConfigError,
    ConfigModel,
    EnvName,
    Listen,
    dump,
    load,
    load_file,
    require_unique,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_METRICS_PORT",
    "KIND",
    "ConfigError",
    "HttpAuth",
    "HttpUpstream",
    "Limits",
    "Listen",
    "MCPProxyConfig",
    "Sessions",
    "StdioEnvVar",
    "StdioUpstream",
    "ToolFilter",
    "Upstream",
    "dump",
    "load_mcp_proxy_config",
    "load_mcp_proxy_config_file",
]

KIND: Final = "MCPProxyConfig"
DEFAULT_METRICS_PORT: Final = 9090
MiB: Final = 1024 * 1024


class ToolFilter(ConfigModel):
    """Which tools of an upstream are exposed; entries are names or globs with ``*``.

    allow: only tools matching an allow entry, minus those matching a deny entry. deny: every tool
    except those matching a deny entry.
    """

    mode: Literal["allow", "deny"]
    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)


class HttpAuth(ConfigModel):
    """Credentials for an http upstream: ``Authorization: Bearer $<secretEnv>`` (bearer) or
    ``<headerName>: $<secretEnv>`` (header)."""

    mode: Literal["bearer", "header"]
    secret_env: EnvName = Field(description="Environment variable holding the token or header value.")
    header_name: str | None = None

    @model_validator(mode="after")
    def _header_name_for_header_mode(self) -> HttpAuth:
        if (self.mode == "header") != (self.header_name is not None):
            raise ValueError("headerName is required with mode header and only allowed with it")
        return self


class HttpUpstream(ConfigModel):
    """An MCP server reached over Streamable HTTP."""

    kind: Literal["http"] = "http"
    name: str = Field(min_length=1)
    url: str = Field(pattern=r"^https?://")
    mcp_ref: str | None = Field(
        default=None, description="namespace/name of the MCP this URL was resolved from."
    )
    transport: Literal["auto", "streamable-http", "sse"] = Field(
        default="auto",
        description="streamable-http, the older HTTP+SSE transport (2024-11-05), or auto: Streamable "
        "HTTP, and HTTP+SSE when the server answers a POST with 404 or 405.",
    )
    auth: HttpAuth | None = None
    tools: ToolFilter | None = None
    tool_prefix: str | None = None


class StdioEnvVar(ConfigModel):
    """A variable of a stdio process: a plain ``value``, or ``valueFromEnv``, a variable of the proxy's own
    environment (how Secret values reach the process without being written here)."""

    name: EnvName
    value: str | None = None
    value_from_env: EnvName | None = None

    @model_validator(mode="after")
    def _one_source(self) -> StdioEnvVar:
        if (self.value is None) == (self.value_from_env is None):
            raise ValueError("exactly one of value or valueFromEnv is required")
        return self


class StdioUpstream(ConfigModel):
    """A local MCP server the proxy starts and speaks to over stdin and stdout."""

    kind: Literal["stdio"] = "stdio"
    name: str = Field(min_length=1)
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: list[StdioEnvVar] = Field(default_factory=list)
    tools: ToolFilter | None = None
    tool_prefix: str | None = None

    @model_validator(mode="after")
    def _unique_env(self) -> StdioUpstream:
        require_unique((v.name for v in self.env), "env: duplicate variable(s)")
        return self


Upstream = Annotated[HttpUpstream | StdioUpstream, Field(discriminator="kind")]


class Sessions(ConfigModel):
    """How session ids of session-based (2025-era) clients are sealed."""

    keys_env: EnvName | None = Field(
        default=None,
        description="Variable holding the key ring (``<kid>:<base64 32 bytes>``, comma separated, the "
        "first seals). Without it the proxy makes a random key at start: sessions then only survive on "
        "the replica that made them, which is fine for one replica.",
    )
    ttl_seconds: int = Field(
        default=86400, ge=60, description="How long a session id stays valid after it was issued (1 day)."
    )


class Limits(ConfigModel):
    """Bounds on what one request may cost the proxy."""

    max_request_bytes: int = Field(
        default=4 * MiB, ge=1024, description="Largest request body accepted; larger gets 413 (4 MiB)."
    )
    max_message_bytes: int = Field(
        default=64 * MiB,
        ge=16 * MiB,
        description="Largest single message (an SSE event or a result) read from an upstream (64 MiB, "
        "at least 16 MiB).",
    )
    call_timeout_seconds: float = Field(
        default=600.0,
        gt=0,
        description="How long one forwarded request may take upstream before it fails (10 minutes: "
        "tools may run for minutes).",
    )
    connect_timeout_seconds: float = Field(
        default=10.0, gt=0, description="How long to wait for an upstream connection or handshake (10 s)."
    )
    grace_seconds: float = Field(
        default=25.0,
        ge=0,
        description="On SIGTERM, how long in-flight requests may run on before they are cut (25 s, "
        "inside the pod's default 30 s grace period).",
    )


class MCPProxyConfig(ConfigModel):
    """The whole config of one MCP proxy."""

    api_version: Literal["agentkube.io/v1alpha1"] = API_VERSION
    kind: Literal["MCPProxyConfig"] = KIND
    name: str = Field(description="namespace/name of the MCP object, for logs and metrics.")
    listen: Listen
    metrics: Listen = Field(
        default_factory=lambda: Listen(port=DEFAULT_METRICS_PORT),
        description="Where /metrics is served, apart from the MCP endpoint (port 9090).",
    )
    sessions: Sessions = Field(default_factory=Sessions)
    limits: Limits = Field(default_factory=Limits)
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (``scheme://host[:port]``) a browser may call from. A request with an "
        "``Origin`` header gets 403 unless it names one of these or the host the request was sent to.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names (no port) a browser's same-origin request may name besides localhost, "
        "127.0.0.1 and [::1]: the Service's names, which the operator fills in. A request whose Origin "
        "names its own Host is refused (403) unless that host is one of these: a DNS-rebinding page "
        "cannot pass for the proxy.",
    )
    upstreams: list[Upstream] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_upstreams(self) -> MCPProxyConfig:
        require_unique((u.name for u in self.upstreams), "upstreams: duplicate name(s)")
        if self.metrics.port == self.listen.port:
            raise ValueError(f"metrics.port: {self.metrics.port} is listen.port too; give it another port")
        return self


def load_mcp_proxy_config(text: str, *, source: str = "<config>") -> MCPProxyConfig:
    """Parse an MCP proxy config; ``ConfigError`` names every offending field."""
    return load(MCPProxyConfig, text, source=source)


def load_mcp_proxy_config_file(path: str | Path) -> MCPProxyConfig:
    return load_file(MCPProxyConfig, path)
