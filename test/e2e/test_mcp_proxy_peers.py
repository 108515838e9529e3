"""``agentkube mcp-proxy`` in front of MCP servers nobody here wrote, driven by clients nobody here wrote.

One proxy aggregates six upstreams over every transport it speaks: server-everything over Streamable
HTTP (``h_``), over stdio started by the proxy (``s_``), and over the legacy HTTP+SSE transport reached
both by falling back from ``transport: auto`` (``a_``) and with ``transport: sse`` (``e_``);
mcp-server-time (``t_``) and server-memory (``m_``) over stdio. The Python SDK client drives it in
each of its modes (``legacy``, ``auto`` and ``2026-07-28``), and the TypeScript SDK once.

What is pinned: the merged catalog (every upstream's tools under its prefix, each callable, prefixes
stripped on the way up), progress of a long-running tool, sampling and elicitation relayed to the
client's callbacks (a server-to-client request for a session-era client, an ``InputRequiredResult``
round trip for a 2026-07-28 one), ``structuredContent``, ``outputSchema`` and annotations passing
through untouched, resources, templates, prompts and completions routed to their upstream, a killed
stdio child restarted (readiness 503 meanwhile), and the environment a stdio child gets (only what
its config names). One limit the proxy documents is pinned as such: on a shared connection (stdio,
HTTP+SSE) a server request that names no ``relatedRequestId`` is refused while two calls are in flight.

Two proxy bugs found here stay pinned by their tests: a 2026-07-28 client's ``_meta`` envelope must
not reach session-era stdio servers, and a Streamable HTTP upstream's capability-gated tools must
reach the catalog (the proxy declares the capabilities it relays).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import mcp_types as types
import orjson
import pytest
from mcp.client.client import Client
from mcp.shared.exceptions import MCPError

from agentkube.testing import eventually
from test.e2e.peers import (
    HttpPeer,
    PeerCommand,
    everything_sse,
    everything_stdio,
    everything_streamable_http,
    free_port,
    memory_stdio,
    node22,
    peers_dir,
    start_http_peer,
    time_stdio,
)
from test.e2e.proxy_harness import RunningProxy, http_upstream, run_proxy

pytestmark = pytest.mark.e2e

MODES = ["legacy", "auto", "2026-07-28"]
EVERYTHING = {"h_": "streamable-http", "s_": "stdio", "a_": "sse (auto fallback)", "e_": "sse"}
"""server-everything's four upstreams: prefix -> how the proxy reaches it."""
PEERED = ["s_", "a_", "e_"]
"""The upstreams on one shared connection (stdio, HTTP+SSE), which declare what the proxy relays."""
PREFIXES = (*EVERYTHING, "t_", "m_")
SECRET = "s3cret-of-the-proxy"
FROM_ENV = "handed-on-by-valueFromEnv"
TS_CLIENT = Path(__file__).with_name("ts_client.mjs")
ACCEPT = "application/json, text/event-stream"


def stdio_upstream(
    name: str, cmd: PeerCommand, *, env: list[dict[str, str]] | None = None, **extra: Any
) -> dict[str, Any]:
    """A stdio upstream running ``cmd``; the peer's own variables become plain ``env`` values."""
    variables = [{"name": k, "value": v} for k, v in cmd.env.items()] + list(env or [])
    return {
        "kind": "stdio",
        "name": name,
        "command": cmd.command,
        "args": cmd.args,
        "env": variables,
        **extra,
    }


def texts(result: types.CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, types.TextContent))


def expected_version(mode: str) -> str:
    # "auto" probes server/discover, which the proxy answers: it speaks 2026-07-28 whatever is behind it.
    return "2025-11-25" if mode == "legacy" else "2026-07-28"


# ------------------------------------------------------------------------------------------ peers


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp-proxy-peers")


@pytest.fixture(scope="module")
def everything_http(work: Path) -> Iterator[HttpPeer]:
    port = free_port()
    log = work / "everything-http.log"
    with start_http_peer(everything_streamable_http(port), port, "/mcp", log_path=log) as peer:
        yield peer


@pytest.fixture(scope="module")
def everything_sse_server(work: Path) -> Iterator[HttpPeer]:
    port = free_port()
    with start_http_peer(everything_sse(port), port, "/sse", log_path=work / "everything-sse.log") as peer:
        yield peer


