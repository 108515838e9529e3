"""Every kind agentkube serves, in the order CRDs are generated and documented."""

from __future__ import annotations

from typing import Any

from agentkube.api.kind import Kind
from agentkube.api.llmgateway import LLM_GATEWAY_KIND
from agentkube.api.mcp import MCP_KIND
from agentkube.api.toolgateway import TOOL_GATEWAY_CLASS_KIND, TOOL_GATEWAY_KIND, TOOL_SERVER_KIND

__all__ = ["KINDS", "kind_of"]

KINDS: tuple[Kind[Any, Any], ...] = (
    MCP_KIND,
    LLM_GATEWAY_KIND,
    TOOL_GATEWAY_CLASS_KIND,
    TOOL_GATEWAY_KIND,
    TOOL_SERVER_KIND,
)


def kind_of(obj: dict[str, Any]) -> Kind[Any, Any] | None:
    """The ``Kind`` of an object by its apiVersion and kind; None when it is not one of ours."""
    for kind in KINDS:
        if kind.api_version == obj.get("apiVersion") and kind.kind == obj.get("kind"):
            return kind
    return None
