"""``agentkube mcp-proxy`` as a real process, between the real ``mcp`` SDK client and MCP servers.

The upstream here is the project's fixture server (``fixture_server.py``, built on the SDK), in
both of its forms: dual-era (the proxy speaks 2026-07-28 to it) and session-era only. Every test
that needs a raw HTTP exchange (status codes, replicas, fuzzing) speaks it with aiohttp.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import mcp_types as types
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.client.client import Client
from mcp.shared.exceptions import MCPError

from test.e2e.otlp_collector import collecting
from test.e2e.peers import HttpPeer, free_port
from test.e2e.proxy_harness import KEYS, RunningProxy, http_upstream, run_fixture, run_proxy

pytestmark = pytest.mark.e2e

MODES = ["legacy", "auto", "2026-07-28"]
GENERATED = 120
FIXED = ["add", "ask", "big", "echo", "fail", "grow", "progress", "route", "slow"]  # secret_admin is denied
ACCEPT = "application/json, text/event-stream"
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp-proxy")


@pytest.fixture(scope="module")
def upstreams(work: Path) -> Iterator[dict[str, HttpPeer]]:
    with (
        run_fixture(work, name="fixture", tools=GENERATED, page_size=50) as dual,
        run_fixture(work, name="legacy", tools=GENERATED, page_size=50, legacy_only=True) as legacy,
    ):
        yield {"dual": dual, "legacy": legacy}


@pytest.fixture(scope="module")
def proxies(work: Path, upstreams: dict[str, HttpPeer]) -> Iterator[dict[str, RunningProxy]]:
    tools = {"mode": "deny", "deny": ["secret_*"]}
    with (
        run_proxy(work, [http_upstream("f", upstreams["dual"].url, toolPrefix="f_", tools=tools)]) as dual,
        run_proxy(
            work, [http_upstream("f", upstreams["legacy"].url, toolPrefix="f_", tools=tools)]
        ) as legacy,
    ):
        yield {"dual": dual, "legacy": legacy}


async def _elicit(ctx: Any, params: Any) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"name": "ada"})


def _client(url: str, mode: str, **kwargs: Any) -> Client:
    return Client(url, mode=mode, elicitation_callback=_elicit, **kwargs)


# ------------------------------------------------------------------------------- the SDK, every mode


@pytest.mark.parametrize("upstream", ["dual", "legacy"])
@pytest.mark.parametrize("mode", MODES)
async def test_sdk_client_sees_every_page_filtered_and_prefixed(
    proxies: dict[str, RunningProxy], upstream: str, mode: str
) -> None:
    async with _client(proxies[upstream].url, mode) as client:
        expected_version = "2025-11-25" if mode == "legacy" else "2026-07-28"
        assert client.protocol_version == expected_version
        names = [t.name for t in (await client.list_tools()).tools]
    expected = sorted([f"f_{n}" for n in FIXED] + [f"f_tool_{i:03d}" for i in range(GENERATED)])
    assert names == expected  # every page of the upstream, the denied tool absent, sorted


@pytest.mark.parametrize("upstream", ["dual", "legacy"])
@pytest.mark.parametrize("mode", MODES)
async def test_calls_progress_elicitation_prompts_and_resources_pass_through(
    proxies: dict[str, RunningProxy], upstream: str, mode: str
) -> None:
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with _client(proxies[upstream].url, mode) as client:
        added = await client.call_tool("f_add", {"a": 2, "b": 3})
        assert added.structured_content == {"sum": 5.0}
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["f_add"].output_schema is not None
        assert tools["f_add"].annotations is not None and tools["f_add"].annotations.read_only_hint is True
        assert tools["f_add"].icons and tools["f_add"].icons[0].src == "https://example.com/add.png"
        failed = await client.call_tool("f_fail", {})
        assert failed.is_error is True
        done = await client.call_tool("f_progress", {"steps": 4}, progress_callback=on_progress)
        assert done.content[0].text == "did 4 steps"  # type: ignore[union-attr]
        assert progress == [1.0, 2.0, 3.0, 4.0]
        asked = await client.call_tool("f_ask", {})
        assert asked.content[0].text == "hello ada"  # type: ignore[union-attr]
        prompt = await client.get_prompt("f_greet", {"who": "bob"})
        assert prompt.messages[0].content.text == "Say hello to bob"  # type: ignore[union-attr]
        name = "fixture" if upstream == "dual" else "legacy"
        listed = [str(r.uri) for r in (await client.list_resources()).resources]
        assert listed == [f"fixture://{name}/readme"]
        read = await client.read_resource(f"fixture://{name}/items/42")  # through the template
        assert read.contents[0].text == f"contents of fixture://{name}/items/42"  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", MODES)
async def test_mcp_param_headers_reach_a_2026_upstream_whatever_the_client_speaks(
    proxies: dict[str, RunningProxy], mode: str
) -> None:
    # The dual-era upstream refuses a tools/call whose Mcp-Param-Region header is missing or wrong.
    async with _client(proxies["dual"].url, mode) as client:
        result = await client.call_tool("f_route", {"region": "eu-west-1"})
    assert result.content[0].text == "region eu-west-1"  # type: ignore[union-attr]


async def test_mcp_param_headers_that_disagree_with_the_arguments_are_refused(
    proxies: dict[str, RunningProxy],
) -> None:
    call = _tool_call("f_route", {"region": "eu"}, meta=MODERN_META)
    async with aiohttp.ClientSession() as http:
        wrong = {**_modern_headers("tools/call", "f_route"), "Mcp-Param-Region": "us"}
        status, _, body = await _post(http, proxies["dual"].url, call, wrong)
        assert (status, body["error"]["code"]) == (400, -32020)
        right = {**_modern_headers("tools/call", "f_route"), "Mcp-Param-Region": "eu"}
        status, _, body = await _post(http, proxies["dual"].url, call, right)
        assert status == 200 and body["result"]["content"][0]["text"] == "region eu"


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_two_mib_result_arrives_whole(proxies: dict[str, RunningProxy], mode: str) -> None:
    async with _client(proxies["dual"].url, mode) as client:
        result = await client.call_tool("f_big", {})
    assert len(result.content[0].text) == 2 * 1024 * 1024  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", MODES)
async def test_a_tool_the_filter_hides_cannot_be_called(proxies: dict[str, RunningProxy], mode: str) -> None:
    async with _client(proxies["dual"].url, mode) as client:
        for name in ("f_secret_admin", "secret_admin", "f_no_such_tool"):
            with pytest.raises(MCPError) as refused:
                await client.call_tool(name, {})
            assert refused.value.error.code == -32602
            assert name in refused.value.error.message


# ------------------------------------------------------------------------------ raw HTTP: the spec


async def _post(
    http: aiohttp.ClientSession,
    url: str,
    body: Any,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, dict[str, str], Any]:
    sent = {"Content-Type": "application/json", "Accept": ACCEPT, **(headers or {})}
    data = raw if raw is not None else orjson.dumps(body)
    async with http.post(url, data=data, headers=sent) as response:
        text = await response.read()
        if response.content_type == "text/event-stream":
            events = [line[6:] for line in text.decode().splitlines() if line.startswith("data: ")]
            return response.status, dict(response.headers), orjson.loads(events[-1])
        return response.status, dict(response.headers), orjson.loads(text) if text else None


def _modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    headers = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method}
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


def _tool_call(name: Any, arguments: Any = None, *, request_id: int = 1, meta: Any = None) -> dict[str, Any]:
    """A tools/call message; ``meta`` (e.g. ``MODERN_META``) makes it a 2026-07-28 one."""
    params: dict[str, Any] = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def _init(request_id: int = 1, version: str = "2025-11-25", capabilities: Any = None) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": capabilities or {},
            "clientInfo": {"name": "e2e", "version": "1"},
        },
    }


async def _session(http: aiohttp.ClientSession, url: str) -> str:
    status, headers, body = await _post(http, url, _init())
    assert status == 200, body
    return headers["Mcp-Session-Id"]


async def test_transport_errors_have_the_status_codes_the_spec_names(
    proxies: dict[str, RunningProxy],
) -> None:
    url = proxies["dual"].url
    tools_list = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": MODERN_META}}
    async with aiohttp.ClientSession() as http:
        # 400: a version nobody serves, with the supported ones named.
        future = {**MODERN_META, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}
        status, _, body = await _post(
            http,
            url,
            {**tools_list, "params": {"_meta": future}},
            {"MCP-Protocol-Version": "2099-01-01", "Mcp-Method": "tools/list"},
        )
        assert status == 400 and body["error"]["code"] == -32022
        assert "2026-07-28" in body["error"]["data"]["supported"]
        # 400: headers that disagree with the body.
        status, _, body = await _post(http, url, tools_list, _modern_headers("tools/call"))
        assert (status, body["error"]["code"]) == (400, -32020)
        call = _tool_call("f_echo", request_id=2, meta=MODERN_META)
        status, _, body = await _post(http, url, call, _modern_headers("tools/call", "f_add"))
        assert (status, body["error"]["code"]) == (400, -32020)
        # 400: no envelope.
        bare = {"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {}}
        status, _, body = await _post(http, url, bare, _modern_headers("tools/list"))
        assert (status, body["error"]["code"]) == (400, -32602)
        # 400: an envelope whose capabilities are not an object.
        odd = {
            **tools_list,
            "params": {"_meta": {**MODERN_META, "io.modelcontextprotocol/clientCapabilities": []}},
        }
        status, _, body = await _post(http, url, odd, _modern_headers("tools/list"))
        assert (status, body["error"]["code"]) == (400, -32602)
        # 404: unknown method at 2026-07-28; -32601 in a session.
        unknown = {"jsonrpc": "2.0", "id": 4, "method": "nope/nope", "params": {"_meta": MODERN_META}}
        status, _, body = await _post(http, url, unknown, _modern_headers("nope/nope"))
        assert (status, body["error"]["code"]) == (404, -32601)
        # 400: parse error; 415: not JSON; 406: Accept without SSE; 405: PUT; 413: too large.
        status, _, body = await _post(http, url, None, raw=b"{not json")
        assert (status, body["error"]["code"]) == (400, -32700)
        async with http.post(url, data=b"x", headers={"Content-Type": "text/plain", "Accept": ACCEPT}) as r:
            assert r.status == 415
        status, _, body = await _post(http, url, _init(), {"Accept": "application/json"})
        assert status == 406
        async with http.put(url, data=b"{}") as r:
            assert r.status == 405 and "POST" in r.headers["Allow"]
        status, _, body = await _post(http, url, None, raw=b"[" + b"1," * (5 * 1024 * 1024) + b"1]")
        assert status == 413
        # 403: a foreign Origin; the proxy's own host is fine.
        status, _, _ = await _post(http, url, _init(), {"Origin": "https://evil.example"})
        assert status == 403
        status, _, _ = await _post(http, url, _init(), {"Origin": proxies["dual"].base})
        assert status == 200
        # Session era: 400 without a session, 404 for a tampered one, -32602 for wrong params.
        listing = {"jsonrpc": "2.0", "id": 5, "method": "tools/list"}
        status, _, _ = await _post(http, url, listing)
        assert status == 400
        session = await _session(http, url)
        tampered = session[:-2] + ("AA" if session[-2:] != "AA" else "BB")
        status, _, body = await _post(http, url, listing, {"Mcp-Session-Id": tampered})
        assert status == 404
        bad_call = _tool_call(7, request_id=6)
        status, _, body = await _post(http, url, bad_call, {"Mcp-Session-Id": session})
        assert status == 200 and body["error"]["code"] == -32602
        status, _, body = await _post(
            http, url, {"jsonrpc": "2.0", "id": 7, "method": "x/y"}, {"Mcp-Session-Id": session}
        )
        assert body["error"]["code"] == -32601
        # GET and DELETE: the session's stream needs SSE; DELETE ends the session here.
        async with http.get(url, headers={"Accept": "application/json", "Mcp-Session-Id": session}) as r:
            assert r.status == 406
        async with http.delete(url, headers={"Mcp-Session-Id": session}) as r:
            assert r.status == 200
        status, _, _ = await _post(http, url, listing, {"Mcp-Session-Id": session})
        assert status == 404


async def test_any_replica_continues_any_session(work: Path, upstreams: dict[str, HttpPeer]) -> None:
    """Two proxies with one key ring stand for two replicas behind a Service with no stickiness."""
    env = {"AGENTKUBE_SESSION_KEYS": KEYS}
    config = [http_upstream("f", upstreams["legacy"].url, toolPrefix="f_")]
    sessions = {"keysEnv": "AGENTKUBE_SESSION_KEYS"}
    with (
        run_proxy(work, config, env=env, sessions=sessions) as a,
        run_proxy(work, config, env=env, sessions=sessions) as b,
    ):
        urls = [a.url, b.url]
        async with aiohttp.ClientSession() as http:
            status, headers, _ = await _post(http, urls[0], _init(capabilities={"elicitation": {}}))
            session = {"Mcp-Session-Id": headers["Mcp-Session-Id"]}
            status, _, _ = await _post(
                http, urls[1], {"jsonrpc": "2.0", "method": "notifications/initialized"}, session
            )
            assert status == 202
            for i in range(6):
                call = _tool_call("f_echo", {"text": str(i)}, request_id=10 + i)
                status, _, body = await _post(http, urls[i % 2], call, session)
                assert status == 200 and body["result"]["content"][0]["text"] == str(i)
            # The upstream asks mid-call on A's stream; the client's answer is posted to B.
            ask = _tool_call("f_ask", {}, request_id=99)
            sent = {"Content-Type": "application/json", "Accept": ACCEPT, **session}
            async with http.post(urls[0], data=orjson.dumps(ask), headers=sent) as stream:
                assert stream.content_type == "text/event-stream"
                final = None
                async for line in stream.content:
                    if not line.startswith(b"data: "):
                        continue
                    message = orjson.loads(line[6:])
                    if message.get("method") == "elicitation/create":
                        answer = {
                            "jsonrpc": "2.0",
                            "id": message["id"],
                            "result": {"action": "accept", "content": {"name": "bee"}},
                        }
                        status, _, _ = await _post(http, urls[1], answer, session)
                        assert status == 202
                    elif message.get("id") == 99:
                        final = message
                        break
            assert final is not None and final["result"]["content"][0]["text"] == "hello bee"


async def test_a_rotated_key_ring_keeps_old_sessions_and_seals_new_ones(
    work: Path, upstreams: dict[str, HttpPeer]
) -> None:
    """The Secret rewritten to ``k2:<new>,k1:<old>``: pods with the new ring open ids the old pods
    sealed; once the old key is dropped, those ids are refused (404) and clients start again."""
    new_key = "k2:" + "B" * 43 + "="
    config = [http_upstream("f", upstreams["legacy"].url)]
    sessions = {"keysEnv": "AGENTKUBE_SESSION_KEYS"}
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    with (
        run_proxy(work, config, env={"AGENTKUBE_SESSION_KEYS": KEYS}, sessions=sessions) as old,
        run_proxy(
            work, config, env={"AGENTKUBE_SESSION_KEYS": f"{new_key},{KEYS}"}, sessions=sessions
        ) as rotated,
        run_proxy(work, config, env={"AGENTKUBE_SESSION_KEYS": new_key}, sessions=sessions) as dropped,
    ):
        async with aiohttp.ClientSession() as http:
            sealed_by_old = {"Mcp-Session-Id": await _session(http, old.url)}
            status, _, body = await _post(http, rotated.url, listing, sealed_by_old)
            assert status == 200 and body["result"]["tools"]
            sealed_by_new = {"Mcp-Session-Id": await _session(http, rotated.url)}
            status, _, _ = await _post(http, dropped.url, listing, sealed_by_new)
            assert status == 200
            status, _, _ = await _post(http, old.url, listing, sealed_by_new)
            assert status == 404  # an old pod does not know the new key
            status, _, _ = await _post(http, dropped.url, listing, sealed_by_old)
            assert status == 404


async def test_client_credentials_never_reach_the_upstream(work: Path) -> None:
    with run_fixture(work, name="guarded", token="upstream-token") as guarded:
        upstream = http_upstream(
            "g", guarded.url, auth={"mode": "bearer", "secretEnv": "AGENTKUBE_UPSTREAM_G_SECRET"}
        )
        with run_proxy(work, [upstream], env={"AGENTKUBE_UPSTREAM_G_SECRET": "upstream-token"}) as proxy:
            async with aiohttp.ClientSession() as http:
                # The fixture answers 401 to any other bearer: had the proxy forwarded the client's,
                # this would fail.
                status, headers, _ = await _post(
                    http, proxy.url, _init(), {"Authorization": "Bearer client-token"}
                )
                assert status == 200
                session = {
                    "Mcp-Session-Id": headers["Mcp-Session-Id"],
                    "Authorization": "Bearer client-token",
                }
                call = _tool_call("echo", {"text": "hi"}, request_id=2)
                status, _, body = await _post(http, proxy.url, call, session)
                assert body["result"]["content"][0]["text"] == "hi"
        log = proxy.peer.log_path.read_text()
        assert "upstream-token" not in log and "client-token" not in log


async def _next_event(stream: aiohttp.ClientResponse, within: float) -> dict[str, Any] | None:
    try:
        async with asyncio.timeout(within):
            async for line in stream.content:
                if line.startswith(b"data: "):
                    message: dict[str, Any] = orjson.loads(line[6:])
                    return message
    except TimeoutError:
        return None
    return None


async def _slow_call_started(http: aiohttp.ClientSession, url: str, seconds: float) -> aiohttp.ClientResponse:
    """POST a 2026-07-28 ``slow`` call and return its open response once the upstream has begun it
    (its first progress notification arrived), so a test acts on a call known to be in flight."""
    call = _tool_call("slow", {"seconds": seconds}, meta={**MODERN_META, "progressToken": "p"})
    headers = {"Content-Type": "application/json", "Accept": ACCEPT, **_modern_headers("tools/call", "slow")}
    response = await http.post(url, data=orjson.dumps(call), headers=headers)
    assert response.content_type == "text/event-stream"
    first = await _next_event(response, 30.0)
    assert first is not None and first["method"] == "notifications/progress"
    return response


async def _final_event(response: aiohttp.ClientResponse) -> dict[str, Any] | None:
    last = None
    async for line in response.content:
        if line.startswith(b"data: "):
            last = orjson.loads(line[6:])
    return last


@pytest.mark.parametrize("filtered", [False, True], ids=["visible-change", "hidden-change"])
async def test_list_changed_is_passed_on_only_when_the_visible_surface_changes(
    work: Path, filtered: bool
) -> None:
    tools = {"mode": "deny", "deny": ["extra"]} if filtered else None
    with run_fixture(work, name="growing", legacy_only=True) as fixture:
        upstream = http_upstream("g", fixture.url, **({"tools": tools} if tools else {}))
        with run_proxy(work, [upstream]) as proxy:
            async with aiohttp.ClientSession() as http:
                session = {"Mcp-Session-Id": await _session(http, proxy.url)}
                headers = {"Accept": "text/event-stream", **session}
                async with http.get(proxy.url, headers=headers) as stream:
                    assert stream.status == 200
                    grow = _tool_call("grow", request_id=3)
                    await _post(http, proxy.url, grow, session)
                    # Within the deadline a visible change arrives; a hidden one never does (the
                    # deadline passing is the pass, so it is kept short).
                    event = await _next_event(stream, 3.0 if filtered else 15.0)
                listing = {"jsonrpc": "2.0", "id": 4, "method": "tools/list"}
                _, _, body = await _post(http, proxy.url, listing, session)
                names = {t["name"] for t in body["result"]["tools"]}
    if filtered:
        assert event is None and "extra" not in names
    else:
        assert event == {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
        assert "extra" in names


async def test_an_upstream_that_lost_the_session_makes_the_client_start_again(work: Path) -> None:
    port = free_port()
    with (
        run_fixture(work, name="restarting", legacy_only=True, port=port) as first,
        run_proxy(work, [http_upstream("r", first.url)]) as proxy,
    ):
        async with aiohttp.ClientSession() as http:
            session = {"Mcp-Session-Id": await _session(http, proxy.url)}
            first.process.send_signal(signal.SIGKILL)
            first.process.wait(10)
            with run_fixture(work, name="restarting", legacy_only=True, port=port):
                call = _tool_call("echo", {"text": "x"}, request_id=2)
                deadline = time.monotonic() + 30
                while True:  # until the proxy has reconnected: before, the upstream is just down
                    status, _, body = await _post(http, proxy.url, call, session)
                    if status != 200 or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                assert status == 404  # the upstream forgot the session: so does the client
                while True:  # a new session works once the proxy has reconnected itself
                    status, headers, _ = await _post(http, proxy.url, _init())
                    fresh = {"Mcp-Session-Id": headers.get("Mcp-Session-Id", "")}
                    status, _, body = await _post(http, proxy.url, call, fresh)
                    if "result" in (body or {}) or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                assert body["result"]["content"][0]["text"] == "x"


async def test_upstream_killed_mid_call_fails_the_call_and_the_next_call_succeeds(work: Path) -> None:
    port = free_port()
    with (
        run_fixture(work, name="dying", port=port) as fixture,
        run_proxy(work, [http_upstream("d", fixture.url)]) as proxy,
    ):
        async with aiohttp.ClientSession() as http:
            response = await _slow_call_started(http, proxy.url, 30)
            fixture.process.send_signal(signal.SIGKILL)
            async with asyncio.timeout(10):
                final = await _final_event(response)
            response.release()
        assert final is not None and final["error"]["code"] == -32603, (final, proxy.peer.log_tail())
        with run_fixture(work, name="dying", port=port):
            deadline = time.monotonic() + 30
            async with _client(proxy.url, "2026-07-28") as client:
                while True:
                    try:
                        result = await client.call_tool("echo", {"text": "back"})
                        break
                    except MCPError as e:
                        if time.monotonic() > deadline:
                            raise AssertionError(f"{e}\n{proxy.peer.log_tail()}") from e
                        await asyncio.sleep(0.2)
            assert result.content[0].text == "back"  # type: ignore[union-attr]


async def _in_log(peer: HttpPeer, text: str, within: float = 20.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if text in await asyncio.to_thread(peer.log_path.read_text, errors="replace"):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_cancellation_reaches_the_upstream_in_both_eras(work: Path) -> None:
    """Session era: the client's notifications/cancelled, posted to either replica; 2026-07-28: the
    client closing its stream. Each time the server's handler is cancelled."""
    env = {"AGENTKUBE_SESSION_KEYS": KEYS}
    sessions = {"keysEnv": "AGENTKUBE_SESSION_KEYS"}
    with (
        run_fixture(work, name="cancelled", legacy_only=False) as fixture,
        run_fixture(work, name="cancelled-legacy", legacy_only=True) as legacy,
    ):
        config = [http_upstream("d", fixture.url), http_upstream("l", legacy.url, toolPrefix="l_")]
        with (
            run_proxy(work, config, env=env, sessions=sessions) as a,
            run_proxy(work, config, env=env, sessions=sessions) as b,
        ):
            async with aiohttp.ClientSession() as http:
                session = {"Mcp-Session-Id": await _session(http, a.url)}
                for tag, holder, canceller in (("same-replica", a, a), ("other-replica", a, b)):
                    call = _tool_call("l_slow", {"seconds": 60, "tag": tag}, request_id=tag)
                    sent = {"Content-Type": "application/json", "Accept": ACCEPT, **session}
                    call["params"]["_meta"] = {"progressToken": tag}
                    async with http.post(holder.url, data=orjson.dumps(call), headers=sent) as stream:
                        first = await _next_event(stream, 30.0)
                        assert first is not None and first["method"] == "notifications/progress"
                        cancel = {
                            "jsonrpc": "2.0",
                            "method": "notifications/cancelled",
                            "params": {"requestId": tag, "reason": "test"},
                        }
                        status, _, _ = await _post(http, canceller.url, cancel, session)
                        assert status == 202
                        assert await _in_log(legacy, f"slow cancelled: {tag}"), legacy.log_tail()
                response = await _slow_call_started(http, a.url, 60)
                response.close()  # a 2026-07-28 client cancels by closing its stream
                assert await _in_log(fixture, "slow cancelled: "), fixture.log_tail()