@pytest.fixture(scope="module")
def memory_file(work: Path) -> Path:
    return work / "memory.jsonl"


@pytest.fixture(scope="module")
def proxy(
    work: Path, everything_http: HttpPeer, everything_sse_server: HttpPeer, memory_file: Path
) -> Iterator[RunningProxy]:
    isolated = [
        {"name": "AGENTKUBE_GIVEN", "value": "plain"},
        {"name": "AGENTKUBE_FROM_ENV", "valueFromEnv": "AGENTKUBE_TEST_SOURCE"},
    ]
    upstreams = [
        http_upstream("everything-http", everything_http.url, toolPrefix="h_", transport="streamable-http"),
        stdio_upstream("everything-stdio", everything_stdio(), toolPrefix="s_", env=isolated),
        http_upstream("everything-sse-auto", everything_sse_server.url, toolPrefix="a_"),
        http_upstream("everything-sse", everything_sse_server.url, toolPrefix="e_", transport="sse"),
        stdio_upstream("time", time_stdio("UTC"), toolPrefix="t_"),
        stdio_upstream("memory", memory_stdio(memory_file), toolPrefix="m_"),
    ]
    env = {"AGENTKUBE_TEST_SECRET": SECRET, "AGENTKUBE_TEST_SOURCE": FROM_ENV}
    with run_proxy(work, upstreams, env=env) as running:
        yield running


# ----------------------------------------------------------------------------------- the clients


async def _sample(ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    asked = "".join(m.content.text for m in params.messages if isinstance(m.content, types.TextContent))
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text=f"sampled[{asked}]"),
        model="e2e-model",
        stop_reason="endTurn",
    )


async def _elicit(ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"name": "Ada Lovelace", "check": True, "integer": 7})


def _client(proxy: RunningProxy, mode: str, **kwargs: Any) -> Client:
    return Client(proxy.url, mode=mode, **kwargs)


async def tool_names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


async def listed(client: Client, name: str) -> bool:
    return name in await tool_names(client)


# ------------------------------------------------------------------------------- one merged catalog


@pytest.mark.parametrize("mode", MODES)
async def test_one_catalog_lists_every_upstream_under_its_prefix(proxy: RunningProxy, mode: str) -> None:
    async with _client(proxy, mode) as client:
        assert client.protocol_version == expected_version(mode)
        tools = [t.name for t in (await client.list_tools()).tools]
        prompts = {p.name for p in (await client.list_prompts()).prompts}
    for prefix in EVERYTHING:
        for tool in (
            "echo",
            "get-sum",
            "get-env",
            "get-structured-content",
            "trigger-long-running-operation",
        ):
            assert f"{prefix}{tool}" in tools, (prefix, EVERYTHING[prefix], tools)
        assert {f"{prefix}simple-prompt", f"{prefix}args-prompt"} <= prompts
    assert {"t_get_current_time", "t_convert_time"} <= set(tools)
    assert {"m_create_entities", "m_read_graph", "m_open_nodes"} <= set(tools)
    assert all(name.startswith(PREFIXES) for name in tools), "every name carries its upstream's prefix"
    assert tools == sorted(tools) and len(tools) == len(set(tools))


@pytest.mark.parametrize("mode", MODES)
async def test_every_upstream_answers_its_prefixed_tools(proxy: RunningProxy, mode: str) -> None:
    async with _client(proxy, mode) as client:
        for prefix, transport in EVERYTHING.items():
            echoed = await client.call_tool(f"{prefix}echo", {"message": f"{mode} over {transport}"})
            assert texts(echoed) == f"Echo: {mode} over {transport}"
            summed = await client.call_tool(f"{prefix}get-sum", {"a": 2, "b": 40})
            assert "42" in texts(summed), (prefix, summed)
        # The prefix is the proxy's: upstream names are not callable as they are.
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("echo", {"message": "x"})
        assert unknown.value.error.code == -32602


@pytest.mark.parametrize(
    "mode",
    ["legacy", "auto", "2026-07-28"],
)
async def test_time_server_tells_the_time_through_the_proxy(proxy: RunningProxy, mode: str) -> None:
    async with _client(proxy, mode) as client:
        now = await client.call_tool("t_get_current_time", {"timezone": "UTC"})
    assert not now.is_error, now
    payload = json.loads(texts(now))
    assert payload["timezone"] == "UTC"
    assert datetime.fromisoformat(payload["datetime"]).utcoffset() is not None


