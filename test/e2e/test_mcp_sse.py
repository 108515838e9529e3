"""The HTTP+SSE upstream (MCP 2024-11-05) against server-everything's ``sse`` transport on loopback.

What is pinned: the endpoint event is found and POSTed to, tools are listed and called, progress
and sampling travel over the one stream, a stream that drops fails the calls in flight and is made
again once the server is back, a URL that is not an event stream keeps the upstream down, and
``close()`` ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import structlog

from agentkube.dataplane.mcp.config import HttpAuth, HttpUpstream, Limits
from agentkube.dataplane.mcp.sse import SseUpstream
from agentkube.dataplane.mcp.upstream import ClientContext, Exchange, Message, UpstreamError
from agentkube.testing import eventually
from test.e2e import peers

pytestmark = pytest.mark.e2e

LIMITS = Limits(connect_timeout_seconds=20, call_timeout_seconds=60)


@contextlib.asynccontextmanager
async def sse_server(port: int) -> AsyncIterator[peers.HttpPeer]:
    """server-everything over HTTP+SSE on 127.0.0.1:``port``, stopped on the way out.

    ``start_http_peer`` polls and stops with blocking waits, so it runs in a thread: the upstream
    under test keeps its event loop meanwhile.
    """
    with contextlib.ExitStack() as stack:
        peer = await asyncio.to_thread(
            stack.enter_context, peers.start_http_peer(peers.everything_sse(port), port, "/sse")
        )
        try:
            yield peer
        finally:
            await asyncio.to_thread(stack.close)


@contextlib.asynccontextmanager
async def running(upstream: SseUpstream) -> AsyncIterator[SseUpstream]:
    await upstream.start()
    try:
        await eventually(lambda: upstream.up, f"{upstream.name} is up", within=30)
        yield upstream
    finally:
        await upstream.close()


def upstream_for(peer: peers.HttpPeer, **fields: Any) -> HttpUpstream:
    return HttpUpstream(name="everything-sse", url=peer.url, transport="sse", **fields)


async def call(upstream: SseUpstream, tool: str, arguments: dict[str, Any], **exchange: Any) -> Message:
    return await upstream.request("tools/call", {"name": tool, "arguments": arguments}, Exchange(**exchange))


def text_of(response: Message) -> str:
    return "".join(part.get("text", "") for part in response["result"]["content"])


async def test_lists_and_calls_tools_over_the_sse_stream() -> None:
    kinds: list[str] = []
    async with sse_server(peers.free_port()) as peer:
        # Credentials go along (the server ignores them); what they are is read once, from environ.
        auth = HttpAuth(mode="bearer", secret_env="AGENTKUBE_TEST_TOKEN")
        upstream = SseUpstream(upstream_for(peer, auth=auth), LIMITS, environ={"AGENTKUBE_TEST_TOKEN": "t"})
        upstream.on_list_changed = kinds.append
        async with running(upstream):
            assert upstream.era == "legacy"
            assert upstream.initialize_result is not None
            assert upstream.initialize_result["serverInfo"]["name"] == "mcp-servers/everything"
            listed = await upstream.request("tools/list", None, Exchange())
            assert {"echo", "get-sum"} <= {tool["name"] for tool in listed["result"]["tools"]}
            echoed = await call(upstream, "echo", {"message": "over sse"})
            assert text_of(echoed) == "Echo: over sse"
            summed = await call(upstream, "get-sum", {"a": 2, "b": 40})
            assert "42" in text_of(summed)
    assert {"tools", "prompts", "resources"} <= set(kinds)


async def test_progress_and_sampling_travel_over_the_one_stream() -> None:
    async with (
        sse_server(peers.free_port()) as peer,
        running(SseUpstream(upstream_for(peer), LIMITS)) as upstream,
    ):
        progress: list[Message] = []

        async def watcher(message: Message) -> None:
            progress.append(message)

        params = {
            "name": "trigger-long-running-operation",
            "arguments": {"duration": 0.4, "steps": 2},
            "_meta": {"progressToken": "mine"},
        }
        done = await upstream.request("tools/call", params, Exchange(on_message=watcher))
        assert "completed" in text_of(done)
        assert [(m["params"]["progressToken"], m["params"]["progress"]) for m in progress] == [
            ("mine", 1),
            ("mine", 2),
        ]

        async def sampler(message: Message) -> None:
            assert message["method"] == "sampling/createMessage"
            result = {
                "role": "assistant",
                "content": {"type": "text", "text": "sampled over sse"},
                "model": "test-model",
            }
            await upstream.reply({"jsonrpc": "2.0", "id": message["id"], "result": result})

        client = ClientContext(capabilities={"sampling": {}})
        sampled = await call(
            upstream, "trigger-sampling-request", {"prompt": "hi"}, on_message=sampler, client=client
        )
        assert "sampled over sse" in text_of(sampled)


async def test_a_dropped_stream_fails_calls_in_flight_and_is_made_again_when_the_server_returns() -> None:
    port = peers.free_port()
    upstream: SseUpstream | None = None
    try:
        async with sse_server(port) as peer:
            upstream = SseUpstream(upstream_for(peer), LIMITS)
            await upstream.start()
            await eventually(lambda: upstream is not None and upstream.up, "the upstream is up", within=30)
            started = asyncio.Event()

            async def on_message(message: Message) -> None:
                started.set()

            params = {
                "name": "trigger-long-running-operation",
                "arguments": {"duration": 30, "steps": 60},
                "_meta": {"progressToken": 1},
            }
            slow = asyncio.get_running_loop().create_task(
                upstream.request("tools/call", params, Exchange(on_message=on_message))
            )
            try:
                await asyncio.wait_for(started.wait(), 20)
                os.killpg(peer.process.pid, signal.SIGKILL)
                with pytest.raises(UpstreamError):
                    await slow
            finally:
                slow.cancel()
            await eventually(
                lambda: upstream is not None and not upstream.up, "the upstream is down", within=10
            )
            with pytest.raises(UpstreamError, match="down"):
                await upstream.request("tools/list", None, Exchange(timeout=0.2))
        async with sse_server(port):
            await eventually(
                lambda: upstream is not None and upstream.up, "the upstream reconnected", within=40
            )
            echoed = await call(upstream, "echo", {"message": "back"})
            assert text_of(echoed) == "Echo: back"
    finally:
        if upstream is not None:
            await upstream.close()


async def test_a_url_that_is_not_an_event_stream_keeps_the_upstream_down() -> None:
    async with sse_server(peers.free_port()) as peer:
        config = HttpUpstream(
            name="wrong-path", url=peer.url.replace("/sse", "/nothing-here"), transport="sse"
        )
        upstream = SseUpstream(config, LIMITS)
        with structlog.testing.capture_logs() as logs:
            await upstream.start()
            try:
                await asyncio.wait_for(upstream.tried.wait(), 20)
                assert not upstream.up
            finally:
                await upstream.close()
        assert any("answered 404" in str(e.get("error")) for e in logs)


async def test_close_ends_the_stream_and_later_requests_but_not_the_proxys_shared_session() -> None:
    async with sse_server(peers.free_port()) as peer, aiohttp.ClientSession(trust_env=True) as http:
        upstream = SseUpstream(upstream_for(peer), LIMITS, http)
        async with running(upstream):
            assert (await upstream.request("ping", None, Exchange()))["result"] == {}
        assert not upstream.up
        assert not http.closed
        with pytest.raises(UpstreamError, match="closed"):
            await upstream.request("tools/list", None, Exchange())
        await eventually(
            lambda: "Client Disconnected" in peer.log_tail(), "the server saw the stream end", within=10
        )