async def test_a_slow_upstream_times_out_with_a_clear_error(
    work: Path, upstreams: dict[str, HttpPeer]
) -> None:
    limits = {"callTimeoutSeconds": 1}
    with run_proxy(work, [http_upstream("s", upstreams["dual"].url)], limits=limits) as proxy:
        async with _client(proxy.url, "2026-07-28") as client:
            started = time.monotonic()
            with pytest.raises(MCPError) as timed_out:
                await client.call_tool("slow", {"seconds": 20})
            assert time.monotonic() - started < 10
            assert timed_out.value.error.code == -32001 and "1 s" in timed_out.value.error.message
            assert (await client.call_tool("echo", {"text": "still here"})).content[0].text == "still here"  # type: ignore[union-attr]


async def test_name_collision_goes_to_the_first_upstream_and_is_reported(
    work: Path, upstreams: dict[str, HttpPeer]
) -> None:
    config = [http_upstream("first", upstreams["dual"].url), http_upstream("second", upstreams["legacy"].url)]
    with run_proxy(work, config) as proxy:
        async with _client(proxy.url, "legacy") as client:
            names = [t.name for t in (await client.list_tools()).tools]
            assert names.count("echo") == 1
            resources = sorted(str(r.uri) for r in (await client.list_resources()).resources)
            assert resources == ["fixture://fixture/readme", "fixture://legacy/readme"]
            read = await client.read_resource("fixture://legacy/readme")  # routed by who listed it
            assert read.contents[0].text == "contents of fixture://legacy/readme"  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as http, http.get(proxy.metrics_url) as response:
            metrics = await response.text()
    assert (
        'agentkube_mcp_name_collisions{hidden="second",kind="tools",name="echo",winner="first"} 1.0'
        in metrics
    )
    assert "name exposed by two upstreams" in proxy.peer.log_path.read_text()


