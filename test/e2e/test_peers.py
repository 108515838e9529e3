"""Each installed MCP peer starts and answers a real client: the ground the proxy's e2e tests stand on.

Driven by the Python SDK's `Client` (Streamable HTTP, legacy SSE, stdio) and once by the TypeScript
SDK, so a broken install or a peer release that changed its CLI fails here, by name, rather than as a
puzzling proxy failure elsewhere.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from test.e2e.peers import (
    HttpPeer,
    PeerCommand,
    PeerError,
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

pytestmark = pytest.mark.e2e


def _stdio(cmd: PeerCommand) -> StdioServerParameters:
    return StdioServerParameters(command=cmd.command, args=cmd.args, env=dict(cmd.env))


def _texts(result: types.CallToolResult) -> list[str]:
    return [block.text for block in result.content if isinstance(block, types.TextContent)]


@pytest.fixture(scope="module")
def everything_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpPeer]:
    port = free_port()
    log = tmp_path_factory.mktemp("everything-http") / "server.log"
    with start_http_peer(everything_streamable_http(port), port, "/mcp", log_path=log) as peer:
        yield peer


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_everything_echoes_over_streamable_http(everything_http: HttpPeer, mode: str) -> None:
    async with Client(everything_http.url, mode=mode) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert {"echo", "get-sum"} <= tools, tools
        result = await client.call_tool("echo", {"message": "over streamable http"})
        # server-everything speaks only the session-based revisions, so "auto" must fall back to them.
        assert client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
    assert _texts(result) == ["Echo: over streamable http"]


async def test_everything_adds_over_legacy_sse(tmp_path: Path) -> None:
    port = free_port()
    with start_http_peer(everything_sse(port), port, "/sse", log_path=tmp_path / "server.log") as peer:
        async with Client(sse_client(peer.url), mode="legacy") as client:
            result = await client.call_tool("get-sum", {"a": 2, "b": 40})
    assert any("42" in text for text in _texts(result)), result


async def test_everything_echoes_over_stdio() -> None:
    async with Client(_stdio(everything_stdio()), mode="legacy") as client:
        result = await client.call_tool("echo", {"message": "over stdio"})
    assert _texts(result) == ["Echo: over stdio"]


async def test_memory_remembers_an_entity_between_calls(tmp_path: Path) -> None:
    memory = tmp_path / "memory.jsonl"
    async with Client(_stdio(memory_stdio(memory)), mode="legacy") as client:
        entity = {"name": "agentkube", "entityType": "project", "observations": ["proxies MCP"]}
        await client.call_tool("create_entities", {"entities": [entity]})
        graph = await client.call_tool("read_graph", {})
    assert "agentkube" in "".join(_texts(graph))
    assert "agentkube" in memory.read_text(), "server-memory should keep its graph in MEMORY_FILE_PATH"


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_time_server_tells_the_time_in_utc(mode: str) -> None:
    async with Client(_stdio(time_stdio("UTC")), mode=mode) as client:
        assert "get_current_time" in {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("get_current_time", {"timezone": "UTC"})
        # Built on the Python SDK 2.x, this peer is the one that speaks 2026-07-28 when asked to.
        expected = HANDSHAKE_PROTOCOL_VERSIONS if mode == "legacy" else MODERN_PROTOCOL_VERSIONS
        assert client.protocol_version in expected
    assert not result.is_error, result
    payload: dict[str, Any] = json.loads("".join(_texts(result)))
    assert payload["timezone"] == "UTC"
    assert datetime.fromisoformat(payload["datetime"]).utcoffset() is not None


def test_typescript_sdk_client_lists_everything_tools(everything_http: HttpPeer) -> None:
    script = """
        import { Client } from "@modelcontextprotocol/sdk/client/index.js";
        import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
        const client = new Client({ name: "agentkube-e2e", version: "0.0.0" });
        await client.connect(new StreamableHTTPClientTransport(new URL(process.argv[1])));
        const { tools } = await client.listTools();
        console.log(JSON.stringify(tools.map((tool) => tool.name)));
        await client.close();
    """
    done = subprocess.run(
        [str(node22()), "--input-type=module", "-e", script, everything_http.url],
        cwd=peers_dir() / "peers",  # where the SDK's node_modules resolve from
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "echo" in json.loads(done.stdout.strip().splitlines()[-1])


def test_start_http_peer_reports_a_peer_that_exits_before_listening(tmp_path: Path) -> None:
    port = free_port()
    broken = PeerCommand((*everything_stdio().argv[:-1], "no-such-transport"))
    with (
        pytest.raises(PeerError, match="exited with 1 before listening") as failure,
        start_http_peer(broken, port, "/mcp", log_path=tmp_path / "server.log"),
    ):
        pass
    assert "Unknown transport: no-such-transport" in str(failure.value), (
        "the error should carry the log's tail"
    )


def test_start_http_peer_refuses_a_port_someone_already_listens_on(everything_http: HttpPeer) -> None:
    # Otherwise the helper would take the other listener for its peer being ready.
    port = everything_http.port
    with pytest.raises(PeerError, match="already accepts"), start_http_peer(everything_stdio(), port, "/mcp"):
        pass
