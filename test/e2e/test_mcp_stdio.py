"""The stdio upstream against real MCP servers run as children: server-everything and mcp-server-time.

What is pinned: tools list and call through the shared connection, progress of a long-running tool
reaching each caller under its own token, sampling relayed to the client that declared it, restart
after the child is killed, an environment of only what the config gives, nothing left running after
``close()``, and a child that writes garbage, oversized lines and floods of stderr hurting nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog

from agentkube.dataplane.mcp.config import Limits, StdioEnvVar
from agentkube.dataplane.mcp.config import StdioUpstream as StdioConfig
from agentkube.dataplane.mcp.stdio import StdioUpstream
from agentkube.dataplane.mcp.upstream import ClientContext, Exchange, Message, UpstreamError
from agentkube.testing import eventually
from test.e2e import peers

pytestmark = pytest.mark.e2e

LIMITS = Limits(connect_timeout_seconds=20, call_timeout_seconds=60)
SAMPLING_CLIENT = ClientContext(capabilities={"sampling": {}})


# -- the real peers (installed by hack/install-e2e-peers.sh through test.e2e.peers) ---------------


def everything(**fields: Any) -> StdioConfig:
    command = peers.everything_stdio()
    return StdioConfig(name="everything", command=command.command, args=command.args, **fields)


@contextlib.asynccontextmanager
async def running(upstream: StdioUpstream) -> AsyncIterator[StdioUpstream]:
    """``upstream`` started and up; closed on the way out, whatever happened."""
    await upstream.start()
    try:
        await eventually(lambda: upstream.up, f"{upstream.name} is up", within=30)
        yield upstream
    finally:
        await upstream.close()


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: fields count from after it.
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def environment_names(pid: int) -> set[str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return {item.split(b"=", 1)[0].decode() for item in raw.split(b"\0") if item}


async def call(upstream: StdioUpstream, tool: str, arguments: dict[str, Any], **exchange: Any) -> Message:
    return await upstream.request("tools/call", {"name": tool, "arguments": arguments}, Exchange(**exchange))


def text_of(response: Message) -> str:
    return "".join(part.get("text", "") for part in response["result"]["content"])


# -- server-everything --------------------------------------------------------------------------


async def test_lists_and_calls_tools_and_logs_the_childs_stderr() -> None:
    kinds: list[str] = []
    upstream = StdioUpstream(everything(), LIMITS)
    upstream.on_list_changed = kinds.append
    with structlog.testing.capture_logs() as logs:
        async with running(upstream):
            assert upstream.era == "legacy"
            assert upstream.initialize_result is not None
            assert upstream.initialize_result["protocolVersion"] == "2025-11-25"
            listed = await upstream.request("tools/list", None, Exchange())
            names = {tool["name"] for tool in listed["result"]["tools"]}
            assert {"echo", "trigger-long-running-operation", "get-env"} <= names
            echoed = await call(upstream, "echo", {"message": "through the proxy"})
            assert text_of(echoed) == "Echo: through the proxy"
    assert {"tools", "prompts", "resources"} <= set(kinds), "a connect refreshes every list"
    stderr = [e for e in logs if e["event"] == "stderr" and e.get("upstream") == "everything"]
    assert any("Starting default (STDIO) server" in e["line"] for e in stderr)


async def test_progress_of_a_long_running_tool_reaches_each_caller_with_its_own_token() -> None:
    async with running(StdioUpstream(everything(), LIMITS)) as upstream:
        inboxes: list[list[Message]] = [[], []]

        async def one_caller(inbox: list[Message]) -> Message:
            async def on_message(message: Message) -> None:
                inbox.append(message)

            params = {
                "name": "trigger-long-running-operation",
                "arguments": {"duration": 0.6, "steps": 3},
                "_meta": {"progressToken": "same-token"},
            }
            return await upstream.request("tools/call", params, Exchange(on_message=on_message))

        results = await asyncio.gather(one_caller(inboxes[0]), one_caller(inboxes[1]))
        for response, inbox in zip(results, inboxes, strict=True):
            assert "Long running operation completed" in text_of(response)
            progress = [m["params"] for m in inbox if m["method"] == "notifications/progress"]
            assert [(p["progressToken"], p["progress"], p["total"]) for p in progress] == [
                ("same-token", 1, 3),
                ("same-token", 2, 3),
                ("same-token", 3, 3),
            ]


async def test_sampling_is_relayed_to_the_client_that_declared_it_and_refused_for_one_that_did_not() -> None:
    async with running(StdioUpstream(everything(), LIMITS)) as upstream:
        asked: list[Message] = []

        async def sampling_client(message: Message) -> None:
            if message.get("method") == "sampling/createMessage":
                asked.append(message)
                answer = {"role": "assistant", "content": {"type": "text", "text": "sampled by the test"}}
                result = {**answer, "model": "test-model", "stopReason": "endTurn"}
                await upstream.reply({"jsonrpc": "2.0", "id": message["id"], "result": result})

        arguments = {"prompt": "hello", "maxTokens": 5}
        relayed = await call(
            upstream,
            "trigger-sampling-request",
            arguments,
            on_message=sampling_client,
            client=SAMPLING_CLIENT,
        )
        assert len(asked) == 1
        assert "sampled by the test" in text_of(relayed)

        async def other_client(message: Message) -> None:
            asked.append(message)

        refused = await call(upstream, "trigger-sampling-request", arguments, on_message=other_client)
        assert len(asked) == 1, "a client without the sampling capability is never asked"
        assert "did not declare the sampling capability" in orjson.dumps(refused).decode()


async def test_a_killed_child_fails_its_calls_in_flight_is_restarted_and_the_next_call_succeeds() -> None:
    async with running(StdioUpstream(everything(), LIMITS)) as upstream:
        first_pid = upstream.pid
        assert first_pid is not None
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
            os.kill(first_pid, signal.SIGKILL)
            with pytest.raises(UpstreamError, match="the child exited with code -9"):
                await slow
        finally:
            slow.cancel()
        await eventually(
            lambda: upstream.up and upstream.pid not in (None, first_pid), "the child is restarted", within=30
        )
        echoed = await call(upstream, "echo", {"message": "again"})
        assert text_of(echoed) == "Echo: again"


async def test_the_child_gets_only_the_environment_its_config_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTKUBE_TEST_PROXY_SECRET", "never-for-the-child")
    monkeypatch.setenv("AGENTKUBE_TEST_SOURCE", "from-the-proxy")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")  # the way out, which the child needs too
    for name in ("HTTP_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    config = everything(
        env=[
            StdioEnvVar(name="PLAIN", value="plain-value"),
            StdioEnvVar(name="FROM_ENV", value_from_env="AGENTKUBE_TEST_SOURCE"),
        ]
    )
    async with running(StdioUpstream(config, LIMITS)) as upstream:
        seen = orjson.loads(text_of(await call(upstream, "get-env", {})))
        assert set(seen) == {"PATH", "HOME", "HTTPS_PROXY", "PLAIN", "FROM_ENV"}
        assert seen["HTTPS_PROXY"] == "http://127.0.0.1:3128"
        assert seen["PLAIN"] == "plain-value"
        assert seen["FROM_ENV"] == "from-the-proxy"
        assert seen["PATH"] == os.environ["PATH"]
        assert upstream.pid is not None
        names = environment_names(upstream.pid)
        assert "AGENTKUBE_TEST_PROXY_SECRET" not in names
        assert names == {"PATH", "HOME", "HTTPS_PROXY", "PLAIN", "FROM_ENV"}


async def test_a_value_from_env_the_proxy_lacks_keeps_the_child_from_starting() -> None:
    config = everything(env=[StdioEnvVar(name="TOKEN", value_from_env="AGENTKUBE_TEST_NOT_SET")])
    upstream = StdioUpstream(config, LIMITS, environ={"PATH": os.environ["PATH"]})
    with structlog.testing.capture_logs() as logs:
        await upstream.start()
        try:
            await asyncio.wait_for(upstream.tried.wait(), 10)
            assert not upstream.up
            assert upstream.pid is None
            with pytest.raises(UpstreamError, match="down"):
                await upstream.request("tools/list", None, Exchange(timeout=0.2))
        finally:
            await upstream.close()
    assert any("AGENTKUBE_TEST_NOT_SET is not set" in str(e.get("error")) for e in logs)


async def test_close_ends_the_child_and_everything_in_its_process_group() -> None:
    command, args = peers.everything_stdio().command, peers.everything_stdio().args
    # The shell starts a grandchild in the child's group, then becomes the MCP server.
    script = 'sleep 1000 & exec "$0" "$@"'
    upstream = StdioUpstream(
        StdioConfig(name="grouped", command="sh", args=["-c", script, command, *args]), LIMITS
    )
    try:
        async with running(upstream):
            pgid = upstream.pid
            assert pgid is not None
            assert os.getpgid(pgid) == pgid, "the child leads a process group of its own"
            assert os.getpgid(pgid) != os.getpgid(0)
            await eventually(lambda: len(group_members(pgid)) >= 2, "the grandchild runs", within=10)
    finally:
        await upstream.close()
    assert upstream.pid is None
    assert not upstream.up
    await eventually(lambda: not group_members(pgid), "no process of the group is left", within=10)


async def test_a_dead_child_is_restarted_even_when_a_grandchild_holds_its_stdout() -> None:
    command = peers.everything_stdio()
    # The grandchild inherits the child's stdout, so the pipe stays open after the child dies.
    script = 'sleep 1000 & exec "$0" "$@"'
    config = StdioConfig(name="held", command="sh", args=["-c", script, command.command, *command.args])
    async with running(StdioUpstream(config, LIMITS)) as upstream:
        first = upstream.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await eventually(
            lambda: upstream.pid not in (None, first) and upstream.up, "a new child is up", within=30
        )
        assert not group_members(first), "the dead child's grandchild was ended with it"
        assert text_of(await call(upstream, "echo", {"message": "held"})) == "Echo: held"


async def test_a_child_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    stubborn = tmp_path / "stubborn.py"
    # It ignores SIGTERM and also outlives its stdin: only SIGKILL ends it.
    stubborn.write_text(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    time.sleep(1)\n"
    )
    upstream = StdioUpstream(
        StdioConfig(name="stubborn", command=sys.executable, args=[str(stubborn)]), LIMITS, term_seconds=0.5
    )
    await upstream.start()
    try:
        pid = await eventually(lambda: upstream.pid, "the child runs", within=10)
    finally:
        await upstream.close()
    await eventually(lambda: not group_members(pid), "the stubborn child is gone", within=10)


# -- mcp-server-time ------------------------------------------------------------------------------


async def test_mcp_server_time_lists_and_answers() -> None:
    command, args = peers.time_stdio().command, peers.time_stdio().args
    upstream = StdioUpstream(StdioConfig(name="time", command=command, args=args), LIMITS)
    async with running(upstream):
        listed = await upstream.request("tools/list", None, Exchange())
        assert {"get_current_time", "convert_time"} <= {tool["name"] for tool in listed["result"]["tools"]}
        answer = await call(upstream, "get_current_time", {"timezone": "UTC"})
        assert answer["result"].get("isError") is not True
        assert orjson.loads(text_of(answer))["timezone"] == "UTC"


# -- a misbehaving child --------------------------------------------------------------------------

# A peer no real server imitates: it writes a banner, a non-JSON line and a line over the limit to
# stdout before it answers, and floods stderr.
NOISY_SERVER = textwrap.dedent(
    """
    import json, sys
    for n in range(500):
        print(f"noise {n}", file=sys.stderr)
    sys.stderr.flush()
    out = sys.stdout
    for line in sys.stdin:
        message = json.loads(line)
        if "id" not in message:
            continue
        if message["method"] == "initialize":
            out.write("a banner that is not JSON\\n")
            huge = "x" * (17 << 20)
            out.write('{"jsonrpc": "2.0", "id": ' + str(message["id"]) + ', "result": "' + huge + '"}\\n')
            result = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                      "serverInfo": {"name": "noisy", "version": "0"}}
        elif message["method"] == "tools/list":
            result = {"tools": [{"name": "noop", "inputSchema": {"type": "object"}}]}
        else:
            out.write(json.dumps({"jsonrpc": "2.0", "id": message["id"],
                                  "error": {"code": -32601, "message": "no"}}) + "\\n")
            out.flush()
            continue
        out.write(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}) + "\\n")
        out.flush()
    """
)


@pytest.fixture
def noisy_server(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "noisy.py"
    path.write_text(NOISY_SERVER)
    yield path


async def test_garbage_oversized_lines_and_a_stderr_flood_are_skipped_and_bounded(noisy_server: Path) -> None:
    limits = Limits(max_message_bytes=16 << 20, connect_timeout_seconds=20)
    config = StdioConfig(name="noisy", command=sys.executable, args=[str(noisy_server)])
    upstream = StdioUpstream(config, limits)
    with structlog.testing.capture_logs() as logs:
        async with running(upstream):
            # The oversized line carried the initialize id: had it been read, the handshake would
            # have taken its string result and failed.
            assert upstream.initialize_result is not None
            assert upstream.initialize_result["serverInfo"]["name"] == "noisy"
            listed = await upstream.request("tools/list", None, Exchange())
            assert [tool["name"] for tool in listed["result"]["tools"]] == ["noop"]
    events = [e["event"] for e in logs]
    assert "skipped a line over the size limit" in events
    assert any(e["event"] == "skipped a message" and e["reason"] == "not JSON" for e in logs)
    logged = [e for e in logs if e["event"] == "stderr" and e["line"].startswith("noise")]
    suppressed = sum(e["lines"] for e in logs if e["event"] == "stderr lines suppressed")
    assert len(logged) <= 60, "the stderr flood is rate-limited"
    assert len(logged) + suppressed == 500, "every line is either logged or counted"