async def test_an_mcp_ref_chain_answers_through_both_proxies(
    work: Path, upstreams: dict[str, HttpPeer]
) -> None:
    with run_proxy(work, [http_upstream("f", upstreams["dual"].url, toolPrefix="inner_")]) as inner:
        chained = http_upstream("inner", inner.base + "/", mcpRef="e2e/inner", toolPrefix="outer_")
        with run_proxy(work, [chained]) as outer:
            for mode in MODES:
                async with _client(outer.url, mode) as client:
                    result = await client.call_tool("outer_inner_echo", {"text": mode})
                    assert result.content[0].text == mode  # type: ignore[union-attr]
                    asked = await client.call_tool("outer_inner_ask", {})
                    assert asked.content[0].text == "hello ada"  # type: ignore[union-attr]


async def test_an_unreachable_upstream_is_retried_while_the_others_are_served(
    work: Path, upstreams: dict[str, HttpPeer]
) -> None:
    late = free_port()
    config = [
        http_upstream("late", f"http://127.0.0.1:{late}/mcp", toolPrefix="late_"),
        http_upstream("now", upstreams["dual"].url, toolPrefix="now_"),
    ]
    with run_proxy(work, config, listed=False) as proxy:
        async with _client(proxy.url, "2026-07-28") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            deadline = time.monotonic() + 30
            while "now_echo" not in names and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                names = {t.name for t in (await client.list_tools()).tools}
            assert "now_echo" in names and not any(n.startswith("late_") for n in names)
            with run_fixture(work, name="late", port=late):
                deadline = time.monotonic() + 60
                while "late_echo" not in names and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                    names = {t.name for t in (await client.list_tools()).tools}
                assert "late_echo" in names
                assert (await client.call_tool("late_echo", {"text": "l"})).content[0].text == "l"  # type: ignore[union-attr]


