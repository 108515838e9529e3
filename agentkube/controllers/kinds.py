"""Kinds: the group, version and kind of every object the controllers read or write, in one place.

Ours come from their ``agentkube.api`` ``Kind`` (``gvk_of``), so a version bump there reaches every
controller; the others are the versions we build children in and read references from. A controller
module imports the ones it needs from here rather than spelling a GVK itself.
"""

from __future__ import annotations

from typing import Any

from agentkube.api.kind import Kind
from agentkube.api.llmgateway import LLM_GATEWAY_KIND
from agentkube.api.mcp import MCP_KIND
from agentkube.api.toolgateway import TOOL_GATEWAY_CLASS_KIND, TOOL_GATEWAY_KIND, TOOL_SERVER_KIND
from agentkube.runtime.gvk import GVK

__all__ = [
    "AGENTGATEWAY_BACKEND",
    "AGENTGATEWAY_PARAMETERS",
    "CONFIG_MAP",
    "CUSTOM_RESOURCE_DEFINITION",
    "DEPLOYMENT",
    "GATEWAY",
    "HTTP_ROUTE",
    "LLM_GATEWAY",
    "MCP",
    "NAMESPACE",
    "NETWORK_POLICY",
    "POD",
    "POD_DISRUPTION_BUDGET",
    "REFERENCE_GRANT",
    "SECRET",
    "SERVICE",
    "TOOL_GATEWAY",
    "TOOL_GATEWAY_CLASS",
    "TOOL_SERVER",
    "gvk_of",
]


def gvk_of(kind: Kind[Any, Any]) -> GVK:
    """The runtime ``GVK`` of one of our kinds."""
    return GVK(kind.group, kind.version, kind.kind)


# Ours.
MCP = gvk_of(MCP_KIND)
LLM_GATEWAY = gvk_of(LLM_GATEWAY_KIND)
TOOL_GATEWAY_CLASS = gvk_of(TOOL_GATEWAY_CLASS_KIND)
TOOL_GATEWAY = gvk_of(TOOL_GATEWAY_KIND)
TOOL_SERVER = gvk_of(TOOL_SERVER_KIND)

# Kubernetes.
CONFIG_MAP = GVK("", "v1", "ConfigMap")
SECRET = GVK("", "v1", "Secret")
SERVICE = GVK("", "v1", "Service")
DEPLOYMENT = GVK("apps", "v1", "Deployment")
POD = GVK("", "v1", "Pod")
POD_DISRUPTION_BUDGET = GVK("policy", "v1", "PodDisruptionBudget")
NETWORK_POLICY = GVK("networking.k8s.io", "v1", "NetworkPolicy")
NAMESPACE = GVK("", "v1", "Namespace")
CUSTOM_RESOURCE_DEFINITION = GVK("apiextensions.k8s.io", "v1", "CustomResourceDefinition")

# Gateway API and agentgateway: served only once their CRDs are installed (``gatewayapi.CrdGate``).
GATEWAY = GVK("gateway.networking.k8s.io", "v1", "Gateway")
HTTP_ROUTE = GVK("gateway.networking.k8s.io", "v1", "HTTPRoute")
REFERENCE_GRANT = GVK("gateway.networking.k8s.io", "v1beta1", "ReferenceGrant")
AGENTGATEWAY_PARAMETERS = GVK("agentgateway.dev", "v1alpha1", "AgentgatewayParameters")
AGENTGATEWAY_BACKEND = GVK("agentgateway.dev", "v1alpha1", "AgentgatewayBackend")
