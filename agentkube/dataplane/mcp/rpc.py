"""The JSON-RPC peer: one legacy-era MCP connection upstream, shared by every client of the proxy pod.

A stdio child and an HTTP+SSE stream each give the proxy exactly one connection to a server, and
every client's requests travel over it. ``RpcPeer`` multiplexes them; ``PeerUpstream`` keeps one peer
connected (handshake, reconnect with backoff) for the transports in ``stdio.py`` and ``sse.py``.

What a caller may rely on:

- Request ids upstream are the peer's own (1, 2, 3, ...); a response is matched to the request that
  owns it whatever id the client used, so two clients' ids never collide (``Exchange.request_id``
  and ``Exchange.headers`` are ignored: there is no per-client id space or header on one pipe).
- A ``params._meta.progressToken`` is replaced by a token unique within the peer (``p1``, ``p2``, ...)
  and ``notifications/progress`` for it reaches the request that owns it with the client's own
  token put back.
- A server notification or server-to-client request is routed to the request it belongs to: the one
  named by ``params._meta.relatedRequestId`` (an upstream id), else the only request in flight that
  has a client to hand messages to (``Exchange.on_message``). Logging (``notifications/message``)
  follows that rule, and is dropped when it cannot be routed; other notifications are routed only
  when they name their request. A server request that cannot be routed, or whose client did not
  declare the capability it needs (``sampling``, ``elicitation``, ``roots``), is answered by the peer
  with JSON-RPC error -32601 whose message says why. ``ping`` is answered by the peer itself.
- ``notifications/{tools,prompts,resources}/list_changed`` calls ``on_list_changed`` with the kind.
- Cancelling the task awaiting ``request()`` sends ``notifications/cancelled`` with the upstream id
  (as does a timeout, which then raises ``UpstreamTimeout``); losing the connection (``fail()``)
  fails every request in flight with ``UpstreamError``.
- Buffering is bounded: at most ``max_in_flight`` requests, ``max_queued`` undelivered messages per
  request (further notifications are dropped, further server requests answered with -32603), and
  ``max_background`` replies the peer is itself sending.

Capabilities: the shared connection speaks for the proxy, not for one client, so the proxy declares
``PROXY_CAPABILITIES`` (sampling, elicitation and roots with ``listChanged``) because it relays all
three: each server request reaches the client of the request it belongs to, provided that client
declared the capability, and a client's ``notifications/roots/list_changed`` is forwarded upstream.
A server that asks outside any client request (roots/list right after the handshake, say) gets the
-32601 above: there is no client to ask.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard

import orjson
import structlog

from agentkube.dataplane.mcp import wire
from agentkube.dataplane.mcp.config import Limits
from agentkube.dataplane.mcp.upstream import (
    PROXY_CAPABILITIES,
    PROXY_INFO,
    Era,
    Exchange,
    ListKind,
    Message,
    Upstream,
    UpstreamError,
    UpstreamTimeout,
)

__all__ = [
    "Backoff",
    "LogBudget",
    "PeerUpstream",
    "RpcPeer",
    "Send",
]

log = structlog.get_logger("agentkube.mcp.rpc")

Send = Callable[[Message], Awaitable[None]]
"""Writes one message to the connection; raises ``UpstreamError`` when it cannot."""


# Client notifications that mean something to the server behind a shared connection. Others (the
# client's own initialized, cancellations in the client's id space) are the front's business.
_FORWARDED: Final = frozenset({"notifications/roots/list_changed", "notifications/progress"})

Id = int | str


def _is_id(value: object) -> TypeGuard[Id]:
    return isinstance(value, int | str) and not isinstance(value, bool)


class LogBudget:
    """A token bucket for log lines, so a chatty peer cannot flood the proxy's logs.

    ``take()`` says whether one more line may be logged now, and how many lines were suppressed
    since the last allowed one (the caller logs "suppressed N lines" before the line itself).
    """

    def __init__(
        self, rate: float = 20.0, burst: float = 40.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate, self._burst, self._clock = rate, burst, clock
        self._tokens = burst
        self._at = clock()
        self._suppressed = 0

    def take(self) -> tuple[bool, int]:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1.0:
            self._suppressed += 1
            return False, 0
        self._tokens -= 1.0
        return True, self.flush()

    def flush(self) -> int:
        """The count suppressed and not yet reported; resets it."""
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed


@dataclass(eq=False)
class _Pending:
    id: int
    method: str
    exchange: Exchange
    token: Any = None
    """The client's own progress token, put back into the progress notifications it gets."""
    peer_token: str | None = None
    inbox: deque[Message] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    response: Message | None = None
    error: UpstreamError | None = None
    dropped: int = 0
    server_requests: set[Id] = field(default_factory=set)