async def test_sigterm_lets_a_call_in_flight_finish_then_exits(
    work: Path, upstreams: dict[str, HttpPeer]
) -> None:
    with run_proxy(work, [http_upstream("f", upstreams["dual"].url)]) as proxy:
        async with aiohttp.ClientSession() as http:
            response = await _slow_call_started(http, proxy.url, 2)
            proxy.peer.process.send_signal(signal.SIGTERM)
            final = await _final_event(response)
            response.release()
        assert final is not None and final["result"]["content"][0]["text"] == "slept"
        code = await asyncio.to_thread(proxy.peer.process.wait, 20)
    assert code == 0


async def test_metrics_are_on_their_own_port(proxies: dict[str, RunningProxy]) -> None:
    proxy = proxies["dual"]
    async with _client(proxy.url, "legacy") as client:
        await client.call_tool("f_echo", {"text": "m"})
    async with aiohttp.ClientSession() as http:
        async with http.get(proxy.metrics_url) as response:
            text = await response.text()
        async with http.get(proxy.base + "/metrics") as response:
            assert response.status == 404
    for series in (
        'agentkube_mcp_tool_calls_total{result="ok",tool="f_echo",upstream="f"}',
        'agentkube_mcp_upstream_up{upstream="f"} 1.0',
        'agentkube_mcp_sessions_started_total{version="2025-11-25"}',
        'agentkube_mcp_upstream_items{kind="tools",upstream="f"} 129.0',
        "agentkube_mcp_request_duration_seconds_bucket",
    ):
        assert series in text, series


