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

__all__ = ["FIELD_MANAGER", "OperatorOptions", "field_manager", "setup_all"]

FIELD_MANAGER = "agentkube"
"""The prefix of every controller's field manager (``field_manager``), and the manager of writes that
belong to no controller."""


def field_manager(controller: str) -> str:
    """The server-side apply field manager a controller writes its children and status with,
    ``agentkube-<controller>``: one per controller, so two controllers that ever apply the same field
    conflict (and say so) instead of silently taking it from each other."""
    return f"{FIELD_MANAGER}-{controller}"


@dataclass(frozen=True)
class OperatorOptions:
    """Settings of the operator's controllers (flags of ``agentkube manager``)."""

    dataplane_image: str
    """Image the MCP proxy and LLM gateway Deployments run (``--dataplane-image``)."""
    tool_gateway_controller: str = "runtime.agentic-layer.ai/tool-gateway-agentgateway-controller"
    """ToolGatewayClass ``spec.controller`` value this operator answers to."""
    gateway_class_name: str = "agentgateway"
    """Gateway API GatewayClass the Gateways of ToolGateways use."""
    network_policies: bool = True
    """Give each MCP, LLMGateway and ToolServer a NetworkPolicy admitting only who may call it
    (``--network-policies``). Off for clusters whose CNI does not enforce them: existing policies are
    then deleted."""
    digest_key: bytes | None = None
    """The key of the Secret value digests that roll pods (``secrets.load_digest_key``: the Secret
    ``agentkube-digest-key`` of the operator's namespace, as ``agentkube manager`` reads it before the
    informers start). None: a random key for this process only, so every workload's pods roll at
    each start; fine for a test, not for an operator that restarts."""


def setup_all(manager: Manager, options: OperatorOptions) -> None:
    """Register every controller with the manager."""
    from agentkube.controllers import llmgateway, mcp, toolgateway, toolgatewayclass, toolserver

    for module in (mcp, llmgateway, toolgatewayclass, toolgateway, toolserver):
        module.setup(manager, options)
