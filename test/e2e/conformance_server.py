"""The MCP server the conformance suite's server scenarios are run against: every fixture they name.

`@modelcontextprotocol/conformance` checks a server through tools, resources and prompts of agreed
names (`test_simple_text`, `test://static-text`, `test_prompt_with_arguments`, ...). This module
implements them on the Python SDK's lowlevel `Server`, served over Streamable HTTP on loopback. Run
against it directly, the suite sets the baseline (`conformance-expected-failures.yaml`); with the
proxy in front of it, any scenario that fails beyond that baseline is something the proxy lost.

One process serves both protocol eras on one URL: the SDK's session manager routes a request whose
`MCP-Protocol-Version` header names 2026-07-28 to its stateless path and everything else to the
session-based (2024-11-05 .. 2025-11-25) path. Some fixtures belong to one era only: a request to
the client in the middle of a call (sampling, elicitation) needs a session, an `InputRequiredResult`
needs 2026-07-28; the suite calls each only in its era.

    python -m test.e2e.conformance_server --port 8931        # http://127.0.0.1:8931/mcp

The lowlevel `Server` is used rather than `MCPServer` because the fixtures need exact wire shapes
and handlers (`logging/setLevel`, `resources/subscribe`) that the high-level API does not expose.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import struct
import uuid
import warnings
import wave
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import anyio
import mcp_types as types
import uvicorn
from mcp.server import CacheHint, Server, ServerRequestContext
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, MISSING_REQUIRED_CLIENT_CAPABILITY, JSONRPCMessage
from starlette.applications import Starlette

__all__ = ["MCP_PATH", "build_app", "build_server", "main"]

MCP_PATH: Final = "/mcp"
SERVER_NAME: Final = "agentkube-conformance-fixture"

# Round-trip markers a fixture puts in `requestState`; the SDK's boundary seals them on the way out and
# verifies them on the way back, so a handler only ever sees what it minted.
_STATE_OK: Final = "request-state-ok"
_STATE_ROUND_1: Final = "multi-round-1"
_STATE_ROUND_2: Final = "multi-round-2"
_STATE_ALL_INPUTS: Final = "all-inputs"
_STATE_TAMPER_CHECK: Final = "tamper-check"

_LOG_LEVELS: Final = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")

Ctx = ServerRequestContext[Any, Any]
Result = dict[str, Any]


def _png_1x1() -> bytes:
    """A valid 1x1 red PNG, built here so no binary blob lives in the repository."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte, then one red pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _wav_silence() -> bytes:
    """A valid 10 ms mono 8 kHz WAV of silence."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 80)
    return buffer.getvalue()


PNG_B64: Final = base64.b64encode(_png_1x1()).decode()
WAV_B64: Final = base64.b64encode(_wav_silence()).decode()


def _text(text: str) -> Result:
    return {"content": [{"type": "text", "text": text}]}


def _input_required(requests: dict[str, Any], state: str | None = None) -> Result:
    result: Result = {"resultType": "input_required", "inputRequests": requests}
    if state is not None:
        result["requestState"] = state
    return result


def _elicit(message: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": message,
            "requestedSchema": {"type": "object", "properties": properties, "required": required},
        },
    }


def _sample(text: str, max_tokens: int) -> dict[str, Any]:
    return {
        "method": "sampling/createMessage",
        "params": {
            "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
            "maxTokens": max_tokens,
        },
    }


_LIST_ROOTS: Final = {"method": "roots/list", "params": {}}


def _accepted(params: types.CallToolRequestParams | types.GetPromptRequestParams, key: str) -> Any:
    """The `content` of an accepted elicitation answer under `key`, or None when it is not there."""
    response = (params.input_responses or {}).get(key)
    if isinstance(response, types.ElicitResult) and response.action == "accept":
        return response.content or {}
    return None


def _sampled_text(params: types.CallToolRequestParams, key: str) -> str | None:
    response = (params.input_responses or {}).get(key)
    if isinstance(response, types.CreateMessageResult) and isinstance(response.content, types.TextContent):
        return response.content.text
    return None


def _roots(params: types.CallToolRequestParams, key: str) -> list[str] | None:
    response = (params.input_responses or {}).get(key)
    if isinstance(response, types.ListRootsResult):
        return [str(root.uri) for root in response.roots]
    return None


# --- tools -------------------------------------------------------------------------------------------

ToolFn = Callable[[Ctx, types.CallToolRequestParams], Awaitable[Result]]


@dataclass(frozen=True)
class FixtureTool:
    """One tool: what `tools/list` shows and what `tools/call` runs."""

    name: str
    description: str
    run: ToolFn
    input_schema: dict[str, Any] | None = None

    def listing(self) -> Result:
        schema = self.input_schema or {"type": "object", "properties": {}}
        return {"name": self.name, "description": self.description, "inputSchema": schema}


class Fixtures:
    """The server's state: tools (one of which can change at run time), resources, prompts, log levels."""

    def __init__(self) -> None:
        self.bus = InMemorySubscriptionBus()
        self.tools: dict[str, FixtureTool] = {tool.name: tool for tool in self._tools()}
        self.extra_prompt = False
        # logging/setLevel is per session (legacy era only); keyed by the session id header.
        self.log_levels: dict[str, str] = {}
        self.subscriptions: set[str] = set()

    # -- helpers the tools share

    def _session_key(self, ctx: Ctx) -> str:
        headers = getattr(ctx.request, "headers", None)
        return str(headers.get("mcp-session-id", "")) if headers is not None else ""

    async def log(self, ctx: Ctx, level: types.LoggingLevel, message: str) -> None:
        threshold = self.log_levels.get(self._session_key(ctx), "debug")
        if _LOG_LEVELS.index(level) < _LOG_LEVELS.index(threshold):
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the logging feature is deprecated at 2026-07-28; still served
            await ctx.session.send_log_message(
                level=level, data=message, logger="conformance", related_request_id=ctx.request_id
            )

    # -- the fixture tools

    def _tools(self) -> list[FixtureTool]:
        return [
            FixtureTool("test_simple_text", "Returns one text block.", self._simple_text),
            FixtureTool("test_image_content", "Returns one PNG image block.", self._image),
            FixtureTool("test_audio_content", "Returns one WAV audio block.", self._audio),
            FixtureTool("test_embedded_resource", "Returns one embedded text resource.", self._embedded),
            FixtureTool(
                "test_multiple_content_types",
                "Returns text, image and resource blocks.",
                self._mixed,
            ),
            FixtureTool(
                "test_tool_with_logging",
                "Logs three messages while it runs (legacy era).",
                self._logging,
            ),
            FixtureTool("test_tool_with_progress", "Reports progress 0, 50, 100 of 100.", self._progress),
            FixtureTool("test_error_handling", "Always fails with isError.", self._error),
            FixtureTool(
                "test_sampling",
                "Asks the client's LLM (legacy era: sampling/createMessage mid-call).",
                self._sampling,
                {"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]},
            ),
            FixtureTool(
                "test_elicitation",
                "Asks the user (legacy era: elicitation/create mid-call).",
                self._elicitation,
                {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
            ),
            FixtureTool(
                "test_elicitation_sep1034_defaults",
                "Elicits a form whose fields carry defaults (SEP-1034).",
                self._elicitation_defaults,
            ),
            FixtureTool(
                "test_elicitation_sep1330_enums",
                "Elicits a form with every enum variant (SEP-1330).",
                self._elicitation_enums,
            ),
            FixtureTool(
                "json_schema_2020_12_tool",
                "Tool with JSON Schema 2020-12 features",
                self._simple_text,
                {
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object",
                    "$defs": {
                        "address": {
                            "$anchor": "address",
                            "type": "object",
                            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
                        }
                    },
                    "properties": {
                        "name": {"type": "string"},
                        "address": {"$ref": "#/$defs/address"},
                        "kind": {"type": "string"},
                    },
                    "additionalProperties": False,
                    # SEP-2106's wider vocabulary: composition and conditionals must survive a listing.
                    "allOf": [{"anyOf": [{"required": ["name"]}, {"required": ["address"]}]}],
                    "if": {"properties": {"kind": {"const": "business"}}, "required": ["kind"]},
                    "then": {"required": ["address"]},
                    "else": {"required": ["name"]},
                },
            ),
            FixtureTool(
                "test_reconnection",
                "Closes its SSE stream mid-call, then answers (SEP-1699).",
                self._reconnect,
            ),
            # 2026-07-28: multi round-trip requests (SEP-2322).
            FixtureTool(
                "test_input_required_result_elicitation",
                "Asks for a name, then greets.",
                self._ir_elicitation,
            ),
            FixtureTool(
                "test_input_required_result_sampling", "Asks the client's LLM a question.", self._ir_sampling
            ),
            FixtureTool(
                "test_input_required_result_list_roots", "Asks for the client's roots.", self._ir_roots
            ),
            FixtureTool(
                "test_input_required_result_request_state",
                "Round-trips requestState.",
                self._ir_request_state,
            ),
            FixtureTool(
                "test_input_required_result_multiple_inputs",
                "Asks for elicitation, sampling and roots at once.",
                self._ir_multiple,
            ),
            FixtureTool(
                "test_input_required_result_multi_round", "Asks twice, in two rounds.", self._ir_multi_round
            ),
            FixtureTool(
                "test_input_required_result_tampered_state",
                "Issues integrity-protected requestState.",
                self._ir_tamper,
            ),
            FixtureTool(
                "test_input_required_result_capabilities",
                "Asks only for what the client declared it can answer.",
                self._ir_capabilities,
            ),
            # 2026-07-28: stateless-server probes (SEP-2575).
            FixtureTool(
                "test_missing_capability", "Needs the client's sampling capability.", self._missing_capability
            ),
            FixtureTool(
                "test_streaming_elicitation",
                "Elicits through InputRequiredResult only.",
                self._streaming_elicitation,
            ),
            FixtureTool(
                "test_logging_tool", "Logs while it runs; only opted-in logs go out.", self._logging_tool
            ),
            FixtureTool("test_trigger_tool_change", "Adds or removes a tool.", self._trigger_tool_change),
            FixtureTool(
                "test_trigger_prompt_change", "Adds or removes a prompt.", self._trigger_prompt_change
            ),
            # 2026-07-28: a parameter mirrored into an `Mcp-Param-Region` header (SEP-2243), which the SDK
            # checks against the body through `get_tool_input_schema`.
            FixtureTool(
                "test_custom_headers",
                "Echoes a parameter that the client also sends as the Mcp-Param-Region header.",
                self._custom_headers,
                {
                    "type": "object",
                    "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
                    "required": ["region"],
                },
            ),
        ]

    async def _simple_text(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        return _text("This is a simple text response for testing.")

    async def _image(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        return {"content": [{"type": "image", "data": PNG_B64, "mimeType": "image/png"}]}

    async def _audio(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        return {"content": [{"type": "audio", "data": WAV_B64, "mimeType": "audio/wav"}]}

    async def _embedded(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        resource = {
            "uri": "test://embedded-resource",
            "mimeType": "text/plain",
            "text": "This is an embedded resource content.",
        }
        return {"content": [{"type": "resource", "resource": resource}]}

    async def _mixed(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        resource = {
            "uri": "test://mixed-content-resource",
            "mimeType": "application/json",
            "text": json.dumps({"test": "data", "value": 123}),
        }
        return {
            "content": [
                {"type": "text", "text": "Multiple content types test:"},
                {"type": "image", "data": PNG_B64, "mimeType": "image/png"},
                {"type": "resource", "resource": resource},
            ]
        }

    async def _logging(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        # The suite asks for gaps between the messages, to prove a client sees them one by one.
        await self.log(ctx, "info", "Tool execution started")
        await anyio.sleep(0.05)
        await self.log(ctx, "info", "Tool processing data")
        await anyio.sleep(0.05)
        await self.log(ctx, "info", "Tool execution completed")
        return _text("Tool with logging executed successfully")

    async def _progress(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        for step in (0, 50, 100):
            await ctx.session.report_progress(step, 100, f"step {step}")
            if step < 100:
                await anyio.sleep(0.05)
        return _text("Tool with progress executed successfully")

    async def _error(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        return {
            "isError": True,
            "content": [{"type": "text", "text": "This tool intentionally returns an error for testing"}],
        }

    async def _sampling(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        prompt = str((params.arguments or {}).get("prompt", ""))
        reply = await ctx.session.create_message(
            [types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))],
            max_tokens=100,
            related_request_id=ctx.request_id,
        )
        content = reply.content
        text = content.text if isinstance(content, types.TextContent) else str(content)
        return _text(f"LLM response: {text}")

    async def _ask(self, ctx: Ctx, message: str, schema: dict[str, Any]) -> types.ElicitResult:
        return await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)

    async def _elicitation(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        message = str((params.arguments or {}).get("message", ""))
        schema = {
            "type": "object",
            "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            },
            "required": ["username", "email"],
        }
        answer = await self._ask(ctx, message, schema)
        return _text(f"User response: action={answer.action}, content={json.dumps(answer.content or {})}")

    async def _elicitation_defaults(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        schema = {
            "type": "object",
            "properties": {
                "name": {"type": "string", "default": "John Doe"},
                "age": {"type": "integer", "default": 30},
                "score": {"type": "number", "default": 95.5},
                "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
                "verified": {"type": "boolean", "default": True},
            },
        }
        answer = await self._ask(ctx, "Please review your details", schema)
        return _text(
            f"Elicitation completed: action={answer.action}, content={json.dumps(answer.content or {})}"
        )

    async def _elicitation_enums(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        options = ["option1", "option2", "option3"]
        schema = {
            "type": "object",
            "properties": {
                "untitledSingle": {"type": "string", "enum": options},
                "titledSingle": {
                    "type": "string",
                    "oneOf": [
                        {"const": "value1", "title": "First Option"},
                        {"const": "value2", "title": "Second Option"},
                        {"const": "value3", "title": "Third Option"},
                    ],
                },
                "legacyEnum": {
                    "type": "string",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"],
                },
                "untitledMulti": {"type": "array", "items": {"type": "string", "enum": options}},
                "titledMulti": {
                    "type": "array",
                    "items": {
                        "anyOf": [
                            {"const": "value1", "title": "First Choice"},
                            {"const": "value2", "title": "Second Choice"},
                            {"const": "value3", "title": "Third Choice"},
                        ]
                    },
                },
            },
        }
        answer = await self._ask(ctx, "Pick your options", schema)
        return _text(
            f"Elicitation completed: action={answer.action}, content={json.dumps(answer.content or {})}"
        )

    async def _reconnect(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        # Closing the POST's SSE stream makes the client reconnect with Last-Event-ID; the result is
        # then replayed from the event store. The pause gives the close time to reach the client first.
        if ctx.close_sse_stream is not None:
            await ctx.close_sse_stream()
        await anyio.sleep(0.2)
        return _text("Reconnection test completed")

    async def _ir_elicitation(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        answer = _accepted(params, "user_name")
        if answer is None:
            return _input_required(
                {"user_name": _elicit("What is your name?", {"name": {"type": "string"}}, ["name"])}
            )
        return _text(f"Hello, {answer.get('name', 'stranger')}!")

    async def _ir_sampling(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        text = _sampled_text(params, "capital_question")
        if text is None:
            return _input_required({"capital_question": _sample("What is the capital of France?", 100)})
        return _text(f"The model answered: {text}")

    async def _ir_roots(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        roots = _roots(params, "client_roots")
        if roots is None:
            return _input_required({"client_roots": _LIST_ROOTS})
        return _text(f"Client roots: {', '.join(roots) or 'none'}")

    async def _ir_request_state(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        if params.request_state == _STATE_OK and _accepted(params, "confirm") is not None:
            return _text("Confirmed; state-ok")
        confirm = _elicit("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])
        return _input_required({"confirm": confirm}, _STATE_OK)

    async def _ir_multiple(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        name = _accepted(params, "user_name")
        greeting = _sampled_text(params, "greeting")
        roots = _roots(params, "client_roots")
        if params.request_state == _STATE_ALL_INPUTS and None not in (name, greeting, roots):
            return _text(f"Got all inputs: name={name}, greeting={greeting}, roots={roots}")
        return _input_required(
            {
                "user_name": _elicit("What is your name?", {"name": {"type": "string"}}, ["name"]),
                "greeting": _sample("Generate a greeting", 50),
                "client_roots": _LIST_ROOTS,
            },
            _STATE_ALL_INPUTS,
        )

    async def _ir_multi_round(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        if params.request_state == _STATE_ROUND_2 and (color := _accepted(params, "step2")) is not None:
            return _text(f"Done after two rounds: color={color.get('color')}")
        if params.request_state == _STATE_ROUND_1 and _accepted(params, "step1") is not None:
            step2 = _elicit("Step 2: What is your favorite color?", {"color": {"type": "string"}}, ["color"])
            return _input_required({"step2": step2}, _STATE_ROUND_2)
        step1 = _elicit("Step 1: What is your name?", {"name": {"type": "string"}}, ["name"])
        return _input_required({"step1": step1}, _STATE_ROUND_1)

    async def _ir_tamper(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        # A tampered token never reaches here: the SDK's RequestStateBoundary rejects it with -32602.
        if params.request_state == _STATE_TAMPER_CHECK and _accepted(params, "confirm") is not None:
            return _text("State verified")
        confirm = _elicit("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])
        return _input_required({"confirm": confirm}, _STATE_TAMPER_CHECK)

    async def _ir_capabilities(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        declared = ctx.session.client_capabilities or types.ClientCapabilities()
        if params.input_responses:
            return _text(f"Received {len(params.input_responses)} input(s)")
        wanted: dict[str, Any] = {}
        if declared.elicitation is not None:
            wanted["user_name"] = _elicit("What is your name?", {"name": {"type": "string"}}, ["name"])
        if declared.sampling is not None:
            wanted["greeting"] = _sample("Generate a greeting", 50)
        if declared.roots is not None:
            wanted["client_roots"] = _LIST_ROOTS
        if not wanted:
            return _text("The client declared no capability this tool could use")
        return _input_required(wanted)

    async def _missing_capability(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        declared = ctx.session.client_capabilities or types.ClientCapabilities()
        if declared.sampling is None:
            raise MCPError(
                MISSING_REQUIRED_CLIENT_CAPABILITY,
                "This tool needs the client's sampling capability",
                {"requiredCapabilities": {"sampling": {}}},
            )
        return await self._ir_sampling(ctx, params)

    async def _streaming_elicitation(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        return await self._ir_elicitation(ctx, params)

    async def _logging_tool(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        await self.log(ctx, "info", "test_logging_tool ran")
        return _text("Logged (only if the request opted in)")

    async def _trigger_tool_change(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        name = "test_dynamic_tool"
        if self.tools.pop(name, None) is None:
            self.tools[name] = FixtureTool(
                name, "Appears and disappears with test_trigger_tool_change.", self._simple_text
            )
        await self.bus.publish(ToolsListChanged())
        return _text(f"Tool list changed ({name} {'added' if name in self.tools else 'removed'})")

    async def _trigger_prompt_change(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        self.extra_prompt = not self.extra_prompt
        await self.bus.publish(PromptsListChanged())
        return _text(
            f"Prompt list changed (test_dynamic_prompt {'added' if self.extra_prompt else 'removed'})"
        )

    async def _custom_headers(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        return _text(f"region={(params.arguments or {}).get('region')}")

    # --- handlers ------------------------------------------------------------------------------------

    def input_schema(self, name: str) -> dict[str, Any] | None:
        tool = self.tools.get(name)
        return tool.listing()["inputSchema"] if tool is not None else None

    async def list_tools(self, ctx: Ctx, params: types.PaginatedRequestParams | None) -> Result:
        return {"tools": [tool.listing() for tool in self.tools.values()]}

    async def call_tool(self, ctx: Ctx, params: types.CallToolRequestParams) -> Result:
        tool = self.tools.get(params.name)
        if tool is None:
            raise MCPError(INVALID_PARAMS, f"Unknown tool: {params.name}", {"name": params.name})
        return await tool.run(ctx, params)

    async def list_resources(self, ctx: Ctx, params: types.PaginatedRequestParams | None) -> Result:
        return {
            "resources": [
                {
                    "uri": "test://static-text",
                    "name": "static-text",
                    "description": "A static text resource",
                    "mimeType": "text/plain",
                },
                {
                    "uri": "test://static-binary",
                    "name": "static-binary",
                    "description": "A static binary resource (a PNG)",
                    "mimeType": "image/png",
                },
                {
                    "uri": "test://watched-resource",
                    "name": "watched-resource",
                    "description": "A resource clients may subscribe to",
                    "mimeType": "text/plain",
                },
            ]
        }

    async def list_resource_templates(self, ctx: Ctx, params: types.PaginatedRequestParams | None) -> Result:
        template = {
            "uriTemplate": "test://template/{id}/data",
            "name": "template-data",
            "description": "Data for an id",
            "mimeType": "application/json",
        }
        return {"resourceTemplates": [template]}

    async def read_resource(self, ctx: Ctx, params: types.ReadResourceRequestParams) -> Result:
        uri = str(params.uri)
        if uri == "test://static-text":
            text = "This is the content of the static text resource."
            return {"contents": [{"uri": uri, "mimeType": "text/plain", "text": text}]}
        if uri == "test://static-binary":
            return {"contents": [{"uri": uri, "mimeType": "image/png", "blob": PNG_B64}]}
        if uri == "test://watched-resource":
            return {"contents": [{"uri": uri, "mimeType": "text/plain", "text": "Watched resource content."}]}
        prefix, suffix = "test://template/", "/data"
        if uri.startswith(prefix) and uri.endswith(suffix) and len(uri) > len(prefix) + len(suffix):
            item = uri[len(prefix) : -len(suffix)]
            body = json.dumps({"id": item, "templateTest": True, "data": f"Data for ID: {item}"})
            return {"contents": [{"uri": uri, "mimeType": "application/json", "text": body}]}
        raise MCPError(INVALID_PARAMS, "Resource not found", {"uri": uri})

    async def subscribe(self, ctx: Ctx, params: types.SubscribeRequestParams) -> Result:
        self.subscriptions.add(str(params.uri))
        return {}

    async def unsubscribe(self, ctx: Ctx, params: types.UnsubscribeRequestParams) -> Result:
        self.subscriptions.discard(str(params.uri))
        return {}

    async def set_logging_level(self, ctx: Ctx, params: types.SetLevelRequestParams) -> Result:
        self.log_levels[self._session_key(ctx)] = params.level
        return {}

    async def list_prompts(self, ctx: Ctx, params: types.PaginatedRequestParams | None) -> Result:
        def argument(name: str, description: str) -> Result:
            return {"name": name, "description": description, "required": True}

        prompts: list[Result] = [
            {"name": "test_simple_prompt", "description": "A prompt without arguments"},
            {
                "name": "test_prompt_with_arguments",
                "description": "A prompt with two arguments",
                "arguments": [
                    argument("arg1", "First test argument"),
                    argument("arg2", "Second test argument"),
                ],
            },
            {
                "name": "test_prompt_with_embedded_resource",
                "description": "A prompt that embeds a resource",
                "arguments": [argument("resourceUri", "URI of the resource to embed")],
            },
            {"name": "test_prompt_with_image", "description": "A prompt with an image"},
            {
                "name": "test_input_required_result_prompt",
                "description": "A prompt that asks for context first",
            },
        ]
        if self.extra_prompt:
            prompts.append(
                {"name": "test_dynamic_prompt", "description": "Toggled by test_trigger_prompt_change"}
            )
        return {"prompts": prompts}

    async def get_prompt(self, ctx: Ctx, params: types.GetPromptRequestParams) -> Result:
        args = params.arguments or {}

        def user(content: Result) -> Result:
            return {"role": "user", "content": content}

        if params.name in ("test_simple_prompt", "test_dynamic_prompt"):
            return {"messages": [user({"type": "text", "text": "This is a simple prompt for testing."})]}
        if params.name == "test_prompt_with_arguments":
            text = f"Prompt with arguments: arg1='{args.get('arg1', '')}', arg2='{args.get('arg2', '')}'"
            return {"messages": [user({"type": "text", "text": text})]}
        if params.name == "test_prompt_with_embedded_resource":
            resource = {
                "uri": args.get("resourceUri", "test://example-resource"),
                "mimeType": "text/plain",
                "text": "Embedded resource content for testing.",
            }
            return {
                "messages": [
                    user({"type": "resource", "resource": resource}),
                    user({"type": "text", "text": "Please process the embedded resource above."}),
                ]
            }
        if params.name == "test_prompt_with_image":
            return {
                "messages": [
                    user({"type": "image", "data": PNG_B64, "mimeType": "image/png"}),
                    user({"type": "text", "text": "Please analyze the image above."}),
                ]
            }
        if params.name == "test_input_required_result_prompt":
            answer = _accepted(params, "user_context")
            if answer is None:
                question = _elicit(
                    "What context should the prompt use?", {"context": {"type": "string"}}, ["context"]
                )
                return _input_required({"user_context": question})
            text = f"Use this context: {answer.get('context', '')}"
            return {"messages": [user({"type": "text", "text": text})]}
        raise MCPError(INVALID_PARAMS, f"Unknown prompt: {params.name}", {"name": params.name})

    async def complete(self, ctx: Ctx, params: types.CompleteRequestParams) -> Result:
        candidates = ["paris", "park", "party", "test-value", "testing"]
        prefix = params.argument.value
        values = [value for value in candidates if value.startswith(prefix)]
        return {"completion": {"values": values, "total": len(values), "hasMore": False}}


Handler = Callable[[Ctx, Any], Awaitable[Result]]


def _complete(handler: Handler) -> Any:
    """Mark a plain result `resultType: "complete"`, which 2026-07-28 requires on every result.

    Typed `Any` because the lowlevel `Server`'s parameters name model results, while its runner
    takes wire dicts just as well (they are what the fixtures are written as).

    The SDK's per-version sieve drops the field again on the legacy wire, so one handler serves both;
    an empty result (`{}`) is left alone, as the legacy wire passes it through unsieved and the SDK
    itself marks it on the modern one.
    """

    async def handle(ctx: Ctx, params: Any) -> Result:
        result = await handler(ctx, params)
        if result:
            result.setdefault("resultType", "complete")
        return result

    return handle


class MemoryEventStore(EventStore):
    """Keeps every SSE event so a client that reconnects with Last-Event-ID gets the rest (SEP-1699).

    Unbounded, which is fine for a fixture that lives for one test session.
    """

    def __init__(self) -> None:
        self._events: list[tuple[EventId, StreamId, JSONRPCMessage | None]] = []

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = uuid.uuid4().hex
        self._events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        index = next(
            (i for i, (event_id, _, _) in enumerate(self._events) if event_id == last_event_id), None
        )
        if index is None:
            return None
        stream_id = self._events[index][1]
        for event_id, stream, message in self._events[index + 1 :]:
            if stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


def build_server() -> Server[Any]:
    """The fixture server: every handler wired, request state sealed, cache hints on cacheable results."""
    fixtures = Fixtures()
    hint = CacheHint(ttl_ms=0, scope="private")
    with warnings.catch_warnings():
        # logging/setLevel is deprecated at 2026-07-28 but part of the 2025 suites this server must pass.
        warnings.simplefilter("ignore")
        server: Server[Any] = Server(
            SERVER_NAME,
            version="1.0.0",
            cache_hints={
                method: hint
                for method in (
                    "tools/list",
                    "prompts/list",
                    "resources/list",
                    "resources/templates/list",
                    "resources/read",
                )
            },
            get_tool_input_schema=fixtures.input_schema,
            on_list_tools=_complete(fixtures.list_tools),
            on_call_tool=_complete(fixtures.call_tool),
            on_list_resources=_complete(fixtures.list_resources),
            on_list_resource_templates=_complete(fixtures.list_resource_templates),
            on_read_resource=_complete(fixtures.read_resource),
            on_subscribe_resource=_complete(fixtures.subscribe),
            on_unsubscribe_resource=_complete(fixtures.unsubscribe),
            on_subscriptions_listen=ListenHandler(fixtures.bus),
            on_list_prompts=_complete(fixtures.list_prompts),
            on_get_prompt=_complete(fixtures.get_prompt),
            on_completion=_complete(fixtures.complete),
            on_set_logging_level=_complete(fixtures.set_logging_level),
        )
    server.middleware.append(
        RequestStateBoundary(RequestStateSecurity.ephemeral(), default_audience=SERVER_NAME)
    )
    return server


def build_app() -> Starlette:
    """The ASGI app: one Streamable HTTP endpoint at /mcp, DNS-rebinding protection on (loopback only)."""
    return build_server().streamable_http_app(
        streamable_http_path=MCP_PATH,
        event_store=MemoryEventStore(),
        retry_interval=100,
        host="127.0.0.1",
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    # h11, not httptools (installed for the data plane, and uvicorn's pick when present): with
    # httptools a header value keeps the whitespace around it, which the SDK compares verbatim.
    uvicorn.run(build_app(), host="127.0.0.1", port=args.port, http="h11", log_level=args.log_level)


if __name__ == "__main__":
    main()