# ---------------------------------------------------------------------------------------- fuzzing

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
messages = st.fixed_dictionaries(
    {
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
        "method": st.text(max_size=20)
        | st.sampled_from(
            ["tools/call", "tools/list", "initialize", "resources/read", "prompts/get", "server/discover"]
        ),
    },
    optional={"id": st.integers() | st.text(max_size=5) | st.none(), "params": json_values},
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(json_values, messages), modern=st.booleans(), junk=st.binary(max_size=64))
def test_fuzzed_bodies_get_json_rpc_answers_and_never_wedge_the_proxy(
    proxies: dict[str, RunningProxy], body: Any, modern: bool, junk: bytes
) -> None:
    async def exchange() -> None:
        url = proxies["dual"].url
        method = body.get("method") if isinstance(body, dict) else None
        sendable = (
            isinstance(method, str) and method.isascii() and method.isprintable() and method.strip() == method
        )
        headers = _modern_headers(str(method) if sendable and method else "x") if modern else {}
        async with aiohttp.ClientSession() as http:
            for raw in (json.dumps(body).encode(), junk):
                async with asyncio.timeout(10):
                    status, _, answer = await _post(http, url, None, headers, raw=raw)
                assert status in (200, 202, 400, 404), (status, answer)
                if answer is not None:
                    assert answer.get("jsonrpc") == "2.0" and ("error" in answer or "result" in answer)

    asyncio.run(exchange())
    assert proxies["dual"].peer.process.poll() is None


