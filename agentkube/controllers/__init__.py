"""agentkube's controllers: one module per kind, each with ``setup(manager, options)``.

A controller module builds desired state with pure functions and reconciles through
``agentkube.runtime``; the pieces every controller shares (standard labels, owner references, the
apply-and-prune of children, status writing) live in the noun modules beside them. A controller
never imports another controller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentkube.runtime.manager import Manager

__all__ = ["FIELD_MANAGER", "OperatorOptions", "setup_all"]

FIELD_MANAGER = "agentkube"
"""The one server-side apply field manager every controller writes children and status with."""


@dataclass(frozen=True)
class OperatorOptions:
    """Settings of the operator's controllers (flags of ``agentkube manager``)."""

    dataplane_image: str
    """Image the MCP proxy and LLM gateway Deployments run (``--dataplane-image``)."""
    tool_gateway_controller: str = "runtime.agentic-layer.ai/tool-gateway-agentgateway-controller"
    """ToolGatewayClass ``spec.controller`` value this operator answers to."""
    gateway_class_name: str = "agentgateway"
    """Gateway API GatewayClass the Gateways of ToolGateways use."""


def setup_all(manager: Manager, options: OperatorOptions) -> None:
    """Register every controller with the manager."""
    from agentkube.controllers import llmgateway, mcp, toolgateway, toolgatewayclass, toolserver

    for module in (mcp, llmgateway, toolgatewayclass, toolgateway, toolserver):
        module.setup(manager, options)
