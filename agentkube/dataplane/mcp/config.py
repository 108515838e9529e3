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
    "KIND",
    "ConfigError",
    "HttpAuth",
    "HttpUpstream",
    "Listen",
    "MCPProxyConfig",
    "StdioEnvVar",
    "StdioUpstream",
    "ToolFilter",
    "Upstream",
    "dump",
    "load_mcp_proxy_config",
    "load_mcp_proxy_config_file",
]

KIND: Final = "MCPProxyConfig"


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


class MCPProxyConfig(ConfigModel):
    """The whole config of one MCP proxy."""

    api_version: Literal["agentkube.io/v1alpha1"] = API_VERSION
    kind: Literal["MCPProxyConfig"] = KIND
    name: str = Field(description="namespace/name of the MCP object, for logs and metrics.")
    listen: Listen
    upstreams: list[Upstream] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_upstreams(self) -> MCPProxyConfig:
        require_unique((u.name for u in self.upstreams), "upstreams: duplicate name(s)")
        return self


def load_mcp_proxy_config(text: str, *, source: str = "<config>") -> MCPProxyConfig:
    """Parse an MCP proxy config; ``ConfigError`` names every offending field."""
    return load(MCPProxyConfig, text, source=source)


def load_mcp_proxy_config_file(path: str | Path) -> MCPProxyConfig:
    return load_file(MCPProxyConfig, path)
