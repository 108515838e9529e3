"""ToolGatewayClass, ToolGateway and ToolServer (runtime.agentic-layer.ai/v1alpha1).

A ToolGateway is an agentgateway-based gateway for MCP tool servers; its ToolGatewayClass names the
controller that implements it. A ToolServer runs an MCP server and, with a toolGatewayRef, is routed
through that gateway.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from agentkube.api.core import EnvFromList, EnvList, ResourceRequirements
from agentkube.api.kind import AGE_COLUMN, READY_COLUMN, SERVICE_NAME_RULE, URL_COLUMN, Kind, PrinterColumn
from agentkube.api.meta import DnsLabel, LabelMap, ObjectName, ObjectStatus
from agentkube.api.model import ApiModel, ListSet, Rule

__all__ = [
    "AGENTGATEWAY_CONTROLLER",
    "DEFAULT_CLASS_ANNOTATION",
    "TOOL_GATEWAY_CLASS_KIND",
    "TOOL_GATEWAY_KIND",
    "TOOL_SERVER_KIND",
    "AllowedToolServers",
    "LabelSelector",
    "LabelSelectorRequirement",
    "ToolGatewayClassSpec",
    "ToolGatewayClassStatus",
    "ToolGatewayRef",
    "ToolGatewaySpec",
    "ToolGatewayStatus",
    "ToolServerNamespaces",
    "ToolServerSecurity",
    "ToolServerSpec",
    "ToolServerStatus",
    "parse_tool_gateway",
    "parse_tool_gateway_class",
    "parse_tool_server",
]

GROUP = "runtime.agentic-layer.ai"
# The controller name agentkube answers to in ToolGatewayClass.spec.controller.
AGENTGATEWAY_CONTROLLER = "runtime.agentic-layer.ai/tool-gateway-agentgateway-controller"
# A ToolGatewayClass with this annotation set to "true" serves ToolGateways that name no class.
DEFAULT_CLASS_ANNOTATION = "toolgatewayclass.kubernetes.io/is-default-class"


class ToolGatewayClassSpec(ApiModel):
    """Desired state of a ToolGatewayClass."""

    controller: Annotated[
        str,
        Rule(
            cel="self == oldSelf", holds=None, reason="FieldValueInvalid", message="controller is immutable"
        ),
    ] = Field(
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9/._~%!$&'()*+,;=:-]+$",
        description="Name of the controller that implements ToolGateways of this class, a domain-prefixed "
        f"path; agentkube is {AGENTGATEWAY_CONTROLLER}. Immutable.",
    )


class ToolGatewayClassStatus(ObjectStatus):
    """Observed state of a ToolGatewayClass; Accepted says whether its controller took it on."""


class LabelSelectorRequirement(ApiModel):
    """One requirement of a label selector: a key, an operator and values."""

    key: Annotated[str, StringConstraints(min_length=1, max_length=317)] = Field(description="Label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="In and NotIn need values; Exists and DoesNotExist take none."
    )
    values: Annotated[list[Annotated[str, StringConstraints(max_length=63)]], ListSet()] = Field(
        default_factory=list, max_length=64, description="Label values."
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)",
            holds=lambda r: (r.operator in ("In", "NotIn")) == bool(r.values),
            field=".values",
            reason="FieldValueInvalid",
            message="In and NotIn need values; Exists and DoesNotExist take none",
        ),
    )


class LabelSelector(ApiModel):
    """A Kubernetes label selector: every matchLabels entry and every matchExpressions requirement must
    hold. An empty selector selects everything."""

    match_labels: LabelMap = Field(default_factory=dict, description="Labels that must all be present.")
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=32, description="Requirements that must all hold."
    )


class ToolServerNamespaces(ApiModel):
    """Which namespaces' ToolServers may attach to a ToolGateway (the shape of a Gateway listener's
    allowedRoutes.namespaces)."""

    from_: Literal["All", "Same", "Selector"] = Field(
        "All",
        alias="from",
        description="All: ToolServers of every namespace may attach (anyone who can create a ToolServer "
        "anywhere can add tools to this gateway's /mcp). Same: only the ToolGateway's own "
        "namespace. Selector: the namespaces whose labels match selector. A ReferenceGrant in the "
        "ToolGateway's namespace (from runtime.agentic-layer.ai/ToolServer in a namespace, to "
        "runtime.agentic-layer.ai/ToolGateway) admits that namespace too. Defaults to All.",
    )
    selector: LabelSelector | None = Field(
        None, description="Labels of the namespaces admitted; required for from Selector only."
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="(self.from == 'Selector') == has(self.selector)",
            holds=lambda n: (n.from_ == "Selector") == (n.selector is not None),
            field=".selector",
            reason="FieldValueInvalid",
            message="from Selector needs a selector, and only from Selector takes one",
        ),
    )


class AllowedToolServers(ApiModel):
    """Which ToolServers a ToolGateway routes to."""

    namespaces: ToolServerNamespaces = Field(
        default_factory=lambda: ToolServerNamespaces.model_validate({}),
        description="The namespaces whose ToolServers may attach. Defaults to from All.",
    )


class ToolGatewaySpec(ApiModel):
    """Desired state of a ToolGateway."""

    tool_gateway_class_name: ObjectName | None = Field(
        None,
        description="Name of the ToolGatewayClass; when omitted, the class annotated "
        f'{DEFAULT_CLASS_ANNOTATION}: "true".',
    )
    env: EnvList = Field(
        default_factory=list,
        description="Environment variables of the gateway container. The OTEL_EXPORTER_OTLP_* variables "
        "(ENDPOINT, PROTOCOL, HEADERS and their TRACES_ forms) configure agentgateway's tracing instead "
        "of being passed to the container.",
    )
    env_from: EnvFromList = Field(
        default_factory=list, description="ConfigMaps and Secrets whose keys become environment variables."
    )
    allowed_tool_servers: AllowedToolServers = Field(
        default_factory=AllowedToolServers,
        description="Which ToolServers may attach. A ToolServer outside it gets Accepted=False "
        "(NotAdmittedByToolGateway) and is in no route. Defaults to ToolServers of every namespace.",
    )


class ToolGatewayStatus(ObjectStatus):
    """Observed state of a ToolGateway."""

    url: str | None = Field(
        None,
        max_length=2048,
        description="In-cluster URL of the gateway; /mcp aggregates every ToolServer. Set only while the "
        "Gateway is Programmed, that is while something serves it.",
    )
    tool_gateway_class_name: ObjectName | None = Field(
        None,
        description="The ToolGatewayClass the gateway is implemented as: spec.toolGatewayClassName, or "
        "the default class chosen when that is omitted.",
    )


class ToolGatewayRef(ApiModel):
    """The ToolGateway a ToolServer is routed through."""

    name: ObjectName = Field(description="Name of the ToolGateway.")
    namespace: DnsLabel | None = Field(
        None,
        description="Namespace of the ToolGateway; the ToolServer's namespace when omitted. The gateway "
        "routes to a server of another namespace only when its spec.allowedToolServers admits that "
        "namespace or a ReferenceGrant in the gateway's namespace grants it.",
    )


Capability = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Z][A-Z_]*$")]


class ToolServerSecurity(ApiModel):
    """How much of the node and the cluster a ToolServer's pods may reach. The defaults are the
    tightest a typical MCP server runs with; loosen only what the image needs."""

    run_as_non_root: bool = Field(
        True,
        description="Refuse to start the container as root (the image must name a non-root USER). "
        "false lets an image run as root: a container escape then starts from root. Defaults to true.",
    )
    allow_privilege_escalation: bool = Field(
        False,
        description="Let processes gain more privileges than their parent (setuid binaries, sudo). "
        "Defaults to false.",
    )
    capabilities: Annotated[list[Capability], ListSet()] = Field(
        default_factory=list,
        max_length=32,
        description="Linux capabilities added back after all are dropped, e.g. NET_BIND_SERVICE to "
        "listen below port 1024. Each one widens what a compromised server can do to the node; the "
        "restricted Pod Security Standard allows only NET_BIND_SERVICE. Defaults to none.",
    )
    seccomp_profile: Literal["RuntimeDefault", "Unconfined"] = Field(
        "RuntimeDefault",
        description="Seccomp profile of the pod. Unconfined lets the server make every system call the "
        "kernel has (and breaks the restricted Pod Security Standard). Defaults to RuntimeDefault.",
    )
    automount_service_account_token: bool = Field(
        False,
        description="Mount the pod's service-account token. true lets the server (and anyone who takes "
        "it over) call the Kubernetes API with that account's rights. Defaults to false.",
    )
    enable_service_links: bool = Field(
        False,
        description="Put every Service of the namespace into the environment as *_SERVICE_HOST/_PORT "
        "variables (docker links). Costs start-up time and leaks the namespace's Service names and "
        "addresses into the server. Defaults to false.",
    )


class ToolServerSpec(ApiModel):
    """Desired state of a ToolServer."""

    protocol: Literal["mcp"] = Field("mcp", description="Protocol the server speaks. Defaults to mcp.")
    transport_type: Literal["http", "sse"] = Field(
        "http",
        description="MCP transport: http (Streamable HTTP) or sse (the older HTTP+SSE transport). "
        "Defaults to http.",
    )
    image: str = Field(
        min_length=1, max_length=1024, pattern=r"^\S+$", description="Container image of the MCP server."
    )
    command: list[Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=list, max_length=64, description="Entrypoint; the image's ENTRYPOINT when omitted."
    )
    args: list[Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=list, max_length=256, description="Arguments; the image's CMD when omitted."
    )
    port: int = Field(ge=1, le=65535, description="Port the MCP server listens on in the container.")
    path: str | None = Field(
        None,
        max_length=1024,
        pattern=r"^/[^\s?#]*$",
        description="HTTP path of the MCP endpoint, starting with '/'. Defaults to /mcp, or /sse for "
        "transportType sse.",
    )
    replicas: int = Field(1, ge=0, le=1000, description="Number of pods. Defaults to 1.")
    env: EnvList = Field(default_factory=list, description="Environment variables of the server container.")
    env_from: EnvFromList = Field(
        default_factory=list, description="ConfigMaps and Secrets whose keys become environment variables."
    )
    resources: ResourceRequirements | None = Field(
        None, description="CPU and memory of the server container."
    )
    tool_gateway_ref: ToolGatewayRef | None = Field(
        None,
        description="ToolGateway that routes to this server at /<namespace>/<name>/mcp. Not exposed through "
        "a gateway when omitted. The gateway decides whether servers of this namespace may attach "
        "(its spec.allowedToolServers).",
    )
    security: ToolServerSecurity = Field(
        default_factory=lambda: ToolServerSecurity.model_validate({}),
        description="Pod and container security settings; every default is the restrictive one.",
    )

    @property
    def effective_path(self) -> str:
        """``path``, or its default for the transport."""
        return self.path or ("/sse" if self.transport_type == "sse" else "/mcp")


class ToolServerStatus(ObjectStatus):
    """Observed state of a ToolServer."""

    url: str | None = Field(None, max_length=2048, description="In-cluster URL of the server's MCP endpoint.")
    gateway_url: str | None = Field(
        None, max_length=2048, description="URL of this server through its ToolGateway."
    )


TOOL_GATEWAY_CLASS_KIND: Kind[ToolGatewayClassSpec, ToolGatewayClassStatus] = Kind(
    group=GROUP,
    version="v1alpha1",
    kind="ToolGatewayClass",
    plural="toolgatewayclasses",
    namespaced=False,
    spec_model=ToolGatewayClassSpec,
    status_model=ToolGatewayClassStatus,
    description="A ToolGatewayClass names the controller that implements ToolGateways of that class. "
    f'The class annotated {DEFAULT_CLASS_ANNOTATION}: "true" serves ToolGateways that name none.',
    short_names=("tgc",),
    printer_columns=(
        PrinterColumn("Controller", "string", ".spec.controller", "Controller implementing the class."),
        PrinterColumn(
            "Default",
            "string",
            ".metadata.annotations." + DEFAULT_CLASS_ANNOTATION.replace(".", "\\."),
            f"The {DEFAULT_CLASS_ANNOTATION} annotation: true on the class ToolGateways without "
            "toolGatewayClassName use (of several, the oldest; see its Default condition).",
        ),
        PrinterColumn(
            "Accepted",
            "string",
            '.status.conditions[?(@.type=="Accepted")].status',
            "Whether the controller accepted the class.",
        ),
        AGE_COLUMN,
    ),
)
parse_tool_gateway_class = TOOL_GATEWAY_CLASS_KIND.parse

TOOL_GATEWAY_KIND: Kind[ToolGatewaySpec, ToolGatewayStatus] = Kind(
    group=GROUP,
    version="v1alpha1",
    kind="ToolGateway",
    plural="toolgateways",
    namespaced=True,
    spec_model=ToolGatewaySpec,
    status_model=ToolGatewayStatus,
    description="A ToolGateway creates an agentgateway-based Gateway (same name and namespace, HTTP on "
    "port 80) that routes to ToolServers: /mcp aggregates all of them, /<namespace>/mcp those of a "
    "namespace, /<namespace>/<name>/mcp a single one.",
    short_names=("tgw",),
    printer_columns=(
        PrinterColumn("Class", "string", ".spec.toolGatewayClassName", "ToolGatewayClass of the gateway."),
        READY_COLUMN,
        URL_COLUMN,
        AGE_COLUMN,
    ),
    rules=(SERVICE_NAME_RULE,),
)
parse_tool_gateway = TOOL_GATEWAY_KIND.parse

TOOL_SERVER_KIND: Kind[ToolServerSpec, ToolServerStatus] = Kind(
    group=GROUP,
    version="v1alpha1",
    kind="ToolServer",
    plural="toolservers",
    namespaced=True,
    spec_model=ToolServerSpec,
    status_model=ToolServerStatus,
    description="A ToolServer runs an MCP server as a Deployment plus a Service and, with a "
    "toolGatewayRef, routes to it through that ToolGateway.",
    short_names=("ts",),
    printer_columns=(
        PrinterColumn("Image", "string", ".spec.image", "Container image."),
        PrinterColumn("Port", "integer", ".spec.port", "Container port."),
        READY_COLUMN,
        URL_COLUMN,
        PrinterColumn("Gateway URL", "string", ".status.gatewayUrl", "URL through the gateway.", priority=1),
        AGE_COLUMN,
    ),
    rules=(SERVICE_NAME_RULE,),
)
parse_tool_server = TOOL_SERVER_KIND.parse
