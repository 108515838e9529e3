"""MCP (agentkube.io/v1alpha1): a proxy that fronts upstream MCP servers with a filtered tool surface."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from agentkube.api.core import EnvList
from agentkube.api.kind import SERVICE_NAME_RULE, Kind
from agentkube.api.meta import DnsLabel, HttpUrl, ObjectName, SecretKeyRef
from agentkube.api.model import ApiModel, ListMap, ListSet, Rule, belongs_to
from agentkube.api.pod import WORKLOAD_COLUMNS, WorkloadSpec, WorkloadStatus

__all__ = [
    "MCP_KIND",
    "MCPSpec",
    "MCPStatus",
    "McpRef",
    "McpUpstream",
    "StdioCommand",
    "ToolFilter",
    "UpstreamAuth",
    "parse_mcp",
]

# MCP tool names are letters, digits, '_', '-', '.' and '/'; '*' matches any run of characters.
ToolPattern = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_./*-]+$")]


class McpRef(ApiModel):
    """Another MCP object, used as an upstream through its Service."""

    name: ObjectName = Field(description="Name of the MCP.")
    namespace: DnsLabel | None = Field(
        None,
        description="Namespace of the MCP; the namespace of this MCP when omitted. An MCP of another "
        "namespace is used only when a Gateway API ReferenceGrant there allows it (from agentkube.io/MCP "
        "in this namespace to agentkube.io/MCP); without one the upstream is left out and Accepted is "
        "False with reason RefNotPermitted.",
    )


class StdioCommand(ApiModel):
    """A local MCP server the proxy starts as a child process and speaks to over stdin and stdout."""

    command: str = Field(
        min_length=1,
        max_length=4096,
        description="Executable to run, looked up on the proxy container's PATH (e.g. npx or uvx).",
    )
    args: list[Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=list, max_length=64, description="Arguments passed to the command."
    )
    env: EnvList = Field(
        default_factory=list,
        description="Environment of the child process. Values from Secrets (valueFrom.secretKeyRef) reach "
        "the proxy as container environment variables; they are never written to its ConfigMap.",
    )


class UpstreamAuth(ApiModel):
    """How the proxy authenticates to an http upstream."""

    mode: Literal["none", "bearer", "header"] = Field(
        "none",
        description="none sends no credentials; bearer sends 'Authorization: Bearer <secret>'; header "
        "sends the secret as the value of headerName. Defaults to none.",
    )
    secret_ref: SecretKeyRef | None = Field(
        None, description="Secret key holding the token or header value; required for bearer and header."
    )
    header_name: str | None = Field(
        None,
        max_length=256,
        pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$",
        description="HTTP header carrying the secret, e.g. X-API-Key; required for mode header only.",
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.mode == 'none' || has(self.secretRef)",
            holds=lambda a: a.mode == "none" or a.secret_ref is not None,
            field=".secretRef",
            reason="FieldValueRequired",
            message="modes bearer and header need a secretRef",
        ),
        Rule(
            cel="self.mode != 'none' || !has(self.secretRef)",
            holds=lambda a: a.mode != "none" or a.secret_ref is None,
            field=".secretRef",
            reason="FieldValueForbidden",
            message="mode none sends no credentials, so it takes no secretRef",
        ),
        Rule(
            cel="self.mode != 'header' || has(self.headerName)",
            holds=lambda a: a.mode != "header" or a.header_name is not None,
            field=".headerName",
            reason="FieldValueRequired",
            message="mode header needs a headerName",
        ),
        Rule(
            cel="self.mode == 'header' || !has(self.headerName)",
            holds=lambda a: a.mode == "header" or a.header_name is None,
            field=".headerName",
            reason="FieldValueForbidden",
            message="headerName is only for mode header",
        ),
    )


def _needs_entries(mode: Literal["allow", "deny"]) -> Rule:
    """The rule that a filter in ``mode`` has at least one entry in the list of that name."""
    return Rule(
        cel=f"self.mode != '{mode}' || (has(self.{mode}) && size(self.{mode}) > 0)",
        holds=lambda t: t.mode != mode or bool(getattr(t, mode)),
        field=f".{mode}",
        reason="FieldValueRequired",
        message=f"mode {mode} needs at least one {mode} entry",
    )


class ToolFilter(ApiModel):
    """Which of an upstream's tools the proxy exposes. Entries are tool names or globs with '*'."""

    mode: Literal["allow", "deny"] = Field(
        description="allow exposes only the tools matching an allow entry (minus those matching a deny "
        "entry); deny exposes every tool except those matching a deny entry."
    )
    allow: Annotated[list[ToolPattern], ListSet()] = Field(
        default_factory=list, max_length=256, description="Tools to expose, e.g. create_issue or list_*."
    )
    deny: Annotated[list[ToolPattern], ListSet()] = Field(
        default_factory=list, max_length=256, description="Tools to hide; deny wins over allow."
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        _needs_entries("allow"),
        _needs_entries("deny"),
        Rule(
            cel="self.mode != 'deny' || !has(self.allow) || size(self.allow) == 0",
            holds=lambda t: t.mode != "deny" or not t.allow,
            field=".allow",
            reason="FieldValueForbidden",
            message="mode deny exposes every tool not denied, so it takes no allow entries",
        ),
    )