@pytest.mark.parametrize("mode", MODES)
async def test_memory_keeps_what_one_call_wrote_for_the_next(
    proxy: RunningProxy, memory_file: Path, mode: str
) -> None:
    entity = f"agentkube-{mode}"
    async with _client(proxy, mode) as client:
        created = await client.call_tool(
            "m_create_entities",
            {"entities": [{"name": entity, "entityType": "test", "observations": [f"written in {mode}"]}]},
        )
        assert not created.is_error, created
    async with _client(proxy, mode) as client:  # another client session reads it back
        opened = await client.call_tool("m_open_nodes", {"names": [entity]})
    assert entity in texts(opened) and f"written in {mode}" in texts(opened)
    assert entity in await asyncio.to_thread(memory_file.read_text)


@pytest.mark.parametrize("mode", MODES)
async def test_progress_of_a_long_running_tool_reaches_the_client(proxy: RunningProxy, mode: str) -> None:
    async with _client(proxy, mode) as client:
        for prefix in EVERYTHING:
            seen: list[tuple[float, float | None]] = []

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                seen.append((progress, total))  # noqa: B023 (awaited before the loop moves on)

            done = await client.call_tool(
                f"{prefix}trigger-long-running-operation",
                {"duration": 0.3, "steps": 3},
                progress_callback=on_progress,
            )
            assert "Long running operation completed" in texts(done), (prefix, done)
            assert seen == [(1, 3), (2, 3), (3, 3)], (prefix, EVERYTHING[prefix])


@pytest.mark.parametrize("mode", MODES)
async def test_structured_content_output_schema_and_annotations_pass_through(
    proxy: RunningProxy, mode: str
) -> None:
    async with _client(proxy, mode) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        for prefix in EVERYTHING:
            tool = listed[f"{prefix}get-structured-content"]
            assert tool.title == "Get Structured Content Tool"
            assert tool.output_schema is not None
            assert set(tool.output_schema["properties"]) == {"temperature", "conditions", "humidity"}
            assert tool.annotations is not None and tool.annotations.read_only_hint is True
            gzip = listed[f"{prefix}gzip-file-as-resource"].annotations
            assert gzip is not None and gzip.open_world_hint is True and gzip.read_only_hint is False
            weather = await client.call_tool(f"{prefix}get-structured-content", {"location": "Chicago"})
            assert weather.structured_content == {
                "temperature": 36,
                "conditions": "Light rain / drizzle",
                "humidity": 82,
            }
            annotated = await client.call_tool(
                f"{prefix}get-annotated-message", {"messageType": "error", "includeImage": True}
            )
            first, image = annotated.content
            assert first.annotations is not None and first.annotations.priority == 1.0
            assert first.annotations.audience == ["user", "assistant"]
            assert isinstance(image, types.ImageContent) and image.mime_type == "image/png"
            assert image.annotations is not None and image.annotations.audience == ["user"]


@pytest.mark.parametrize("mode", MODES)
async def test_resources_templates_prompts_and_completions_reach_their_upstream(
    proxy: RunningProxy, mode: str
) -> None:
    async with _client(proxy, mode) as client:
        uris = [str(r.uri) for r in (await client.list_resources()).resources]
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        document = "demo://resource/static/document/architecture.md"
        # Four server-everything upstreams list the same URIs: one of each is shown (never renamed).
        assert uris.count(document) == 1 and templates.count("demo://resource/dynamic/text/{resourceId}") == 1
        read = await client.read_resource(document)
        assert isinstance(read.contents[0], types.TextResourceContents) and read.contents[0].text
        dynamic = await client.read_resource("demo://resource/dynamic/text/7")  # routed by the template
        assert "Resource 7: This is a plaintext resource" in dynamic.contents[0].text  # type: ignore[union-attr]
        for prefix in EVERYTHING:
            prompt = await client.get_prompt(f"{prefix}args-prompt", {"city": "Oslo"})
            assert prompt.messages[0].content.text == "What's weather in Oslo?"  # type: ignore[union-attr]
            completed = await client.complete(
                types.PromptReference(type="ref/prompt", name=f"{prefix}completable-prompt"),
                {"name": "department", "value": "S"},
            )
            assert completed.completion.values == ["Sales", "Support"], prefix


