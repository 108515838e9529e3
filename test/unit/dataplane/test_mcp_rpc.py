"""The shared JSON-RPC peer (ids, progress tokens, routing, bounds) and the event-stream parser.

The peer is driven through its two ends only: the ``send`` it is given (collected here) and the
messages fed to it, as a stdio child or an SSE stream would.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from agentkube.dataplane.mcp.config import HttpAuth
from agentkube.dataplane.mcp.events import SseEvent, SseParser
from agentkube.dataplane.mcp.http import auth_headers
from agentkube.dataplane.mcp.rpc import (
    Backoff,
    LogBudget,
    RpcPeer,
)
from agentkube.dataplane.mcp.sse import resolve_endpoint
from agentkube.dataplane.mcp.upstream import (
    PROXY_CAPABILITIES,
    ClientContext,
    Exchange,
    Message,
    UpstreamError,
    UpstreamTimeout,
)
from agentkube.dataplane.mcp.wire import INTERNAL_ERROR, METHOD_NOT_FOUND
from agentkube.dataplane.mcp.wire import LATEST_HANDSHAKE as PROTOCOL_VERSION
from agentkube.testing import eventually

SAMPLING_CLIENT = ClientContext(capabilities={"sampling": {}, "elicitation": {}, "roots": {}})


class Wire:
    """The connection's far end: what the peer sent, in order."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def with_method(self, method: str) -> list[Message]:
        return [m for m in self.sent if m.get("method") == method]

    def answers(self) -> list[Message]:
        return [m for m in self.sent if "method" not in m]

    async def request(self, method: str, index: int = 0) -> Message:
        async def found() -> Message | None:
            matching = self.with_method(method)
            return matching[index] if len(matching) > index else None

        found_message: Message = await eventually(found, f"the peer sent {method} #{index}", within=5)
        return found_message

    async def answer(self, rid: Any) -> Message:
        async def found() -> Message | None:
            return next((m for m in self.answers() if m.get("id") == rid), None)

        message: Message = await eventually(found, f"the peer answered server request {rid!r}", within=5)
        return message