class RpcPeer:
    """One JSON-RPC connection, multiplexed for many clients (see the module docstring).

    The transport passes ``send`` and calls ``feed()`` (raw bytes) or ``receive()`` (decoded) for
    each message it reads, and ``fail()`` once when the connection ends. A peer is not reused
    after ``fail()``: a reconnect makes a new one.
    """

    def __init__(
        self,
        name: str,
        send: Send,
        *,
        call_timeout: float = 600.0,
        on_list_changed: Callable[[ListKind], None] | None = None,
        capabilities: Mapping[str, Any] = PROXY_CAPABILITIES,
        max_in_flight: int = 1024,
        max_queued: int = 256,
        max_background: int = 64,
    ) -> None:
        self.name = name
        self._send = send
        self._call_timeout = call_timeout
        self._on_list_changed = on_list_changed
        self._capabilities = capabilities
        self._max_in_flight = max_in_flight
        self._max_queued = max_queued
        self._max_background = max_background
        self._ids = itertools.count(1)
        self._token_ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._tokens: dict[str, _Pending] = {}
        self._server_requests: dict[Id, _Pending] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._error: UpstreamError | None = None
        self._garbage = LogBudget(rate=1.0, burst=10.0)
        self._log = log.bind(upstream=name)
        self.initialize_result: Message | None = None
        """The server's ``InitializeResult`` once ``initialize()`` succeeded."""

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def failed(self) -> bool:
        return self._error is not None

    # -- client side: what the proxy sends ------------------------------------------------------

    async def initialize(self, timeout: float) -> Message:  # noqa: ASYNC109 (one bound for a two-step handshake)
        """The legacy handshake: ``initialize``, then ``notifications/initialized``; the server's result.

        Raises ``UpstreamError`` when the server refuses, or answers a revision the proxy does not speak.
        """
        params = {
            "protocolVersion": wire.LATEST_HANDSHAKE,
            "capabilities": dict(self._capabilities),
            "clientInfo": dict(PROXY_INFO),
        }
        response = await self.request("initialize", params, Exchange(timeout=timeout))
        result = response.get("result")
        if not isinstance(result, dict):
            raise UpstreamError(f"{self.name}: initialize failed: {_describe_error(response)}")
        version = result.get("protocolVersion")
        if version not in wire.HANDSHAKE_VERSIONS:
            raise UpstreamError(
                f"{self.name}: initialize answered protocolVersion {version!r}; the proxy speaks "
                f"{', '.join(sorted(wire.HANDSHAKE_VERSIONS))} over this transport"
            )
        await self.notify("notifications/initialized")
        self.initialize_result = result
        return result

    async def request(
        self, method: str, params: Mapping[str, Any] | None, exchange: Exchange | None = None
    ) -> Message:
        """Send one request and return its response, handing related messages to ``exchange.on_message``."""
        exchange = exchange if exchange is not None else Exchange()
        if self._error is not None:
            raise UpstreamError(str(self._error))
        if len(self._pending) >= self._max_in_flight:
            raise UpstreamError(f"{self.name}: {self._max_in_flight} requests already in flight")
        pending = _Pending(next(self._ids), method, exchange)
        message: Message = {"jsonrpc": "2.0", "id": pending.id, "method": method}
        if params is not None:
            message["params"] = self._remap_token(params, pending)
        self._pending[pending.id] = pending
        timeout = exchange.timeout if exchange.timeout is not None else self._call_timeout
        sent = False
        reason = "the proxy stopped waiting"
        try:
            async with asyncio.timeout(timeout):
                await self._write(message)
                sent = True
                return await self._await(pending)
        except TimeoutError:
            reason = f"timed out after {timeout:g} s"
            raise UpstreamTimeout(f"{self.name}: {method} {reason}") from None
        except asyncio.CancelledError:
            reason = "cancelled"
            raise
        finally:
            self._forget(pending)
            # initialize must not be cancelled (the spec says so); the connection is dropped instead.
            answered = pending.response is not None or pending.error is not None
            if sent and not answered and method != "initialize" and self._error is None:
                cancel: Message = {
                    "jsonrpc": "2.0",
                    "method": "notifications/cancelled",
                    "params": {"requestId": pending.id, "reason": reason},
                }
                self._spawn(self._write(cancel))

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        message: Message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self._write(message)

    async def forward(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Forward a client's notification if it means something on a shared connection, else drop it."""
        if method in _FORWARDED:
            await self.notify(method, params)

    async def reply(self, message: Message) -> None:
        """Send a client's response to a server request; it already carries the server's own id."""
        rid = message.get("id")
        if _is_id(rid):
            owner = self._server_requests.pop(rid, None)
            if owner is not None:
                owner.server_requests.discard(rid)
        await self._write(message)

    # -- server side: what the transport reads ---------------------------------------------------

    def feed(self, raw: bytes | str) -> None:
        """Decode one message read from the connection and route it; garbage is logged and skipped."""
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._skip("not JSON", len(raw))
            return
        self.receive(message)

    def receive(self, message: object, *, batch: bool = True) -> None:
        """Route one decoded message (or a JSON-RPC batch of them)."""
        if isinstance(message, list) and batch:
            for item in message:
                self.receive(item, batch=False)
            return
        if not isinstance(message, dict):
            self._skip("not a JSON-RPC message", 0)
            return
        method = message.get("method")
        if isinstance(method, str):
            if "id" in message:
                self._on_server_request(message, method)
            else:
                self._on_notification(message, method)
        elif "result" in message or "error" in message:
            self._on_response(message)
        else:
            self._skip("not a JSON-RPC message", 0)

    def fail(self, error: UpstreamError) -> None:
        """The connection is gone: every request in flight fails with ``error``; later ones at once."""
        if self._error is not None:
            return
        self._error = error
        for pending in self._pending.values():
            pending.error = UpstreamError(str(error))
            pending.wake.set()
        for task in self._background:
            task.cancel()

    # -- internals -------------------------------------------------------------------------------

    async def _write(self, message: Message) -> None:
        try:
            await self._send(message)
        except UpstreamError:
            raise
        except Exception as error:
            raise UpstreamError(f"{self.name}: cannot send: {type(error).__name__}: {error}") from error

    async def _await(self, pending: _Pending) -> Message:
        on_message = pending.exchange.on_message
        while True:
            while pending.inbox:
                message = pending.inbox.popleft()
                if on_message is not None:
                    await on_message(message)
            if pending.response is not None:
                return pending.response
            if pending.error is not None:
                raise pending.error
            pending.wake.clear()
            await pending.wake.wait()

    def _remap_token(self, params: Mapping[str, Any], pending: _Pending) -> Mapping[str, Any]:
        meta = params.get("_meta")
        if not isinstance(meta, Mapping) or "progressToken" not in meta:
            return params
        pending.token = meta["progressToken"]
        pending.peer_token = f"p{next(self._token_ids)}"
        self._tokens[pending.peer_token] = pending
        return {**params, "_meta": {**meta, "progressToken": pending.peer_token}}

    def _forget(self, pending: _Pending) -> None:
        self._pending.pop(pending.id, None)
        if pending.peer_token is not None:
            self._tokens.pop(pending.peer_token, None)
        for rid in pending.server_requests:
            if self._server_requests.get(rid) is pending:
                del self._server_requests[rid]
        pending.server_requests.clear()

    def _on_response(self, message: Message) -> None:
        rid = message.get("id")
        pending = self._pending.get(rid) if isinstance(rid, int) and not isinstance(rid, bool) else None
        if pending is None:
            # Late (the request was cancelled or timed out) or an error about a message without id.
            self._log.debug("response for no request in flight", id=rid, error="error" in message)
            return
        pending.response = message
        pending.wake.set()

    def _on_notification(self, message: Message, method: str) -> None:
        params = message.get("params")
        params = params if isinstance(params, dict) else {}
        if method == "notifications/progress":
            token = params.get("progressToken")
            pending = self._tokens.get(token) if isinstance(token, str) else None
            if pending is not None:
                restored = {**message, "params": {**params, "progressToken": pending.token}}
                self._deliver(pending, restored)
            else:
                self._log.debug("progress for no request in flight")
            return
        kind = wire.list_kind(method)
        if kind is not None:
            if self._on_list_changed is not None:
                try:
                    self._on_list_changed(kind)
                except Exception:
                    # The listener's bug must not cost every client the connection.
                    self._log.exception("on_list_changed failed", kind=kind)
            return
        if method == "notifications/cancelled":
            # The server gave up on one of its own requests: tell the client it was relayed to.
            rid = params.get("requestId")
            owner = self._server_requests.pop(rid, None) if _is_id(rid) else None
            if owner is not None:
                owner.server_requests.discard(rid)
                self._deliver(owner, message)
            return
        related = _related_id(params)
        if related is not None:
            pending = self._pending.get(related) if isinstance(related, int) else None
        elif method == "notifications/message":
            pending = self._only_listener()
        else:
            pending = None
        if pending is not None:
            self._deliver(pending, message)
        else:
            self._log.debug("notification for no request in flight", method=method)

    def _on_server_request(self, message: Message, method: str) -> None:
        rid = message["id"]
        if not _is_id(rid):
            self._skip("request with an invalid id", 0)
            return
        if method == "ping":
            self._answer(rid, {"result": {}})
            return
        params = message.get("params")
        params = params if isinstance(params, dict) else {}
        pending, why = self._route(params)
        if pending is None:
            self._refuse(rid, wire.METHOD_NOT_FOUND, f"{method}: {why}")
            return
        if pending.exchange.on_message is None:
            self._refuse(
                rid, wire.METHOD_NOT_FOUND, f"{method}: the request it belongs to has no client to ask"
            )
            return
        need = wire.NEEDED_CAPABILITY.get(method)
        if need is not None and need not in pending.exchange.client.capabilities:
            self._refuse(
                rid,
                wire.METHOD_NOT_FOUND,
                f"{method}: the client of the request it belongs to did not declare the {need} capability",
            )
            return
        if not self._deliver(pending, message):
            self._refuse(
                rid, wire.INTERNAL_ERROR, f"{method}: the client is not keeping up with this request"
            )
            return
        self._server_requests[rid] = pending
        pending.server_requests.add(rid)

    def _route(self, params: Mapping[str, Any]) -> tuple[_Pending | None, str]:
        related = _related_id(params)
        if related is not None:
            pending = self._pending.get(related) if isinstance(related, int) else None
            if pending is None:
                return None, f"params._meta.relatedRequestId {related!r} names no request in flight"
            return pending, ""
        listeners = [p for p in self._pending.values() if p.exchange.on_message is not None]
        if len(listeners) == 1:
            return listeners[0], ""
        if not listeners:
            return None, "no client request is in flight on the proxy's shared connection to relay it to"
        return None, (
            f"{len(listeners)} client requests are in flight on the proxy's shared connection and "
            "params._meta.relatedRequestId names none of them"
        )

    def _only_listener(self) -> _Pending | None:
        listeners = [p for p in self._pending.values() if p.exchange.on_message is not None]
        return listeners[0] if len(listeners) == 1 else None

    def _deliver(self, pending: _Pending, message: Message) -> bool:
        if len(pending.inbox) >= self._max_queued:
            pending.dropped += 1
            if pending.dropped == 1:
                self._log.warning("client not keeping up; dropping its messages", method=pending.method)
            return False
        pending.inbox.append(message)
        pending.wake.set()
        return True

    def _refuse(self, rid: Id, code: int, why: str) -> None:
        self._log.info("server request refused", reason=why)
        self._answer(rid, {"error": {"code": code, "message": why}})

    def _answer(self, rid: Id, body: Mapping[str, Any]) -> None:
        self._spawn(self._write({"jsonrpc": "2.0", "id": rid, **body}))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if self._error is not None or len(self._background) >= self._max_background:
            work.close()
            self._log.warning("dropped a message the proxy was to send", reason=str(self._error or "backlog"))
            return
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.info("could not send", error=str(task.exception()))

    def _skip(self, what: str, size: int) -> None:
        allowed, suppressed = self._garbage.take()
        if allowed:
            self._log.warning("skipped a message", reason=what, bytes=size, suppressed_before=suppressed)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _related_id(params: Mapping[str, Any]) -> Any:
    meta = params.get("_meta")
    return meta.get("relatedRequestId") if isinstance(meta, Mapping) else None


def _describe_error(response: Message) -> str:
    error = response.get("error")
    if isinstance(error, dict):
        return f"{error.get('code')} {error.get('message')}"
    return "no result"


class Backoff:
    """Delays between reconnects: ``first`` doubling up to ``cap``; ``reset()`` after a stable run."""

    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self._first, self._cap = first, cap
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(delay * 2, self._cap)
        return delay

    def reset(self) -> None:
        self._next = self._first


class PeerUpstream(Upstream):
    """An ``Upstream`` over one shared ``RpcPeer`` that a subclass connects (stdio child, SSE stream).

    ``start()`` runs a supervisor that connects, does the handshake, serves until the connection ends
    and reconnects after ``Backoff`` delays (0.5 s doubling to 30 s, back to 0.5 s once a connection
    stayed up ``STABLE_SECONDS``). A request made while the upstream is down waits up to the connect
    timeout for it to come back, then fails with ``UpstreamError``.
    """

    STABLE_SECONDS: float = 60.0

    def __init__(self, name: str, limits: Limits) -> None:
        super().__init__(name)
        self._limits = limits
        self._peer: RpcPeer | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._up_since: float | None = None
        self._log = log.bind(upstream=name)
        self.initialize_result: Message | None = None
        """The server's ``InitializeResult`` from the latest handshake."""

    @property
    def era(self) -> Era | None:
        return "legacy" if self.initialize_result is not None else None

    @abc.abstractmethod
    async def _connect(self, stack: contextlib.AsyncExitStack) -> tuple[Send, AsyncIterator[bytes | str]]:
        """Open one connection: how to send a message, and the raw messages it reads until it ends.

        What the connection holds goes on ``stack``, which is closed when the connection ends. Raise
        ``UpstreamError`` (or any exception) when it cannot be opened; the supervisor retries.
        """

    async def start(self) -> None:
        if self._task is None and not self._closed:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._supervise(), name=f"upstream {self.name}")

    async def request(self, method: str, params: Mapping[str, Any] | None, exchange: Exchange) -> Message:
        peer = await self._connected(exchange)
        # These servers speak the session era: a 2026-07-28 client's envelope is not for them.
        return await peer.request(method, wire.without_envelope(params), exchange)

    async def reply(self, message: Message, session: str | None = None) -> None:
        peer = self._peer
        if peer is None:
            raise UpstreamError(f"{self.name}: down; the server request died with its connection")
        await peer.reply(message)

    async def notify(self, method: str, params: Mapping[str, Any] | None, session: str | None = None) -> None:
        peer = self._peer
        if peer is not None:
            await peer.forward(method, params)

    async def close(self) -> None:
        self._closed = True
        self._ready.set()  # wakes requests waiting for a connection, which then see the upstream closed
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._peer is not None:
            self._lost(self._peer, UpstreamError(f"{self.name}: closed"))
        self._up = False

    async def _connected(self, exchange: Exchange) -> RpcPeer:
        if self._closed or self._task is None:
            raise UpstreamError(f"{self.name}: {'closed' if self._closed else 'not started'}")
        wait = self._limits.connect_timeout_seconds
        if exchange.timeout is not None:
            wait = min(wait, exchange.timeout)
        try:
            async with asyncio.timeout(wait):
                # _ready is set while _peer is a live peer (see _lost), and once closing.
                while (peer := self._peer) is None:
                    if self._closed:
                        raise UpstreamError(f"{self.name}: closed")
                    await self._ready.wait()
        except TimeoutError:
            raise UpstreamError(f"{self.name}: down (not connected within {wait:g} s)") from None
        return peer

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        while not self._closed:
            try:
                await self._connection()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._log.warning("upstream connection failed", error=str(error), kind=type(error).__name__)
            if self._up_since is not None and loop.time() - self._up_since >= self.STABLE_SECONDS:
                backoff.reset()
            delay = backoff.next()
            self._log.info("reconnecting", after_seconds=delay)
            await asyncio.sleep(delay)

    async def _connection(self) -> None:
        """One connection's life: connect, handshake, serve until it ends."""
        loop = asyncio.get_running_loop()
        timeout = self._limits.connect_timeout_seconds
        peer: RpcPeer | None = None
        self._up_since = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                async with asyncio.timeout(timeout):
                    send, messages = await self._connect(stack)
                peer = RpcPeer(
                    self.name,
                    send,
                    call_timeout=self._limits.call_timeout_seconds,
                    on_list_changed=self._list_changed,
                )
                pump = loop.create_task(self._pump(peer, messages))
                # Stopped (and waited for) before the transport's own clean-up runs.
                stack.push_async_callback(_stop, pump)
                result = await peer.initialize(timeout)
                if peer.failed:
                    return
                self.initialize_result = result
                self._peer = peer
                self._ready.set()
                self._up_since = loop.time()
                self._mark(True)
                self._log.info(
                    "upstream connected",
                    protocol_version=result.get("protocolVersion"),
                    server=result.get("serverInfo"),
                )
                await pump
        finally:
            if peer is not None:
                self._lost(peer, UpstreamError(f"{self.name}: the connection closed"))
            self._mark(False)

    async def _pump(self, peer: RpcPeer, messages: AsyncIterator[bytes | str]) -> None:
        reason = "the connection closed"
        try:
            async for raw in messages:
                try:
                    peer.feed(raw)
                except Exception:
                    # One message the peer cannot handle must not drop the connection for everyone.
                    self._log.exception("could not handle a message")
        except UpstreamError as error:
            reason = str(error)
        except Exception as error:
            reason = f"the connection broke: {type(error).__name__}: {error}"
        self._lost(peer, UpstreamError(f"{self.name}: {reason}"))

    def _lost(self, peer: RpcPeer, error: UpstreamError) -> None:
        """``peer``'s connection ended: fail what is in flight on it and stop handing it out."""
        if not peer.failed:
            self._log.info("upstream connection ended", reason=str(error))
        peer.fail(error)
        if self._peer is peer:
            self._peer = None
            self._ready.clear()
            if self._up and not self._closed:
                self._log.warning("upstream down")
            self._mark(False)

    def _mark(self, up: bool) -> None:
        """``_set_up``, shielded from the listeners it calls: their bug must not end the connection."""
        try:
            self._set_up(up)
        except Exception:
            self._log.exception("an up/down listener failed", up=up)