def test_transport_auto_fell_back_to_http_sse_for_the_sse_server(proxy: RunningProxy) -> None:
    events = [
        orjson.loads(line) for line in proxy.peer.log_path.read_bytes().splitlines() if line.startswith(b"{")
    ]
    fell_back = {
        e.get("upstream") for e in events if e.get("event") == "upstream speaks HTTP+SSE (2024-11-05)"
    }
    assert "everything-sse-auto" in fell_back
    assert "everything-http" not in fell_back


# ------------------------------------------------------------------- the server asks the client


@pytest.mark.parametrize("prefix", PEERED)
@pytest.mark.parametrize("mode", MODES)
async def test_sampling_reaches_the_clients_callback(proxy: RunningProxy, mode: str, prefix: str) -> None:
    async with _client(proxy, mode, sampling_callback=_sample) as client:
        assert f"{prefix}trigger-sampling-request" in await tool_names(client)
        result = await client.call_tool(f"{prefix}trigger-sampling-request", {"prompt": mode, "maxTokens": 5})
    assert f"sampled[Resource trigger-sampling-request context: {mode}]" in texts(result), result


@pytest.mark.parametrize("prefix", PEERED)
@pytest.mark.parametrize("mode", MODES)
async def test_elicitation_reaches_the_clients_callback(proxy: RunningProxy, mode: str, prefix: str) -> None:
    async with _client(proxy, mode, elicitation_callback=_elicit) as client:
        result = await client.call_tool(f"{prefix}trigger-elicitation-request", {})
    text = texts(result)
    assert "User provided the requested information" in text, result
    assert "- Name: Ada Lovelace" in text and "- Favorite Integer: 7" in text


