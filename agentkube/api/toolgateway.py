"""ToolGatewayClass, ToolGateway and ToolServer (runtime.agentic-layer.ai/v1alpha1).

A ToolGateway is an agentgateway-based gateway for MCP tool servers; its ToolGatewayClass names the
controller that implements it. A ToolServer runs an MCP server and, with a toolGatewayRef, is routed
through that gateway.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from agentkube.api.core import EnvFromList, EnvList, ResourceRequirements
from agentkube.api.kind import AGE_COLUMN, READY_COLUMN, SERVICE_NAME_RULE, URL_COLUMN, Kind, PrinterColumn
from agentkube.api.meta import DnsLabel, ObjectName, ObjectStatus
from agentkube.api.model import ApiModel, Rule

__all__ = [
    "AGENTGATEWAY_CONTROLLER",
    "DEFAULT_CLASS_ANNOTATION",
    "TOOL_GATEWAY_CLASS_KIND",
    "TOOL_GATEWAY_KIND",
    "TOOL_SERVER_KIND",
    "ToolGatewayClassSpec",
    "ToolGatewayClassStatus",
    "ToolGatewayRef",
    "ToolGatewaySpec",
    "ToolGatewayStatus",
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
        None, description="Namespace of the ToolGateway; the ToolServer's namespace when omitted."
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
        "a gateway when omitted.",
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
