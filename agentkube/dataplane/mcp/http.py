"""Streamable HTTP upstreams, in whichever era the server speaks.

On (re)connect the proxy probes with ``server/discover`` at 2026-07-28; a server that answers with
that version is spoken to statelessly (the envelope in ``_meta`` and the ``MCP-Protocol-Version``,
``Mcp-Method`` and ``Mcp-Name`` headers on every request). Anything else is a session-era server:
the proxy opens a session of its own with ``initialize`` (used to list the catalog and for clients
that have no upstream session of their own) and, for each session-based client, one more on that
client's behalf (``open_session``), whose id travels sealed in the client's session id. A server
that answers the first POST with 404 or 405 when ``transport: auto`` is an HTTP+SSE (2024-11-05)
server: the upstream hands over to ``sse.SseUpstream``.

Notifications of list changes arrive on the proxy's own GET stream (session era) or its
``subscriptions/listen`` stream (2026-07-28). Credentials come only from the config: the variable
``auth.secretEnv`` names, read once at start; a client's own credentials are never sent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import orjson
import structlog
from yarl import URL

from agentkube.dataplane.mcp import wire
from agentkube.dataplane.mcp.config import HttpAuth, Limits
from agentkube.dataplane.mcp.config import HttpUpstream as HttpUpstreamConfig
from agentkube.dataplane.mcp.events import EventTooLarge, read_events
from agentkube.dataplane.mcp.upstream import (
    PROXY_CLIENT,
    PROXY_INFO,
    ClientContext,
    Era,
    Exchange,
    Message,
    SessionLost,
    Upstream,
    UpstreamError,
    UpstreamTimeout,
)

__all__ = ["StreamableHttpUpstream", "auth_headers", "egress"]

log = structlog.get_logger("agentkube.mcp.http")

ACCEPT = "application/json, text/event-stream"
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0


def auth_headers(auth: HttpAuth | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers that carry ``auth``'s credential, read from ``environ`` (default ``os.environ``).

    Raises ``UpstreamError`` naming the variable (never its value) when it is unset or empty.
    """
    if auth is None:
        return {}
    value = (environ if environ is not None else os.environ).get(auth.secret_env)
    if not value:
        raise UpstreamError(f"auth.secretEnv: {auth.secret_env} is not set in the proxy's environment")
    if auth.mode == "bearer":
        return {"Authorization": f"Bearer {value}"}
    assert auth.header_name is not None  # the config model requires it in header mode
    return {auth.header_name: value}