class Inbox:
    """An ``on_message`` that keeps what it is handed."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)


def peer_on(wire: Wire, **options: Any) -> RpcPeer:
    return RpcPeer("test", wire.send, **options)


def start(
    peer: RpcPeer, method: str, params: dict[str, Any] | None, exchange: Exchange
) -> asyncio.Task[Message]:
    return asyncio.get_running_loop().create_task(peer.request(method, params, exchange))


def result(rid: Any, value: Any = None) -> Message:
    return {"jsonrpc": "2.0", "id": rid, "result": value if value is not None else {}}


async def test_assigns_its_own_ids_and_maps_each_response_to_its_request() -> None:
    wire = Wire()
    peer = peer_on(wire)
    first = start(peer, "tools/call", {"name": "a"}, Exchange())
    second = start(peer, "tools/call", {"name": "b"}, Exchange())
    sent_a, sent_b = await wire.request("tools/call", 0), await wire.request("tools/call", 1)
    assert sent_a["id"] != sent_b["id"]
    assert {sent_a["params"]["name"], sent_b["params"]["name"]} == {"a", "b"}
    # Answered in the other order, each still gets its own.
    peer.feed(orjson.dumps(result(sent_b["id"], {"who": sent_b["params"]["name"]})))
    peer.feed(orjson.dumps(result(sent_a["id"], {"who": sent_a["params"]["name"]})))
    answers = {(await first)["result"]["who"], (await second)["result"]["who"]}
    assert answers == {"a", "b"}
    assert (await first)["result"]["who"] == "a"
    assert peer.in_flight == 0


async def test_two_clients_with_the_same_progress_token_each_get_their_own_progress() -> None:
    wire = Wire()
    peer = peer_on(wire)
    inboxes = [Inbox(), Inbox()]
    params = {"name": "slow", "_meta": {"progressToken": "t"}}
    tasks = [start(peer, "tools/call", params, Exchange(on_message=inbox)) for inbox in inboxes]
    sent = [await wire.request("tools/call", i) for i in range(2)]
    tokens = [m["params"]["_meta"]["progressToken"] for m in sent]
    assert tokens[0] != tokens[1]
    assert "t" not in tokens
    assert params["_meta"] == {"progressToken": "t"}, "the caller's params are not changed"
    for n, (message, token) in enumerate(zip(sent, tokens, strict=True)):
        progress = {"progressToken": token, "progress": n + 1, "total": 2}
        peer.receive({"jsonrpc": "2.0", "method": "notifications/progress", "params": progress})
        peer.receive(result(message["id"]))
    await asyncio.gather(*tasks)
    for n, inbox in enumerate(inboxes):
        assert [m["params"] for m in inbox.messages] == [
            {"progressToken": "t", "progress": n + 1, "total": 2}
        ]


async def test_progress_keeps_the_client_token_type_and_ignores_unknown_tokens() -> None:
    wire = Wire()
    peer = peer_on(wire)
    inbox = Inbox()
    task = start(peer, "tools/call", {"_meta": {"progressToken": 7}}, Exchange(on_message=inbox))
    sent = await wire.request("tools/call")
    token = sent["params"]["_meta"]["progressToken"]
    peer.receive({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 7}})
    peer.receive({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token}})
    peer.receive(result(sent["id"]))
    await task
    assert [m["params"]["progressToken"] for m in inbox.messages] == [7]


async def test_messages_reach_on_message_in_order_before_the_response() -> None:
    wire = Wire()
    peer = peer_on(wire)
    order: list[str] = []

    async def slow_client(message: Message) -> None:
        await asyncio.sleep(0)
        order.append(message["params"]["data"])

    task = start(peer, "tools/call", {}, Exchange(on_message=slow_client))
    sent = await wire.request("tools/call")
    for n in range(5):
        peer.receive({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": str(n)}})
    peer.receive(result(sent["id"], {"done": True}))
    assert (await task)["result"] == {"done": True}
    assert order == ["0", "1", "2", "3", "4"]


async def test_logging_goes_to_the_named_request_else_the_only_one_else_nowhere() -> None:
    wire = Wire()
    peer = peer_on(wire)
    a, b = Inbox(), Inbox()
    task_a = start(peer, "tools/call", {}, Exchange(on_message=a))
    sent_a = await wire.request("tools/call")

    def log_line(data: str, related: Any = None) -> Message:
        params: dict[str, Any] = {"level": "info", "data": data}
        if related is not None:
            params["_meta"] = {"relatedRequestId": related}
        return {"jsonrpc": "2.0", "method": "notifications/message", "params": params}

    peer.receive(log_line("only a is in flight"))
    task_b = start(peer, "tools/call", {}, Exchange(on_message=b))
    sent_b = await wire.request("tools/call", 1)
    peer.receive(log_line("two in flight, names none"))
    peer.receive(log_line("names b", sent_b["id"]))
    peer.receive(result(sent_a["id"]))
    peer.receive(result(sent_b["id"]))
    await asyncio.gather(task_a, task_b)
    assert [m["params"]["data"] for m in a.messages] == ["only a is in flight"]
    assert [m["params"]["data"] for m in b.messages] == ["names b"]


async def test_the_proxys_own_requests_do_not_count_as_someone_to_route_to() -> None:
    wire = Wire()
    peer = peer_on(wire)
    client = Inbox()
    refresh = start(peer, "tools/list", None, Exchange())
    call = start(peer, "tools/call", {}, Exchange(on_message=client, client=SAMPLING_CLIENT))
    await wire.request("tools/call")
    peer.receive({"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage", "params": {}})
    await eventually(lambda: client.messages, "the sampling request reached the client", within=5)
    assert client.messages[0]["id"] == "s1"
    refresh.cancel()
    call.cancel()
    await asyncio.gather(refresh, call, return_exceptions=True)


async def test_server_request_routed_by_related_request_id_and_its_reply_sent_as_is() -> None:
    wire = Wire()
    peer = peer_on(wire)
    a, b = Inbox(), Inbox()
    task_a = start(peer, "tools/call", {}, Exchange(on_message=a, client=SAMPLING_CLIENT))
    task_b = start(peer, "tools/call", {}, Exchange(on_message=b, client=SAMPLING_CLIENT))
    sent_b = await wire.request("tools/call", 1)
    await wire.request("tools/call", 0)
    server_request = {
        "jsonrpc": "2.0",
        "id": 99,
        "method": "elicitation/create",
        "params": {"message": "sure?", "_meta": {"relatedRequestId": sent_b["id"]}},
    }
    peer.receive(server_request)
    await eventually(lambda: b.messages, "b got the elicitation", within=5)
    assert b.messages == [server_request]
    assert a.messages == []
    reply = {"jsonrpc": "2.0", "id": 99, "result": {"action": "accept"}}
    await peer.reply(reply)
    assert wire.sent[-1] == reply
    task_a.cancel()
    task_b.cancel()
    await asyncio.gather(task_a, task_b, return_exceptions=True)


@pytest.mark.parametrize(
    ("in_flight", "related", "capabilities", "why"),
    [
        (0, None, {"sampling": {}}, "no client request is in flight"),
        (2, None, {"sampling": {}}, "2 client requests are in flight"),
        (1, 12345, {"sampling": {}}, "relatedRequestId 12345 names no request in flight"),
        (1, None, {}, "did not declare the sampling capability"),
    ],
)
async def test_a_server_request_that_cannot_be_relayed_is_answered_with_method_not_found(
    in_flight: int, related: Any, capabilities: dict[str, Any], why: str
) -> None:
    wire = Wire()
    peer = peer_on(wire)
    inboxes = [Inbox() for _ in range(in_flight)]
    client = ClientContext(capabilities=capabilities)
    tasks = [start(peer, "tools/call", {}, Exchange(on_message=i, client=client)) for i in inboxes]
    for n in range(in_flight):
        await wire.request("tools/call", n)
    params: dict[str, Any] = {"messages": []}
    if related is not None:
        params["_meta"] = {"relatedRequestId": related}
    peer.receive({"jsonrpc": "2.0", "id": "srv-1", "method": "sampling/createMessage", "params": params})
    answer = await wire.answer("srv-1")
    assert answer["error"]["code"] == METHOD_NOT_FOUND
    assert why in answer["error"]["message"]
    assert "sampling/createMessage" in answer["error"]["message"]
    assert all(not i.messages for i in inboxes)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_server_request_naming_a_request_without_a_client_is_refused() -> None:
    wire = Wire()
    peer = peer_on(wire)
    task = start(peer, "tools/list", None, Exchange())
    sent = await wire.request("tools/list")
    params = {"_meta": {"relatedRequestId": sent["id"]}}
    peer.receive({"jsonrpc": "2.0", "id": 5, "method": "roots/list", "params": params})
    answer = await wire.answer(5)
    assert answer["error"]["code"] == METHOD_NOT_FOUND
    assert "no client to ask" in answer["error"]["message"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_unknown_server_requests_are_relayed_without_a_capability_check() -> None:
    wire = Wire()
    peer = peer_on(wire)
    inbox = Inbox()
    task = start(peer, "tools/call", {}, Exchange(on_message=inbox))
    await wire.request("tools/call")
    peer.receive({"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {}})
    await eventually(lambda: inbox.messages, "the request reached the client", within=5)
    assert inbox.messages[0]["method"] == "tasks/get"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_ping_from_the_server_is_answered_by_the_peer() -> None:
    wire = Wire()
    peer = peer_on(wire)
    peer.receive({"jsonrpc": "2.0", "id": "ping-1", "method": "ping"})
    assert await wire.answer("ping-1") == {"jsonrpc": "2.0", "id": "ping-1", "result": {}}


async def test_server_cancelling_its_own_request_reaches_the_client_it_was_relayed_to() -> None:
    wire = Wire()
    peer = peer_on(wire)
    inbox = Inbox()
    task = start(peer, "tools/call", {}, Exchange(on_message=inbox, client=SAMPLING_CLIENT))
    sent = await wire.request("tools/call")
    peer.receive({"jsonrpc": "2.0", "id": 3, "method": "sampling/createMessage", "params": {}})
    cancelled = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}}
    peer.receive(cancelled)
    peer.receive(result(sent["id"]))
    await task
    assert [m.get("method") for m in inbox.messages] == ["sampling/createMessage", "notifications/cancelled"]


async def test_list_changed_notifications_name_the_kind() -> None:
    kinds: list[str] = []
    peer = RpcPeer("test", Wire().send, on_list_changed=kinds.append)
    for kind in ("tools", "prompts", "resources", "roots"):
        peer.receive({"jsonrpc": "2.0", "method": f"notifications/{kind}/list_changed"})
    assert kinds == ["tools", "prompts", "resources"]


async def test_cancelling_the_awaiting_task_cancels_upstream_with_the_upstream_id() -> None:
    wire = Wire()
    peer = peer_on(wire)
    task = start(peer, "tools/call", {"name": "slow"}, Exchange())
    sent = await wire.request("tools/call")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    cancel = await wire.request("notifications/cancelled")
    assert cancel["params"]["requestId"] == sent["id"]
    assert peer.in_flight == 0
    # The late answer is dropped without harm.
    peer.receive(result(sent["id"]))


async def test_a_timeout_raises_upstream_timeout_and_cancels_upstream() -> None:
    wire = Wire()
    peer = peer_on(wire)
    with pytest.raises(UpstreamTimeout, match=r"timed out after 0\.05 s"):
        await peer.request("tools/call", {}, Exchange(timeout=0.05))
    cancel = await wire.request("notifications/cancelled")
    assert cancel["params"]["requestId"] == wire.with_method("tools/call")[0]["id"]
    assert "timed out" in cancel["params"]["reason"]


async def test_the_call_timeout_applies_when_the_exchange_sets_none() -> None:
    peer = RpcPeer("test", Wire().send, call_timeout=0.05)
    with pytest.raises(UpstreamTimeout):
        await peer.request("tools/list", None)


async def test_losing_the_connection_fails_requests_in_flight_and_later_ones() -> None:
    wire = Wire()
    peer = peer_on(wire)
    tasks = [start(peer, "tools/call", {}, Exchange()) for _ in range(3)]
    await wire.request("tools/call", 2)
    peer.fail(UpstreamError("test: the child exited"))
    for task in tasks:
        with pytest.raises(UpstreamError, match="the child exited"):
            await task
    with pytest.raises(UpstreamError, match="the child exited"):
        await peer.request("tools/list", None)
    assert wire.with_method("notifications/cancelled") == [], "nothing is sent on a lost connection"


async def test_a_send_that_fails_raises_upstream_error() -> None:
    async def broken(message: Message) -> None:
        raise BrokenPipeError("gone")

    peer = RpcPeer("test", broken)
    with pytest.raises(UpstreamError, match="BrokenPipeError"):
        await peer.request("tools/list", None)
    assert peer.in_flight == 0


async def test_initialize_declares_what_the_proxy_relays_then_sends_initialized() -> None:
    wire = Wire()
    peer = peer_on(wire)
    task = asyncio.get_running_loop().create_task(peer.initialize(5))
    sent = await wire.request("initialize")
    assert sent["params"]["protocolVersion"] == PROTOCOL_VERSION == "2025-11-25"
    assert sent["params"]["capabilities"] == dict(PROXY_CAPABILITIES)
    assert sent["params"]["clientInfo"]["name"] == "agentkube-mcp-proxy"
    assert wire.with_method("notifications/initialized") == []
    answer = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "s"}}
    peer.receive(result(sent["id"], answer))
    assert await task == answer
    assert peer.initialize_result == answer
    assert wire.sent[-1] == {"jsonrpc": "2.0", "method": "notifications/initialized"}


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        ({"error": {"code": -32602, "message": "bad version"}}, "initialize failed: -32602 bad version"),
        ({"result": {"protocolVersion": "2026-07-28"}}, "protocolVersion '2026-07-28'"),
        ({"result": {}}, "protocolVersion None"),
    ],
)
async def test_initialize_refuses_an_error_or_a_revision_it_does_not_speak(
    answer: dict[str, Any], match: str
) -> None:
    wire = Wire()
    peer = peer_on(wire)
    task = asyncio.get_running_loop().create_task(peer.initialize(5))
    sent = await wire.request("initialize")
    peer.receive({"jsonrpc": "2.0", "id": sent["id"], **answer})
    with pytest.raises(UpstreamError, match=match):
        await task
    assert wire.with_method("notifications/initialized") == []


async def test_garbage_is_skipped_and_batches_are_unpacked() -> None:
    wire = Wire()
    peer = peer_on(wire)
    first = start(peer, "a", None, Exchange())
    second = start(peer, "b", None, Exchange())
    ids = [(await wire.request("a"))["id"], (await wire.request("b"))["id"]]
    garbage_lines = (
        b"not json",
        b"[1, 2]",
        b'"text"',
        b'{"jsonrpc": "2.0"}',
        b"{",
        b'{"id": true, "result": 1}',
    )
    for garbage in garbage_lines:
        peer.feed(garbage)
    peer.feed(orjson.dumps([result(ids[0], 1), result(ids[1], 2)]))
    assert (await first)["result"] == 1
    assert (await second)["result"] == 2


async def test_in_flight_requests_are_bounded() -> None:
    wire = Wire()
    peer = peer_on(wire, max_in_flight=1)
    task = start(peer, "a", None, Exchange())
    await wire.request("a")
    with pytest.raises(UpstreamError, match="1 requests already in flight"):
        await peer.request("b", None, Exchange())
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_undelivered_messages_are_bounded_per_request() -> None:
    wire = Wire()
    peer = peer_on(wire, max_queued=2)
    release = asyncio.Event()
    seen: list[Message] = []

    async def stuck_client(message: Message) -> None:
        seen.append(message)
        await release.wait()

    task = start(peer, "tools/call", {}, Exchange(on_message=stuck_client, client=SAMPLING_CLIENT))
    sent = await wire.request("tools/call")
    peer.receive({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": 0}})
    await eventually(lambda: seen, "the client took the first message", within=5)
    for n in range(1, 5):
        peer.receive({"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": n}})
    peer.receive({"jsonrpc": "2.0", "id": "s", "method": "sampling/createMessage", "params": {}})
    answer = await wire.answer("s")
    assert answer["error"]["code"] == INTERNAL_ERROR
    assert "not keeping up" in answer["error"]["message"]
    peer.receive(result(sent["id"]))
    release.set()
    await task
    assert [m["params"]["data"] for m in seen] == [0, 1, 2]


async def test_forward_passes_only_notifications_that_mean_something_upstream() -> None:
    wire = Wire()
    peer = peer_on(wire)
    await peer.forward("notifications/initialized")
    await peer.forward("notifications/cancelled", {"requestId": 1})
    await peer.forward("notifications/roots/list_changed")
    assert [m["method"] for m in wire.sent] == ["notifications/roots/list_changed"]


def test_log_budget_allows_a_burst_then_the_rate_and_counts_what_it_suppressed() -> None:
    now = [0.0]
    budget = LogBudget(rate=10.0, burst=3.0, clock=lambda: now[0])
    assert [budget.take() for _ in range(5)] == [(True, 0), (True, 0), (True, 0), (False, 0), (False, 0)]
    now[0] += 0.1
    assert budget.take() == (True, 2)
    assert budget.take() == (False, 0)
    assert budget.flush() == 1
    assert budget.flush() == 0


def test_backoff_doubles_from_half_a_second_to_thirty_and_resets() -> None:
    backoff = Backoff()
    delays = [backoff.next() for _ in range(9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    backoff.reset()
    assert backoff.next() == 0.5


# -- the event-stream parser (sse.py) ------------------------------------------------------------


def parse(stream: bytes, max_event_bytes: int = 1 << 20) -> list[SseEvent]:
    return SseParser(max_event_bytes).feed(stream)


def test_parses_events_with_names_ids_and_the_default_type() -> None:
    stream = b"event: endpoint\ndata: /message?sessionId=1\n\nid: 7\ndata: {}\n\n"
    assert parse(stream) == [
        SseEvent("endpoint", "/message?sessionId=1", ""),
        SseEvent("message", "{}", "7"),
    ]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_any_line_ending_ends_a_line(eol: bytes) -> None:
    stream = eol.join([b"event: message", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    assert parse(stream) == [SseEvent("message", "a\nb", ""), SseEvent("message", "c", "")]


def test_comments_pings_unknown_fields_and_empty_events_are_skipped() -> None:
    stream = b": ping\n\n:\n\nfoo: bar\n\nevent: x\n\ndata\n\ndata:no-space\n\n"
    assert parse(stream) == [SseEvent("message", "", ""), SseEvent("message", "no-space", "")]


def test_a_leading_bom_and_retry_are_understood() -> None:
    parser = SseParser(1024)
    assert parser.feed(b"\xef\xbb\xbfretry: 1500\ndata: x\n\n") == [SseEvent("message", "x", "")]
    assert parser.retry == 1500


def test_a_crlf_split_across_chunks_is_one_line_ending() -> None:
    parser = SseParser(1024)
    events = parser.feed(b"data: a\r") + parser.feed(b"\n\r") + parser.feed(b"\ndata: b\r\n\r\n")
    assert events == [SseEvent("message", "a", ""), SseEvent("message", "b", "")]


def test_an_event_over_the_limit_is_dropped_whole_and_the_next_one_parses() -> None:
    parser = SseParser(100)
    big = b"data: " + b"x" * 60 + b"\n"
    events = parser.feed(b"data: small\n\n" + big + big + b"\n" + b"data: after\n\n")
    assert events == [SseEvent("message", "small", ""), SseEvent("message", "after", "")]
    assert parser.dropped == 1


def test_an_unterminated_line_over_the_limit_is_not_buffered() -> None:
    parser = SseParser(1000)
    assert parser.feed(b"data: ") == []
    for _ in range(100):
        assert parser.feed(b"y" * 100) == []
    assert len(parser._buf) < 1000
    # The tail of the long line, then more lines of its event: all dropped; the next event parses.
    assert parser.feed(b"yyy\ndata: more\n\ndata: next\n\n") == [SseEvent("message", "next", "")]
    assert parser.dropped == 1


_field = st.sampled_from([b"data: ", b"data:", b"event: ", b"id: ", b": ", b"retry: "])
_value = st.text(alphabet='ab{}" :é', max_size=8).map(lambda t: t.encode())
_line = st.tuples(_field, _value).map(lambda fv: fv[0] + fv[1])
_event = st.lists(_line, min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(_event, max_size=6),
    eol=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
)
def test_chunking_never_changes_what_is_parsed(
    events: list[list[bytes]], eol: bytes, cuts: list[int]
) -> None:
    stream = b"".join(eol.join([*lines, b""]) + eol for lines in events)
    whole = SseParser(1 << 20).feed(stream)
    parser = SseParser(1 << 20)
    chunked: list[SseEvent] = []
    previous = 0
    for cut in [*sorted(c for c in cuts if c <= len(stream)), len(stream)]:
        chunked += parser.feed(stream[previous:cut])
        previous = cut
    assert chunked == whole


# -- what the SSE upstream sends where (sse.py) ---------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("/message?sessionId=abc", "http://127.0.0.1:3001/message?sessionId=abc"),
        ("message?sessionId=abc", "http://127.0.0.1:3001/mcp/message?sessionId=abc"),
        (" http://127.0.0.1:3001/other \n", "http://127.0.0.1:3001/other"),
    ],
)
def test_the_endpoint_resolves_against_the_configured_url(data: str, expected: str) -> None:
    assert resolve_endpoint(URL("http://127.0.0.1:3001/mcp/sse"), data) == URL(expected)


@pytest.mark.parametrize(
    "data",
    ["http://evil.example/message", "https://127.0.0.1:3001/message", "http://127.0.0.1:3002/m", "//x/y"],
)
def test_an_endpoint_on_another_origin_is_refused(data: str) -> None:
    with pytest.raises(UpstreamError, match="another origin"):
        resolve_endpoint(URL("http://127.0.0.1:3001/sse"), data)


def test_auth_headers_carry_the_secret_named_by_its_variable() -> None:
    environ = {"TOKEN": "s3cret"}
    assert auth_headers(None, environ) == {}
    bearer = HttpAuth(mode="bearer", secret_env="TOKEN")
    assert auth_headers(bearer, environ) == {"Authorization": "Bearer s3cret"}
    header = HttpAuth(mode="header", secret_env="TOKEN", header_name="X-Api-Key")
    assert auth_headers(header, environ) == {"X-Api-Key": "s3cret"}
    with pytest.raises(UpstreamError, match="TOKEN is not set") as refused:
        auth_headers(bearer, {})
    assert "s3cret" not in str(refused.value)


async def test_a_failing_list_changed_listener_does_not_break_the_peer() -> None:
    def broken(kind: str) -> None:
        raise RuntimeError("listener bug")

    wire = Wire()
    peer = RpcPeer("test", wire.send, on_list_changed=broken)
    task = start(peer, "tools/list", None, Exchange())
    sent = await wire.request("tools/list")
    peer.receive({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
    peer.receive(result(sent["id"], {"tools": []}))
    assert (await task)["result"] == {"tools": []}
    assert not peer.failed