async def test_a_2026_client_is_asked_through_an_input_required_result(proxy: RunningProxy) -> None:
    """The wire shape, without an SDK in between: the session-era upstream's mid-call
    ``elicitation/create`` becomes an ``InputRequiredResult``; the retry answers it and the same
    upstream call finishes."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
    }
    name = "s_trigger-elicitation-request"
    headers = {
        "Content-Type": "application/json",
        "Accept": ACCEPT,
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": name,
    }
    call: dict[str, Any] = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": {}, "_meta": meta},
    }
    async with aiohttp.ClientSession() as http:
        first = await _post(http, proxy.url, call, headers)
        result = first["result"]
        assert result["resultType"] == "input_required"
        (key, asked), *more = result["inputRequests"].items()
        assert not more and asked["method"] == "elicitation/create"
        assert "name" in asked["params"]["requestedSchema"]["properties"]
        answer = {"action": "accept", "content": {"name": "Grace Hopper"}}
        retry = {
            **call,
            "id": 2,
            "params": {
                **call["params"],
                "inputResponses": {key: answer},
                "requestState": result["requestState"],
            },
        }
        final = await _post(http, proxy.url, retry, headers)
    assert final["id"] == 2 and final["result"]["resultType"] == "complete"
    assert "- Name: Grace Hopper" in "".join(part.get("text", "") for part in final["result"]["content"])


async def test_a_server_request_on_a_shared_connection_with_two_calls_in_flight_is_refused_as_documented(
    proxy: RunningProxy,
) -> None:
    """rpc.py: on one shared connection (stdio, HTTP+SSE) a server request that names no
    ``relatedRequestId`` (server-everything never does) goes to the only call in flight; with two in
    flight nobody can tell whose it is, and the proxy answers the server -32601 saying so."""
    first_asked = asyncio.Event()
    release = asyncio.Event()

    async def slow_sample(ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        first_asked.set()
        await release.wait()
        return await _sample(ctx, params)

    async with (
        _client(proxy, "legacy", sampling_callback=slow_sample) as first,
        _client(proxy, "legacy", sampling_callback=_sample) as second,
    ):
        held = asyncio.create_task(first.call_tool("s_trigger-sampling-request", {"prompt": "one"}))
        try:
            await asyncio.wait_for(first_asked.wait(), 30)
            refused = await second.call_tool("s_trigger-sampling-request", {"prompt": "two"})
        finally:
            release.set()
        answered = await held
    assert refused.is_error, refused
    assert "2 client requests are in flight on the proxy's shared connection" in texts(refused)
    assert "sampled[Resource trigger-sampling-request context: one]" in texts(answered)


async def _post(http: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str]) -> dict[str, Any]:
    """POST one message; the last message of the answer (JSON, or the last event of an SSE stream)."""
    async with http.post(url, data=orjson.dumps(body), headers=headers) as response:
        raw = await response.read()
        if response.content_type == "text/event-stream":
            events = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
            raw = events[-1].encode()
        message: dict[str, Any] = orjson.loads(raw)
        return message


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_sampling_tool_of_a_streamable_http_upstream_is_listed_and_relayed(
    proxy: RunningProxy, mode: str
) -> None:
    async with _client(proxy, mode, sampling_callback=_sample) as client:
        assert "h_trigger-sampling-request" in await tool_names(client)
        result = await client.call_tool("h_trigger-sampling-request", {"prompt": mode, "maxTokens": 5})
    assert f"sampled[Resource trigger-sampling-request context: {mode}]" in texts(result)


# ---------------------------------------------------------------------------------- TypeScript SDK


def test_typescript_sdk_lists_calls_and_gets_a_prompt(proxy: RunningProxy) -> None:
    done = subprocess.run(
        [str(node22()), str(TS_CLIENT), proxy.url, str(peers_dir() / "peers" / "node_modules")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["protocolVersion"] == "2025-11-25" and report["sessionId"], report
    assert {"h_echo", "s_echo", "a_echo", "e_echo", "t_get_current_time", "m_read_graph"} <= set(
        report["tools"]
    )
    assert report["echo"] == "Echo: from the TypeScript SDK"
    assert report["prompt"] == "What's weather in Paris, Île-de-France?"


# ------------------------------------------------------------------------------------ stdio child


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (every thread's list: a child belongs to the thread that forked it)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


async def test_a_killed_stdio_child_is_restarted_and_readiness_follows(work: Path) -> None:
    upstream = stdio_upstream("everything", everything_stdio(), toolPrefix="s_")
    with run_proxy(work, [upstream]) as solo:
        async with aiohttp.ClientSession() as http, _client(solo, "legacy") as client:

            async def readiness() -> tuple[int, str]:
                async with http.get(f"{solo.base}/readyz") as response:
                    return response.status, await response.text()

            assert texts(await client.call_tool("s_echo", {"message": "before"})) == "Echo: before"
            (child,) = children(solo.peer.process.pid)
            os.kill(child, signal.SIGKILL)

            async def down() -> str | None:
                status, reason = await readiness()
                return reason if status == 503 else None

            # The restart backoff starts at 0.5 s: a poll every 10 ms cannot miss the window.
            reason = await eventually(down, "readiness goes 503", within=10, interval=0.01)
            assert "stdio upstreams not running: everything" in reason
            # proxy.py: a down upstream's items leave the catalog, and come back once it is re-listed.
            assert "s_echo" not in await tool_names(client)

            async def up() -> bool:
                return (await readiness())[0] == 200

            await eventually(up, "readiness is back to 200", within=30)
            (restarted,) = children(solo.peer.process.pid)
            assert restarted != child
            # Readiness only says the child runs; its tools return when the proxy has re-listed them
            # (moments later, which a call in between would see as an unknown tool).
            await eventually(lambda: listed(client, "s_echo"), "s_echo is listed again", within=30)
            # The client's session lives on: a stdio upstream has no session of its own to lose.
            assert texts(await client.call_tool("s_echo", {"message": "after"})) == "Echo: after"


# ---------------------------------------------------------------------------------- environment


async def test_a_stdio_child_sees_only_the_environment_its_config_names(proxy: RunningProxy) -> None:
    environ = Path(f"/proc/{proxy.peer.process.pid}/environ")
    proxy_env = (await asyncio.to_thread(environ.read_bytes)).split(b"\0")
    assert f"AGENTKUBE_TEST_SECRET={SECRET}".encode() in proxy_env, "the proxy itself has the secret"
    async with _client(proxy, "legacy") as client:
        seen: dict[str, str] = json.loads(texts(await client.call_tool("s_get-env", {})))
    assert "AGENTKUBE_TEST_SECRET" not in seen and "AGENTKUBE_TEST_SOURCE" not in seen
    assert seen["AGENTKUBE_GIVEN"] == "plain"
    assert seen["AGENTKUBE_FROM_ENV"] == FROM_ENV
    assert set(seen) == {"PATH", "HOME", "AGENTKUBE_GIVEN", "AGENTKUBE_FROM_ENV"}
    assert seen["PATH"] == os.environ["PATH"]