def egress(url: str | URL, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The forward proxy the standard variables name for ``url`` (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``NO_PROXY``, either case), as aiohttp request keywords; {} when it goes direct.

    Worked out once per upstream: aiohttp's ``trust_env`` looks the variables and ``~/.netrc`` up on
    every request (half the proxy's CPU per call in ``bench/mcp_proxy.py``), and a ``.netrc`` would
    add credentials the config never named.
    """
    target = URL(str(url))
    env = os.environ if environ is None else environ
    proxies = {k[: -len("_proxy")].lower(): v for k, v in env.items() if k.lower().endswith("_proxy") and v}
    no_proxy = proxies.pop("no", "")
    if _bypassed(target.host or "", no_proxy):
        return {}
    proxy = proxies.get(target.scheme)
    if not proxy:
        return {}
    via = URL(proxy)
    if not via.user:
        return {"proxy": str(via)}
    basic = base64.b64encode(f"{via.user}:{via.password or ''}".encode()).decode()
    return {"proxy": str(via.with_user(None)), "proxy_headers": {"Proxy-Authorization": f"Basic {basic}"}}


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` exempts ``host``: ``*``, the name itself, or a domain it is under
    (``.example.com`` and ``example.com`` both cover ``a.example.com``); ports are ignored."""
    host = host.lower().strip("[]")
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        name = entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry
        name = name.strip("[]").lstrip(".")
        if entry == "*" or (name and (host == name or host.endswith("." + name))):
            return True
    return False


class _UseSse(Exception):
    """The server does not speak Streamable HTTP at this URL: fall back to HTTP+SSE."""


class StreamableHttpUpstream(Upstream):
    """An MCP server at an http(s) URL."""

    def __init__(
        self,
        config: HttpUpstreamConfig,
        limits: Limits,
        http: aiohttp.ClientSession,
        *,
        sse_fallback: Callable[[], Upstream] | None = None,
    ) -> None:
        super().__init__(config.name)
        self.config = config
        self.limits = limits
        self._http = http
        self._headers = {"Accept": ACCEPT, "Content-Type": "application/json", **auth_headers(config.auth)}
        self._egress = egress(config.url)
        self._sse_fallback = sse_fallback
        self._fallback: Upstream | None = None
        self._era: Era | None = None
        self._version = wire.LATEST_HANDSHAKE
        self._session: str | None = None
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self._broken = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def era(self) -> Era | None:
        return self._fallback.era if self._fallback is not None else self._era

    @property
    def up(self) -> bool:
        return self._fallback.up if self._fallback is not None else self._up

    # ----------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"upstream-{self.name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._background):
            task.cancel()
        if self._fallback is not None:
            await self._fallback.close()
        elif self._session is not None and self._era == "legacy":
            with contextlib.suppress(Exception):
                await self.close_session(f"{self._version} {self._session}")

    async def _run(self) -> None:
        delay = BACKOFF_MIN
        while True:
            try:
                await self._connect()
            except _UseSse:
                await self._hand_over_to_sse()
                return
            except (aiohttp.ClientError, UpstreamError, TimeoutError, OSError, ValueError) as e:
                log.warning("upstream unreachable", upstream=self.name, error=_describe(e), retry_in=delay)
                self._set_up(False)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            delay = BACKOFF_MIN
            log.info("upstream connected", upstream=self.name, era=self._era, version=self._version)
            if self._up:
                self._list_changed("tools", "prompts", "resources")
            else:
                self._set_up(True)
            self._broken.clear()
            await self._watch()

    async def _hand_over_to_sse(self) -> None:
        if self._sse_fallback is None:
            raise UpstreamError("the server does not speak Streamable HTTP")
        log.info("upstream speaks HTTP+SSE (2024-11-05)", upstream=self.name)
        fallback = self._sse_fallback()
        fallback.on_list_changed = self.on_list_changed
        fallback.on_down = self.on_down
        self._fallback = fallback
        await fallback.start()
        await fallback.tried.wait()
        self.tried.set()

    async def _connect(self) -> None:
        if self.config.transport == "sse":
            raise _UseSse
        timeout = self.limits.connect_timeout_seconds
        if await self._probe_modern(timeout):
            self._era, self._session = "modern", None
            return
        status, reply, session = await self._initialize(PROXY_CLIENT, wire.LATEST_HANDSHAKE, timeout)
        if status in (404, 405) and self.config.transport == "auto":
            raise _UseSse
        if reply is None or "result" not in reply:
            raise UpstreamError(f"initialize failed: {_describe_reply(status, reply)}")
        self._era = "legacy"
        self._version = str(reply["result"].get("protocolVersion") or wire.LATEST_HANDSHAKE)
        self._session = session

    async def _probe_modern(self, within: float) -> bool:
        message = wire.request(0, "server/discover", {"_meta": self._envelope(PROXY_CLIENT)})
        headers = self._modern_headers("server/discover", None)
        try:
            status, reply, _ = await self._post_once(message, headers, within)
        except UpstreamError:
            return False
        result = (reply or {}).get("result")
        return (
            status == 200
            and isinstance(result, dict)
            and wire.MODERN in (result.get("supportedVersions") or ())
        )

    async def _initialize(
        self, client: ClientContext, version: str, within: float
    ) -> tuple[int, Message | None, str | None]:
        params = {
            "protocolVersion": version,
            "capabilities": dict(client.capabilities),
            "clientInfo": dict(client.info or PROXY_INFO),
        }
        status, reply, session = await self._post_once(
            wire.request(0, "initialize", params), {"MCP-Protocol-Version": version}, within
        )
        if reply is not None and "result" in reply:
            negotiated = str(reply["result"].get("protocolVersion") or version)
            headers = {"MCP-Protocol-Version": negotiated}
            if session:
                headers["Mcp-Session-Id"] = session
            await self._post_once(wire.notification("notifications/initialized"), headers, within)
        return status, reply, session

    async def _watch(self) -> None:
        """Hold the notification stream until it or a request finds the connection broken."""
        while not self._broken.is_set():
            try:
                held = await (self._listen() if self._era == "modern" else self._get_stream())
            except (aiohttp.ClientError, UpstreamError, TimeoutError, OSError, EventTooLarge) as e:
                log.info("upstream stream ended", upstream=self.name, error=_describe(e))
                return
            if not held:
                # No stream offered: nothing tells us of changes; wait for a request to find trouble.
                await self._broken.wait()
                return

    async def _get_stream(self) -> bool:
        headers = {**self._headers, "Accept": "text/event-stream", "MCP-Protocol-Version": self._version}
        if self._session:
            headers["Mcp-Session-Id"] = self._session
        async with self._http.get(
            self.config.url, headers=headers, timeout=_STREAM_TIMEOUT, **self._egress
        ) as resp:
            if resp.status == 404 and self._session:
                raise SessionLost("the upstream lost the proxy's session")
            if resp.status != 200 or resp.content_type != "text/event-stream":
                return False
            await self._consume_stream(resp)
        raise UpstreamError("stream closed")

    async def _listen(self) -> bool:
        params = {
            "notifications": {
                "toolsListChanged": True,
                "promptsListChanged": True,
                "resourcesListChanged": True,
            },
            "_meta": self._envelope(PROXY_CLIENT),
        }
        message = wire.request(next(self._ids), "subscriptions/listen", params)
        headers = {**self._headers, **self._modern_headers("subscriptions/listen", None)}
        async with self._http.post(
            self.config.url,
            data=wire.dumps(message),
            headers=headers,
            timeout=_STREAM_TIMEOUT,
            **self._egress,
        ) as resp:
            if resp.status != 200 or resp.content_type != "text/event-stream":
                return False
            await self._consume_stream(resp)
        raise UpstreamError("stream closed")

    async def _consume_stream(self, resp: aiohttp.ClientResponse) -> None:
        async for event in read_events(resp.content.iter_any(), self.limits.max_message_bytes):
            message = _decode(event.data)
            if message is None:
                log.warning("upstream sent an undecodable event", upstream=self.name)
                continue
            method = message.get("method")
            if isinstance(method, str) and (kind := wire.list_kind(method)) is not None:
                self.changed(kind)
            elif wire.is_request(message):
                # Outside any client request there is nobody to ask: answer ping, refuse the rest.
                answer = (
                    wire.response(message["id"], {})
                    if method == "ping"
                    else wire.error(message["id"], wire.METHOD_NOT_FOUND, f"{method} has no client to go to")
                )
                self._spawn(self.reply(answer, None))

    # ------------------------------------------------------------------------------------ requests

    def _envelope(self, client: ClientContext) -> dict[str, Any]:
        return {
            wire.PROTOCOL_VERSION_KEY: wire.MODERN,
            wire.CAPABILITIES_KEY: dict(client.capabilities),
            wire.CLIENT_INFO_KEY: dict(client.info or PROXY_INFO),
        }

    def _modern_headers(self, method: str, params: Mapping[str, Any] | None) -> dict[str, str]:
        headers = {"MCP-Protocol-Version": wire.MODERN, "Mcp-Method": method}
        key = wire.NAME_PARAMS.get(method)
        if key is not None and params is not None and isinstance(params.get(key), str):
            headers["Mcp-Name"] = wire.encode_header_value(params[key])
        return headers

    def _session_headers(self, session: str | None) -> dict[str, str]:
        if session:
            version, _, sid = session.partition(" ")
        else:
            version, sid = self._version, self._session or ""
        headers = {"MCP-Protocol-Version": version}
        if sid:
            headers["Mcp-Session-Id"] = sid
        return headers

    async def request(self, method: str, params: Mapping[str, Any] | None, exchange: Exchange) -> Message:
        if self._fallback is not None:
            return await self._fallback.request(method, params, exchange)
        if not self._up:
            raise UpstreamError(f"upstream {self.name!r} is not connected")
        request_id = exchange.request_id if exchange.request_id is not None else next(self._ids)
        if self._era == "modern" and exchange.session is None:
            body = wire.without_envelope(params)
            body["_meta"] = {**(body.get("_meta") or {}), **self._envelope(exchange.client)}
            headers = {**self._modern_headers(method, params), **exchange.headers}
        else:
            body = wire.without_envelope(params)
            headers = self._session_headers(exchange.session)
        message = wire.request(request_id, method, body)
        timeout = exchange.timeout or self.limits.call_timeout_seconds
        try:
            status, reply, _ = await self._post_once(message, headers, timeout, exchange, cancellable=True)
        except aiohttp.ClientConnectionError as e:
            self._broken.set()
            raise UpstreamError(f"upstream {self.name!r}: {_describe(e)}") from None
        if reply is None:
            raise UpstreamError(f"upstream {self.name!r} answered HTTP {status} without a response")
        return reply

    async def reply(self, message: Message, session: str | None = None) -> None:
        if self._fallback is not None:
            await self._fallback.reply(message, session)
            return
        if self._era != "legacy" and session is None:
            return  # 2026-07-28 servers ask through InputRequiredResult, never by request
        await self._post_once(message, self._session_headers(session), self.limits.connect_timeout_seconds)

    async def notify(self, method: str, params: Mapping[str, Any] | None, session: str | None = None) -> None:
        if self._fallback is not None:
            await self._fallback.notify(method, params, session)
            return
        if self._era != "legacy" and session is None:
            return
        await self._post_once(
            wire.notification(method, params),
            self._session_headers(session),
            self.limits.connect_timeout_seconds,
        )

    async def listen(self, session: str, on_message: Callable[[Message], Awaitable[None]]) -> None:
        if self._fallback is not None:
            await self._fallback.listen(session, on_message)
            return
        headers = {**self._headers, "Accept": "text/event-stream", **self._session_headers(session)}
        async with self._http.get(
            self.config.url, headers=headers, timeout=_STREAM_TIMEOUT, **self._egress
        ) as resp:
            if resp.status != 200 or resp.content_type != "text/event-stream":
                return
            async for event in read_events(resp.content.iter_any(), self.limits.max_message_bytes):
                message = _decode(event.data)
                if message is not None:
                    await on_message(message)

    async def open_session(self, client: ClientContext) -> str | None:
        """A session of the upstream's own for a session-era client: also on a 2026-07-28 server
        that serves the session era too (most do), so the client keeps its era end to end: the
        server may ask it mid-call, log to it, and take its subscriptions."""
        if self._fallback is not None:
            return await self._fallback.open_session(client)
        if not self._up:
            return None
        offered = client.protocol_version if client.protocol_version in wire.HANDSHAKE_VERSIONS else None
        status, reply, session = await self._initialize(
            client, offered or wire.LATEST_HANDSHAKE, self.limits.connect_timeout_seconds
        )
        if reply is None or "result" not in reply:
            if self._era == "modern":
                return None  # 2026-07-28 only: the client's requests go statelessly
            raise UpstreamError(f"initialize for a client failed: {_describe_reply(status, reply)}")
        if not session:
            return None  # a server without sessions: the proxy's own headers will do
        return f"{reply['result'].get('protocolVersion') or wire.LATEST_HANDSHAKE} {session}"

    async def close_session(self, session: str) -> None:
        if self._fallback is not None:
            await self._fallback.close_session(session)
            return
        headers = {**self._headers, **self._session_headers(session)}
        async with self._http.delete(
            self.config.url,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self.limits.connect_timeout_seconds),
            **self._egress,
        ):
            pass

    # ----------------------------------------------------------------------------------- transport

    async def _post_once(
        self,
        message: Message,
        headers: Mapping[str, str],
        within: float,
        exchange: Exchange | None = None,
        *,
        cancellable: bool = False,
    ) -> tuple[int, Message | None, str | None]:
        """POST one message: (HTTP status, the response to it if any, the Mcp-Session-Id header)."""
        sent_session = "Mcp-Session-Id" in headers
        try:
            async with asyncio.timeout(within):
                async with self._http.post(
                    self.config.url,
                    data=wire.dumps(message),
                    headers={**self._headers, **headers},
                    **self._egress,
                ) as resp:
                    session = resp.headers.get("Mcp-Session-Id")
                    if resp.status == 404 and sent_session:
                        raise SessionLost(f"upstream {self.name!r} no longer knows the session")
                    if resp.status == 202 or "id" not in message:
                        return resp.status, None, session
                    if resp.status == 200 and resp.content_type == "text/event-stream":
                        on_message = exchange.on_message if exchange is not None else None
                        return (
                            resp.status,
                            await self._await_response(resp, message["id"], on_message),
                            session,
                        )
                    body = await _read_limited(resp, self.limits.max_message_bytes)
                    return resp.status, _decode(body), session
        except TimeoutError:
            if cancellable:
                self._cancel_upstream(message, headers, "timeout")
            raise UpstreamTimeout(f"upstream {self.name!r} did not answer within {within:g} s") from None
        except asyncio.CancelledError:
            if cancellable:
                self._cancel_upstream(message, headers, "cancelled by the client")
            raise
        except EventTooLarge as e:
            raise UpstreamError(f"upstream {self.name!r}: {e}") from None
        except aiohttp.ClientPayloadError as e:
            raise UpstreamError(f"upstream {self.name!r}: {_describe(e)}") from None

    async def _await_response(
        self, resp: aiohttp.ClientResponse, request_id: Any, on_message: Any
    ) -> Message | None:
        async for event in read_events(resp.content.iter_any(), self.limits.max_message_bytes):
            message = _decode(event.data)
            if message is None:
                log.warning("upstream sent an undecodable event", upstream=self.name)
                continue
            if wire.is_response(message) and message.get("id") == request_id:
                return message
            if on_message is not None:
                await on_message(message)
        raise UpstreamError(f"upstream {self.name!r} ended the stream without a response")

    def _cancel_upstream(self, message: Message, headers: Mapping[str, str], reason: str) -> None:
        # Closing the stream is cancellation at 2026-07-28; the session era also wants to be told.
        if "Mcp-Method" not in headers:
            cancel = wire.notification(
                "notifications/cancelled", {"requestId": message["id"], "reason": reason}
            )
            self._spawn(self._post_once(cancel, headers, self.limits.connect_timeout_seconds))

    def _spawn(self, coro: Any) -> None:
        async def quietly() -> None:
            with contextlib.suppress(Exception):
                await coro

        task = asyncio.create_task(quietly())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


# Streams are held open for as long as the server keeps them; only connecting is bounded.
_STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)


async def _read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise UpstreamError(f"a response exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(data: bytes | str) -> Message | None:
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return message if isinstance(message, dict) else None


def _describe(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _describe_reply(status: int, reply: Message | None) -> str:
    if reply is not None and isinstance(reply.get("error"), dict):
        return f"HTTP {status}: {reply['error'].get('message')}"
    return f"HTTP {status}"
