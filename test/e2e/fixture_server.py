"""A project-written MCP server for the proxy's end-to-end tests, built on the ``mcp`` SDK (2.x).

It serves what the real peers do not: a paginated ``tools/list`` (``--tools N --page-size K``), a
2 MiB result, progress and logging during a call, a call that waits for the client (elicitation),
a slow call, a tool with ``outputSchema``/``structuredContent``/``annotations``/``icons``, prompts,
resources and a resource template, and a tool that changes the tool list at run time. It speaks
both eras on one endpoint (the SDK's session manager), or only the session era with
``--legacy-only``.

    python -m test.e2e.fixture_server --port 8123 [--tools 200] [--page-size 50] [--token T]
        [--token-file F] [--tool-names create_issue,list_issues]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import mcp_types as types
import uvicorn
from mcp.server.lowlevel.server import Server
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

BIG_BYTES = 2 * 1024 * 1024


def build(tools: int, page_size: int, name: str = "fixture", named: tuple[str, ...] = ()) -> Server[Any]:
    extra = {"on": False}

    def tool_list() -> list[types.Tool]:
        listed = [
            types.Tool(
                name="echo",
                description="Echo the text back.",
                input_schema={
                    "type": "object",
                    "properties": {"text": {"type": "string"}},
                    "required": ["text"],
                },
            ),
            types.Tool(
                name="add",
                title="Add two numbers",
                description="Adds a and b.",
                input_schema={
                    "type": "object",
                    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                    "required": ["a", "b"],
                },
                output_schema={
                    "type": "object",
                    "properties": {"sum": {"type": "number"}},
                    "required": ["sum"],
                },
                annotations=types.ToolAnnotations(read_only_hint=True, idempotent_hint=True),
                icons=[types.Icon(src="https://example.com/add.png", mime_type="image/png")],
            ),
            types.Tool(name="big", description="A 2 MiB text result.", input_schema={"type": "object"}),
            types.Tool(
                name="progress",
                description="Reports progress and a log line, then answers.",
                input_schema={"type": "object", "properties": {"steps": {"type": "integer"}}},
            ),
            types.Tool(
                name="slow",
                description="Reports progress 0, then sleeps for the given seconds.",
                input_schema={"type": "object", "properties": {"seconds": {"type": "number"}}},
            ),
            types.Tool(name="fail", description="Returns isError.", input_schema={"type": "object"}),
            types.Tool(
                name="ask", description="Elicits a name from the user.", input_schema={"type": "object"}
            ),
            types.Tool(name="grow", description="Adds the tool 'extra'.", input_schema={"type": "object"}),
            types.Tool(
                name="secret_admin", description="Hidden by filters.", input_schema={"type": "object"}
            ),
            types.Tool(
                name="route",
                description="Answers its region, which 2026-07-28 mirrors in an Mcp-Param-Region header.",
                input_schema={
                    "type": "object",
                    "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
                    "required": ["region"],
                },
            ),
        ]
        listed += [
            types.Tool(
                name=f"tool_{i:03d}", description=f"Generated tool {i}.", input_schema={"type": "object"}
            )
            for i in range(tools)
        ]
        listed += [
            types.Tool(name=n, description=f"Answers '{n} ran'.", input_schema={"type": "object"})
            for n in named
        ]
        if extra["on"]:
            listed.append(
                types.Tool(name="extra", description="Added at run time.", input_schema={"type": "object"})
            )
        return listed

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        everything = tool_list()
        start = int(params.cursor) if params is not None and params.cursor else 0
        page = everything[start : start + page_size]
        following = start + page_size
        return types.ListToolsResult(
            tools=page, next_cursor=str(following) if following < len(everything) else None
        )

    async def call_tool(
        ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult | types.InputRequiredResult:
        args = params.arguments or {}
        if params.name == "echo":
            return types.CallToolResult(content=[types.TextContent(text=str(args.get("text", "")))])
        if params.name == "add":
            total = float(args["a"]) + float(args["b"])
            return types.CallToolResult(
                content=[types.TextContent(text=str(total))], structured_content={"sum": total}
            )
        if params.name == "big":
            return types.CallToolResult(content=[types.TextContent(text="x" * BIG_BYTES)])
        if params.name == "progress":
            steps = int(args.get("steps", 3))
            for i in range(steps):
                await ctx.session.report_progress(i + 1, steps, f"step {i + 1}")
            await ctx.session.send_log_message("info", {"done": steps}, logger="fixture")
            return types.CallToolResult(content=[types.TextContent(text=f"did {steps} steps")])
        if params.name == "slow":
            # One progress notification first: a test knows the call has arrived when it sees it.
            await ctx.session.report_progress(0, 1, "started")
            try:
                await asyncio.sleep(float(args.get("seconds", 1)))
            except BaseException:
                # What a test reads to know a cancellation reached the server.
                print(f"slow cancelled: {args.get('tag', '')}", file=sys.stderr, flush=True)
                raise
            return types.CallToolResult(content=[types.TextContent(text="slept")])
        if params.name == "fail":
            return types.CallToolResult(content=[types.TextContent(text="it failed")], is_error=True)
        if params.name == "ask":
            schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
            if ctx.protocol_version == "2026-07-28":
                # No back-channel at 2026-07-28: ask through an InputRequiredResult round trip.
                if not params.input_responses:
                    question = types.ElicitRequest(
                        params=types.ElicitRequestFormParams(
                            message="What is your name?", requested_schema=schema
                        )
                    )
                    return types.InputRequiredResult(input_requests={"who": question}, request_state="asked")
                answer = params.input_responses["who"]
                assert isinstance(answer, types.ElicitResult)
            else:
                answer = await ctx.session.elicit_form("What is your name?", schema, ctx.request_id)
            got = (answer.content or {}).get("name") if answer.action == "accept" else answer.action
            return types.CallToolResult(content=[types.TextContent(text=f"hello {got}")])
        if params.name == "grow":
            extra["on"] = True
            await ctx.session.send_tool_list_changed()
            return types.CallToolResult(content=[types.TextContent(text="grown")])
        if params.name == "route":
            return types.CallToolResult(content=[types.TextContent(text=f"region {args.get('region')}")])
        if params.name in ("secret_admin", "extra", *named) or params.name.startswith("tool_"):
            return types.CallToolResult(content=[types.TextContent(text=f"{params.name} ran")])
        raise ValueError(f"unknown tool {params.name}")

    async def list_prompts(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        return types.ListPromptsResult(
            prompts=[
                types.Prompt(
                    name="greet",
                    description="A greeting.",
                    arguments=[types.PromptArgument(name="who", required=True)],
                )
            ]
        )

    async def get_prompt(ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        who = (params.arguments or {}).get("who", "world")
        return types.GetPromptResult(
            messages=[types.PromptMessage(role="user", content=types.TextContent(text=f"Say hello to {who}"))]
        )

    async def list_resources(
        ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[types.Resource(uri=f"fixture://{name}/readme", name="readme", mime_type="text/plain")]
        )

    async def list_templates(
        ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(uri_template=f"fixture://{name}/items/{{id}}", name="item")
            ]
        )

    async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=str(params.uri), text=f"contents of {params.uri}")]
        )

    return Server(
        name,
        version="1.0.0",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
    )


class RequireToken:
    """401 unless the request carries ``Authorization: Bearer <token>``: how a test sees that the
    proxy sends the upstream's credential (and never the client's)."""

    def __init__(self, app: ASGIApp, token: str | None = None, token_file: str | None = None) -> None:
        self.app = app
        self.token = token
        self.token_file = token_file

    def expected(self) -> bytes:
        """The token now: the fixed one, or the file's content read again for every request (so a
        test can change it while the server runs)."""
        if self.token_file is not None:
            with open(self.token_file) as f:
                return f"Bearer {f.read().strip()}".encode()
        return f"Bearer {self.token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != self.expected():
                response: Response = JSONResponse({"error": "unauthorized"}, status_code=401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tools", type=int, default=0, help="generated tools beside the fixed ones")
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--name", default="fixture")
    parser.add_argument("--token", default=None, help="require this bearer token")
    parser.add_argument("--token-file", default=None, help="require the bearer token in this file")
    parser.add_argument(
        "--tool-names", default="", help="more tools, comma-separated, answering '<name> ran'"
    )
    parser.add_argument("--legacy-only", action="store_true", help="refuse 2026-07-28 (session era only)")
    args = parser.parse_args()
    named = tuple(n for n in args.tool_names.split(",") if n)
    server = build(args.tools, args.page_size, args.name, named)
    app: ASGIApp = server.streamable_http_app(
        streamable_http_path="/mcp",
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    if args.legacy_only:
        app = _LegacyOnly(app)
    if args.token or args.token_file:
        app = RequireToken(app, args.token, args.token_file)
    # h11, not httptools (installed for the data plane, and uvicorn's pick when present): with
    # httptools a header value keeps the whitespace around it, which the SDK compares verbatim.
    uvicorn.run(app, host="127.0.0.1", port=args.port, http="h11", log_level="warning")


class _LegacyOnly:
    """Answers a 2026-07-28 request as a server of 2025-11-25 does: 400, unsupported version."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            version = dict(scope["headers"]).get(b"mcp-protocol-version", b"").decode()
            if version == "2026-07-28":
                request = Request(scope, receive)
                await request.body()
                body = {
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {"code": -32600, "message": "Unsupported version"},
                }
                await JSONResponse(body, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


if __name__ == "__main__":
    main()
