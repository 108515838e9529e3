"""The agentkube API: typed models of our kinds, the contract between the API server and controllers.

Pure data, no I/O. Each kind is a ``Kind`` (API coordinates, spec and status models, printer columns);
``Kind.parse(obj)`` turns an object dict from the API server into its typed spec or raises
``InvalidSpec`` naming the offending fields. ``agentkube.api.crd`` generates the CRDs from the same
models, so what the API server accepts and what ``parse`` accepts are one definition.
"""

from __future__ import annotations

from agentkube.api.kind import FieldError, InvalidSpec, Kind, PrinterColumn
from agentkube.api.kinds import KINDS, kind_of
from agentkube.api.llmgateway import LLM_GATEWAY_KIND, LLMGatewaySpec, LLMGatewayStatus, parse_llm_gateway
from agentkube.api.mcp import MCP_KIND, MCPSpec, MCPStatus, parse_mcp
from agentkube.api.toolgateway import (
    TOOL_GATEWAY_CLASS_KIND,
    TOOL_GATEWAY_KIND,
    TOOL_SERVER_KIND,
    ToolGatewayClassSpec,
    ToolGatewayClassStatus,
    ToolGatewaySpec,
    ToolGatewayStatus,
    ToolServerSpec,
    ToolServerStatus,
    parse_tool_gateway,
    parse_tool_gateway_class,
    parse_tool_server,
)

__all__ = [
    "KINDS",
    "LLM_GATEWAY_KIND",
    "MCP_KIND",
    "TOOL_GATEWAY_CLASS_KIND",
    "TOOL_GATEWAY_KIND",
    "TOOL_SERVER_KIND",
    "FieldError",
    "InvalidSpec",
    "Kind",
    "LLMGatewaySpec",
    "LLMGatewayStatus",
    "MCPSpec",
    "MCPStatus",
    "PrinterColumn",
    "ToolGatewayClassSpec",
    "ToolGatewayClassStatus",
    "ToolGatewaySpec",
    "ToolGatewayStatus",
    "ToolServerSpec",
    "ToolServerStatus",
    "kind_of",
    "parse_llm_gateway",
    "parse_mcp",
    "parse_tool_gateway",
    "parse_tool_gateway_class",
    "parse_tool_server",
]