def test_fuzzing_left_the_proxy_serving(proxies: dict[str, RunningProxy]) -> None:
    async def still() -> str:
        async with _client(proxies["dual"].url, "legacy") as client:
            result = await client.call_tool("f_echo", {"text": "alive"})
        return str(result.content[0].text)  # type: ignore[union-attr]

    assert asyncio.run(still()) == "alive"
    assert os.path.exists(proxies["dual"].config_path)


async def test_traces_go_to_the_otlp_endpoint_as_children_of_the_clients_trace(
    work: Path, upstreams: dict[str, HttpPeer]
) -> None:
    """An OTLP/HTTP receiver on loopback decodes what the proxy exports with the protocol's own
    protobuf types; the client's W3C trace context (in ``_meta``, as MCP carries it) is the parent."""
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with collecting(trace_id) as otlp:
        with run_proxy(
            work, [http_upstream("f", upstreams["dual"].url, toolPrefix="f_")], env=otlp.env
        ) as proxy:
            meta = {**MODERN_META, "traceparent": f"00-{trace_id}-{parent_id}-01"}
            call = _tool_call("f_echo", {"text": "do-not-trace-me"}, meta=meta)
            async with aiohttp.ClientSession() as http:
                status, _, body = await _post(http, proxy.url, call, _modern_headers("tools/call", "f_echo"))
            assert status == 200 and body["result"]["content"][0]["text"] == "do-not-trace-me"
            await otlp.wait(20)
    ours = {s.name: s for s in otlp.of_trace()}
    server, client = ours["tools/call f_echo"], ours["tools/call upstream"]
    assert server.parent_span_id.hex() == parent_id
    assert client.parent_span_id == server.span_id
    attributes = {a.key: a.value.string_value for s in (server, client) for a in s.attributes}
    assert attributes["gen_ai.tool.name"] == "f_echo" and attributes["mcp.upstream"] == "f"
    assert "do-not-trace-me" not in str(otlp.spans)