class McpUpstream(ApiModel):
    """An MCP server the proxy forwards to."""

    name: DnsLabel = Field(description="Name of the upstream, unique within the MCP.")
    kind: Literal["http", "mcpRef", "stdio"] = Field(
        description="How the upstream is reached: http (a Streamable HTTP MCP endpoint, given in "
        "endpoint), mcpRef (another MCP in the cluster, given in mcpRef) or stdio (a process the proxy "
        "starts, given in stdio)."
    )
    endpoint: HttpUrl | None = Field(
        None, description="URL of the MCP endpoint, http:// or https://; required for kind http only."
    )
    mcp_ref: McpRef | None = Field(None, description="The MCP to forward to; required for kind mcpRef only.")
    stdio: StdioCommand | None = Field(
        None, description="The process to start; required for kind stdio only."
    )
    auth: UpstreamAuth | None = Field(
        None, description="Credentials sent to the upstream; kind http only. No credentials when omitted."
    )
    tools: ToolFilter | None = Field(
        None, description="Which of the upstream's tools are exposed. All of them when omitted."
    )
    tool_prefix: str | None = Field(
        None,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Prepended to the upstream's tool names (e.g. github_), to keep names from "
        "different upstreams apart. Filters match the names before the prefix is added.",
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        *belongs_to("kind", "http", "endpoint"),
        *belongs_to("kind", "mcpRef", "mcp_ref"),
        *belongs_to("kind", "stdio", "stdio"),
        Rule(
            cel="self.kind == 'http' || !has(self.auth) || self.auth.mode == 'none'",
            holds=lambda u: u.kind == "http" or u.auth is None or u.auth.mode == "none",
            field=".auth",
            reason="FieldValueForbidden",
            message="auth is only for kind http: mcpRef upstreams are reached inside the cluster and "
            "stdio upstreams run in the proxy",
        ),
    )


class MCPSpec(WorkloadSpec):
    """Desired state of an MCP proxy."""

    upstreams: Annotated[list[McpUpstream], ListMap("name")] = Field(
        min_length=1,
        max_length=32,
        description="The MCP servers behind the proxy, at least one; merged by name under server-side apply.",
    )


class MCPStatus(WorkloadStatus):
    """Observed state of an MCP proxy."""


# At the root, where CEL sees metadata.name (but not metadata.namespace): an mcpRef without namespace
# and with the MCP's own name points at itself. Longer cycles are the controller's to find.
NO_SELF_REFERENCE = Rule(
    cel="!self.spec.upstreams.exists(u, has(u.mcpRef) && !has(u.mcpRef.namespace) "
    "&& u.mcpRef.name == self.metadata.name)",
    holds=lambda obj: (
        not any(
            (u.get("mcpRef") or {}).get("name") == obj["metadata"]["name"] and "namespace" not in u["mcpRef"]
            for u in obj["spec"]["upstreams"]
        )
    ),
    field=".spec.upstreams",
    reason="FieldValueInvalid",
    message="an mcpRef upstream may not refer to the MCP itself",
)

MCP_KIND: Kind[MCPSpec, MCPStatus] = Kind(
    group="agentkube.io",
    version="v1alpha1",
    kind="MCP",
    plural="mcps",
    namespaced=True,
    spec_model=MCPSpec,
    status_model=MCPStatus,
    description="An MCP runs a proxy that fronts one or more upstream MCP servers (http, another MCP, or "
    "a stdio process) and exposes a filtered tool surface at one URL. agentkube runs it as a Deployment "
    "plus a Service in the MCP's namespace.",
    printer_columns=WORKLOAD_COLUMNS,
    rules=(SERVICE_NAME_RULE, NO_SELF_REFERENCE),
)

parse_mcp = MCP_KIND.parse
