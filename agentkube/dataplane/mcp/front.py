"""The front: MCP over Streamable HTTP towards clients, both protocol eras on one endpoint.

A POST whose ``MCP-Protocol-Version`` header names 2026-07-28 (or any version the session era does
not know) is a stateless request: its ``_meta`` envelope and routing headers are checked in the
order the revision gives (envelope -> headers -> version) and it is answered on its own. Any other
POST belongs to the session era: ``initialize`` starts a session whose id is the sealed
``SessionState`` (``sessions.py``), so any replica can continue it; later requests carry that id in
``Mcp-Session-Id``; GET opens the session's notification stream and DELETE ends it.

What clients may rely on:

- Answers are JSON unless something must be streamed before the result (a progress or logging
  notification, a server-to-client request of the upstream): then the response turns into an SSE
  stream, and stays one (with keep-alive comments) for a call that runs longer than
  ``KEEPALIVE_SECONDS``.
- The status codes the transport names: 400 for a malformed or unsupported request (the JSON-RPC
  error says which), 403 for an ``Origin`` that is not allowed, 404 for an unknown or expired session
  (the client then starts a new one), 405 for a method the endpoint does not serve, 406 when
  ``Accept`` lacks ``application/json`` or ``text/event-stream``, 413 for a body over the limit,
  415 for a body that is not ``application/json``.
- A name the catalog does not route (unknown, hidden by a filter, lost in a collision) is an unknown
  tool or prompt (-32602), whatever the client claims: the filter is a security boundary.
- A client's credentials (``Authorization``, cookies, any header) are never forwarded upstream.
- ``_meta`` (progress tokens, trace context, anything else) goes upstream as the client sent it; with
  tracing on (``OTEL_EXPORTER_OTLP_*``), ``traceparent`` names the proxy's own span of that hop,
  a child of the client's.
- Server-to-client requests of a session-era upstream reach session-era clients with an id the
  proxy wraps (``ak/<upstream>/<original id>``), so the client's answer can be routed by any replica
  (the upstream session it belongs to is in the client's sealed state).

- A 2026-07-28 upstream that answers ``InputRequiredResult`` to a session-era client has its
  questions put to the client as server-to-client requests on the call's stream, and the call is
  retried upstream with the answers (the retry and the answers stay on the replica that asked).

- A session-era upstream that asks a 2026-07-28 client mid-call (sampling, elicitation, roots):
  the client gets an ``InputRequiredResult`` at once, the upstream call stays open, and the client's
  retry with ``inputResponses`` hands the answers to the upstream and continues that same call.

Known limits: that retry must reach the replica holding the upstream call (another answers -32602
and the client starts over); a session-era client's answer to a question reaches the
replica that asked only if its POST does (another replica logs it and the call times out); and a
DELETEd session id stays usable on other replicas until it expires or an upstream refuses its
session.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from aiohttp import web

from agentkube.dataplane.mcp import wire
from agentkube.dataplane.mcp.catalog import LIST_METHODS, Catalog, Kind
from agentkube.dataplane.mcp.config import MCPProxyConfig
from agentkube.dataplane.mcp.events import PING, format_event
from agentkube.dataplane.mcp.metrics import ProxyMetrics, method_label
from agentkube.dataplane.mcp.sessions import InvalidSession, Sealer, SessionState
from agentkube.dataplane.mcp.upstream import (
    PROXY_INFO,
    ClientContext,
    Exchange,
    Message,
    SessionLost,
    Upstream,
    UpstreamError,
    UpstreamTimeout,
)

__all__ = ["KEEPALIVE_SECONDS", "Front", "RpcError"]

log = structlog.get_logger("agentkube.mcp.front")

KEEPALIVE_SECONDS = 15.0
RESOURCE_NOT_FOUND = -32002
SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
WRAPPED_ID_PREFIX = "ak/"
INPUT_ID_PREFIX = "ak-input/"
MAX_INPUT_ROUNDS = 8
PARKED_STATE_PREFIX = "agentkube-parked:"
SUBSCRIPTION_ID_KEY = "io.modelcontextprotocol/subscriptionId"
# The session era's HTTP transport (2025-03-26) assumes this version when a client sends no header.
DEFAULT_SESSION_VERSION = "2025-03-26"
_ROUTING_HEADERS = ("mcp-protocol-version", "mcp-method", "mcp-name")
_CORS_HEADERS = (
    "Content-Type, Accept, Authorization, Mcp-Session-Id, MCP-Protocol-Version, Mcp-Method, Mcp-Name"
)


class RpcError(Exception):
    """A JSON-RPC error to answer with."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class _SessionGone(Exception):
    """An upstream lost the client's session: answer 404 so the client starts a new one."""


@dataclass
class _Call:
    """One client request being answered."""

    era: str
    """``modern``, ``legacy``, or ``retry``: the proxy's own retry of a 2026-07-28 upstream call with
    answers it collected (no stream, nothing to relay)."""
    client: ClientContext
    request_id: Any
    state: SessionState | None = None
    emit: Callable[[Message], Awaitable[None]] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    questions: list[tuple[str, Message]] | None = None
    """2026-07-28 calls: server-to-client requests of session-era upstreams, to be put to the client
    as an ``InputRequiredResult``."""
    asked: asyncio.Future[None] | None = None
    """Done once ``questions`` has one (a future, not a task: cheap on every request)."""

    def ask(self, upstream: str, message: Message) -> None:
        assert self.questions is not None and self.asked is not None
        self.questions.append((upstream, message))
        if not self.asked.done():
            self.asked.set_result(None)


@dataclass
class _Parked:
    """A call waiting for a 2026-07-28 client's answers (see ``Front._park``)."""

    call: _Call
    task: asyncio.Future[Any]
    questions: dict[str, tuple[str, Any]]
    """Input request key -> (upstream, the upstream's request id)."""


class _Stream:
    """A response that is JSON until something must be streamed, then SSE for good."""

    def __init__(self, request: web.Request, headers: Mapping[str, str]) -> None:
        self.request = request
        self.headers = dict(headers)
        self.sse: web.StreamResponse | None = None
        self.lock = asyncio.Lock()

    async def commit(self) -> web.StreamResponse:
        if self.sse is None:
            sse = web.StreamResponse(
                status=200,
                headers={
                    **self.headers,
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache, no-transform",
                    "X-Accel-Buffering": "no",
                },
            )
            await sse.prepare(self.request)
            self.sse = sse
        return self.sse

    async def send(self, message: Message) -> None:
        async with self.lock:
            sse = await self.commit()
            await sse.write(format_event(wire.dumps(message)))

    async def ping(self) -> None:
        async with self.lock:
            sse = await self.commit()
            await sse.write(PING)

    async def finish(self, message: Message, status: int) -> web.StreamResponse:
        if self.sse is None:
            return _json(message, status, self.headers)
        async with self.lock:
            await self.sse.write(format_event(wire.dumps(message)))
            await self.sse.write_eof()
        return self.sse


class Front:
    """The client-facing MCP endpoint; ``routes`` registers it on an aiohttp application."""

    def __init__(
        self,
        config: MCPProxyConfig,
        catalog: Catalog,
        upstreams: Mapping[str, Upstream],
        sealer: Sealer,
        metrics: ProxyMetrics,
        server_version: str = str(PROXY_INFO["version"]),
        tracer: Any = None,
    ) -> None:
        """tracer: an OpenTelemetry tracer (``dataplane.tracing``), or None for no spans."""
        self.config = config
        self.catalog = catalog
        self.upstreams = dict(upstreams)
        self.sealer = sealer
        self.metrics = metrics
        self.tracer = tracer
        self.server_info = {"name": str(PROXY_INFO["name"]), "title": config.name, "version": server_version}
        self._allowed_origins = {o.rstrip("/").lower() for o in config.allowed_origins}
        self._allowed_hosts = {"localhost", "127.0.0.1", "[::1]", *(h.lower() for h in config.allowed_hosts)}
        self._streams: set[asyncio.Queue[Message | None]] = set()
        self._inflight: dict[tuple[str, str], asyncio.Task[Any]] = {}
        self._deleted: OrderedDict[str, None] = OrderedDict()
        self._asked: dict[str, asyncio.Future[Message]] = {}
        self._parked: dict[str, _Parked] = {}
        self._closing = False

    def routes(self, app: web.Application) -> None:
        for path in ("/", "/mcp"):
            app.router.add_route("*", path, self.handle)

    # --------------------------------------------------------------------------------- broadcast

    def list_changed(self, kind: str) -> None:
        """The filtered surface of ``kind`` changed: tell every open notification stream."""
        message = wire.notification(f"notifications/{kind}/list_changed")
        for queue in list(self._streams):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(message)

    async def drain(self) -> None:
        """End every notification stream (SIGTERM): clients reconnect to a replica that stays."""
        self._closing = True
        for queue in list(self._streams):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    # ------------------------------------------------------------------------------------- HTTP

    async def handle(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin, request):
            return _json(wire.error(None, wire.INVALID_REQUEST, f"Origin {origin} is not allowed"), 403)
        cors = self._cors(origin)
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=cors)
        if request.method == "POST":
            return await self._post(request, cors)
        if request.method == "GET":
            return await self._get(request, cors)
        if request.method == "DELETE":
            return await self._delete(request, cors)
        return web.Response(status=405, headers={"Allow": "GET, POST, DELETE", **cors})

    def _origin_allowed(self, origin: str, request: web.Request) -> bool:
        """A configured origin, or the request's own host when that host is the proxy's: the Host of
        a DNS-rebinding page names the attacker's domain, which resolves to us but is not ours."""
        normal = origin.rstrip("/").lower()
        if normal in self._allowed_origins:
            return True
        host = (request.host or "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in self._allowed_hosts and normal in (f"http://{host}", f"https://{host}")

    def _cors(self, origin: str | None) -> dict[str, str]:
        if origin is None:
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, POST, DELETE",
            "Access-Control-Allow-Headers": _CORS_HEADERS,
            "Access-Control-Expose-Headers": "Mcp-Session-Id",
            "Vary": "Origin",
        }

    async def _read_body(self, request: web.Request) -> bytes | web.Response:
        limit = self.config.limits.max_request_bytes
        if request.content_length is not None and request.content_length > limit:
            return _json(wire.error(None, wire.INVALID_REQUEST, f"request body exceeds {limit} bytes"), 413)
        body = bytearray()
        async for chunk in request.content.iter_chunked(65536):
            body += chunk
            if len(body) > limit:
                return _json(
                    wire.error(None, wire.INVALID_REQUEST, f"request body exceeds {limit} bytes"), 413
                )
        return bytes(body)

    async def _post(self, request: web.Request, cors: dict[str, str]) -> web.StreamResponse:
        if request.content_type != "application/json":
            return _json(
                wire.error(None, wire.INVALID_REQUEST, "Content-Type must be application/json"), 415, cors
            )
        accepts_json, accepts_sse = _accepts(request)
        if not (accepts_json and accepts_sse):
            return _json(
                wire.error(
                    None, wire.INVALID_REQUEST, "Accept must list application/json and text/event-stream"
                ),
                406,
                cors,
            )
        body = await self._read_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _json(wire.error(None, wire.PARSE_ERROR, "Parse error: the body is not JSON"), 400, cors)
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return _json(
                wire.error(
                    None, wire.INVALID_REQUEST, "the body must be one JSON-RPC 2.0 message (no batches)"
                ),
                400,
                cors,
            )
        version = request.headers.get(VERSION_HEADER)
        if version is not None and version not in wire.HANDSHAKE_VERSIONS:
            return await self._modern(request, message, cors)
        return await self._legacy(request, message, cors)

    # --------------------------------------------------------------------------------- modern era

    async def _modern(
        self, request: web.Request, message: Message, cors: dict[str, str]
    ) -> web.StreamResponse:
        if "method" not in message:
            return _json(
                wire.error(None, wire.INVALID_REQUEST, "a 2026-07-28 client sends no responses"), 400, cors
            )
        if "id" not in message:
            version = request.headers.get(VERSION_HEADER, "")
            if version not in wire.MODERN_VERSIONS:
                return _json(_unsupported(None, version), 400, cors)
            return web.Response(status=202, headers=cors)
        request_id = message["id"]
        method = message["method"]
        rejection = _check_modern(request, message)
        if rejection is not None:
            self.metrics.requests.labels(
                method_label(method), "modern", str(rejection["error"]["code"])
            ).inc()
            return _json(rejection, wire.error_status(rejection["error"]["code"]), cors)
        meta = message["params"]["_meta"]
        client = ClientContext(
            capabilities=meta.get(wire.CAPABILITIES_KEY) or {},
            info=meta.get(wire.CLIENT_INFO_KEY),
            protocol_version=wire.MODERN,
        )
        if method == "subscriptions/listen":
            return await self._listen(request, message, cors)
        stream = _Stream(request, cors)
        call = _Call(
            era="modern",
            client=client,
            request_id=request_id,
            emit=stream.send,
            headers=request.headers,
            questions=[],
            asked=asyncio.get_running_loop().create_future(),
        )
        params = message["params"]
        state = params.get("requestState")
        if isinstance(state, str) and state.startswith(PARKED_STATE_PREFIX):
            return await self._resume(stream, call, method, params)
        return await self._answer(stream, call, method, params)

    async def _listen(
        self, request: web.Request, message: Message, cors: dict[str, str]
    ) -> web.StreamResponse:
        wanted = (message.get("params") or {}).get("notifications") or {}
        honoured = {
            key: True
            for key in ("toolsListChanged", "promptsListChanged", "resourcesListChanged")
            if isinstance(wanted, dict) and wanted.get(key) is True
        }
        kinds = {f"notifications/{key[: -len('ListChanged')]}/list_changed" for key in honoured}
        stream = _Stream(request, cors)
        tag = {SUBSCRIPTION_ID_KEY: message["id"]}
        acknowledged = {"notifications": honoured, "_meta": tag}
        await stream.send(wire.notification("notifications/subscriptions/acknowledged", acknowledged))

        def tagged(note: Message) -> Message | None:
            # Every message of a listen stream names the subscription it belongs to.
            if note.get("method") not in kinds:
                return None
            return {**note, "params": {**(note.get("params") or {}), "_meta": tag}}

        await self._hold(stream, "listen", tagged)
        if stream.sse is not None and not _gone(request):
            done = wire.response(message["id"], {"resultType": "complete", "_meta": tag})
            with contextlib.suppress(ConnectionError):
                await stream.finish(done, 200)
        return stream.sse or web.Response(status=200, headers=cors)

    # --------------------------------------------------------------------------------- session era

    async def _legacy(
        self, request: web.Request, message: Message, cors: dict[str, str]
    ) -> web.StreamResponse:
        method = message.get("method")
        if method == "initialize" and "id" in message:
            return await self._initialize(request, message, cors)
        state_or_error = self._session(request, cors)
        if isinstance(state_or_error, web.Response):
            return state_or_error
        state = state_or_error
        if wire.is_response(message):
            await self._client_response(message, state)
            return web.Response(status=202, headers=cors)
        if "method" not in message or not isinstance(method, str):
            return _json(
                wire.error(message.get("id"), wire.INVALID_REQUEST, "not a JSON-RPC request"), 400, cors
            )
        if "id" not in message:
            await self._client_notification(method, message.get("params"), state)
            return web.Response(status=202, headers=cors)
        client = ClientContext(
            capabilities=state.client_capabilities,
            info=state.client_info,
            protocol_version=state.protocol_version,
        )
        stream = _Stream(request, {**cors, SESSION_HEADER: request.headers[SESSION_HEADER]})
        call = _Call(era="legacy", client=client, request_id=message["id"], state=state, emit=stream.send)
        key = (state.sid, orjson.dumps(message["id"]).decode())
        task = asyncio.current_task()
        if task is not None:
            self._inflight[key] = task
        try:
            return await self._answer(stream, call, method, message.get("params"))
        except asyncio.CancelledError:
            if task is not None and task.cancelling() and not _gone(request):
                # Cancelled by the client's notifications/cancelled: it expects no response.
                task.uncancel()
                return web.Response(status=204, headers=cors)
            raise
        finally:
            self._inflight.pop(key, None)

    def _session(self, request: web.Request, cors: dict[str, str]) -> SessionState | web.Response:
        token = request.headers.get(SESSION_HEADER)
        if not token:
            return _json(
                wire.error(None, wire.INVALID_REQUEST, "Mcp-Session-Id is required: send initialize first"),
                400,
                cors,
            )
        try:
            state = self.sealer.open(token)
        except InvalidSession as e:
            self.metrics.session_rejections.labels(e.reason).inc()
            return _json(wire.error(None, wire.INVALID_REQUEST, "Session not found"), 404, cors)
        if state.sid in self._deleted:
            self.metrics.session_rejections.labels("deleted").inc()
            return _json(wire.error(None, wire.INVALID_REQUEST, "Session not found"), 404, cors)
        return state

    async def _initialize(
        self, request: web.Request, message: Message, cors: dict[str, str]
    ) -> web.StreamResponse:
        params = message.get("params")
        if not isinstance(params, dict):
            return _json(wire.error(message["id"], wire.INVALID_PARAMS, "initialize needs params"), 200, cors)
        asked = params.get("protocolVersion")
        version = asked if asked in wire.SESSION_VERSIONS else wire.SESSION_VERSIONS[0]
        capabilities = params.get("capabilities") if isinstance(params.get("capabilities"), dict) else {}
        info = params.get("clientInfo") if isinstance(params.get("clientInfo"), dict) else None
        client = ClientContext(capabilities=capabilities or {}, info=info, protocol_version=version)
        sessions = await self._open_upstream_sessions(client)
        state = self.sealer.new_state(version, dict(capabilities or {}), info, sessions)
        token = self.sealer.seal(state)
        self.metrics.sessions.labels(version).inc()
        self.metrics.requests.labels("initialize", "legacy", "ok").inc()
        result = {
            "protocolVersion": version,
            "capabilities": self._capabilities(subscribe=True),
            "serverInfo": self.server_info,
        }
        log.info("session started", session=state.sid, version=version, upstream_sessions=sorted(sessions))
        return _json(wire.response(message["id"], result), 200, {**cors, SESSION_HEADER: token})

    async def _open_upstream_sessions(self, client: ClientContext) -> dict[str, str]:
        async def one(name: str, upstream: Upstream) -> tuple[str, str | None]:
            try:
                return name, await upstream.open_session(client)
            except (UpstreamError, OSError, TimeoutError) as e:
                # Its requests fall back to the proxy's own session with that upstream.
                log.warning("could not open an upstream session", upstream=name, error=str(e))
                return name, None

        opened = await asyncio.gather(*(one(n, u) for n, u in self.upstreams.items() if u.up))
        return {name: session for name, session in opened if session}

    async def _client_response(self, message: Message, state: SessionState) -> None:
        """The client answers a server-to-client request the proxy relayed: back to its upstream."""
        wrapped = message.get("id")
        log.debug("client answered", id=wrapped)
        if isinstance(wrapped, str) and wrapped in self._asked:
            if not self._asked[wrapped].done():
                self._asked[wrapped].set_result(message)
            return
        if isinstance(wrapped, str) and wrapped.startswith(INPUT_ID_PREFIX):
            log.warning("a client answered a question another replica asked; that call will time out")
            return
        if not isinstance(wrapped, str) or not wrapped.startswith(WRAPPED_ID_PREFIX):
            log.debug("client answered a request the proxy never sent", id=wrapped)
            return
        name, _, original = wrapped[len(WRAPPED_ID_PREFIX) :].partition("/")
        upstream = self.upstreams.get(name)
        try:
            original_id = orjson.loads(original)
        except orjson.JSONDecodeError:
            return
        if upstream is None:
            return
        reply = {**message, "id": original_id}
        try:
            await upstream.reply(reply, state.upstream_sessions.get(name))
        except (UpstreamError, OSError, TimeoutError) as e:
            log.warning("could not hand the client's answer to the upstream", upstream=name, error=str(e))

    async def _client_notification(self, method: str, params: Any, state: SessionState) -> None:
        if method == "notifications/cancelled" and isinstance(params, dict):
            key = (state.sid, orjson.dumps(params.get("requestId")).decode())
            task = self._inflight.get(key)
            if task is not None:
                task.cancel()  # the upstream learns of it from the cancelled forward
                return
            # Another replica holds the call: the upstream knows it by the client's own id.
            await self._to_upstream_sessions(method, params, state)
        elif method == "notifications/roots/list_changed":
            await self._to_upstream_sessions(method, params, state)

    async def _to_upstream_sessions(self, method: str, params: Any, state: SessionState) -> None:
        for name, session in state.upstream_sessions.items():
            upstream = self.upstreams.get(name)
            if upstream is not None:
                with contextlib.suppress(UpstreamError, OSError, TimeoutError):
                    await upstream.notify(method, params, session)

    async def _get(self, request: web.Request, cors: dict[str, str]) -> web.StreamResponse:
        version = request.headers.get(VERSION_HEADER)
        if version is not None and version not in wire.SESSION_VERSIONS:
            return web.Response(status=405, headers={"Allow": "POST", **cors})
        _, accepts_sse = _accepts(request)
        if not accepts_sse:
            return _json(
                wire.error(None, wire.INVALID_REQUEST, "Accept must list text/event-stream"), 406, cors
            )
        state = self._session(request, cors)
        if isinstance(state, web.Response):
            return state
        stream = _Stream(request, {**cors, SESSION_HEADER: request.headers[SESSION_HEADER]})
        await stream.commit()
        # The client's stream mirrors each upstream's stream of the client's own session: what a
        # server says to that session outside any call (list changes, resource updates, logs,
        # requests such as roots/list) arrives here.
        client = ClientContext(capabilities=state.client_capabilities, info=state.client_info)
        call = _Call(era="legacy", client=client, request_id=None, state=state, emit=stream.send)
        mirrors = [
            asyncio.create_task(self._mirror(name, session, call))
            for name, session in state.upstream_sessions.items()
            if name in self.upstreams
        ]
        try:
            await self._hold(stream, "get", lambda note: note)
        finally:
            for task in mirrors:
                task.cancel()
        return stream.sse or web.Response(status=200)

    async def _mirror(self, name: str, session: str, call: _Call) -> None:
        async def relay(message: Message) -> None:
            await self._relay(name, message, call, session)

        try:
            await self.upstreams[name].listen(session, relay)
        except (UpstreamError, OSError, TimeoutError, ValueError) as e:
            log.debug("upstream stream of a client session ended", upstream=name, error=str(e))

    async def _delete(self, request: web.Request, cors: dict[str, str]) -> web.StreamResponse:
        version = request.headers.get(VERSION_HEADER)
        if version is not None and version not in wire.SESSION_VERSIONS:
            return web.Response(status=405, headers={"Allow": "POST", **cors})
        state = self._session(request, cors)
        if isinstance(state, web.Response):
            return state
        self._deleted[state.sid] = None
        while len(self._deleted) > 65536:
            self._deleted.popitem(last=False)
        for name, session in state.upstream_sessions.items():
            upstream = self.upstreams.get(name)
            if upstream is not None:
                with contextlib.suppress(UpstreamError, OSError, TimeoutError):
                    await upstream.close_session(session)
        log.info("session ended", session=state.sid)
        return web.Response(status=200, headers=cors)

    async def _hold(self, stream: _Stream, kind: str, pick: Callable[[Message], Message | None]) -> None:
        """Relay list-change notifications on ``stream`` until the client leaves or the proxy drains;
        ``pick`` says what of each goes to this stream (None: nothing)."""
        if self._closing:
            return
        queue: asyncio.Queue[Message | None] = asyncio.Queue(maxsize=64)
        self._streams.add(queue)
        gauge = self.metrics.streams.labels(kind)
        gauge.inc()
        try:
            while True:
                try:
                    note = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await stream.ping()
                    continue
                if note is None:
                    return
                picked = pick(note)
                if picked is not None:
                    await stream.send(picked)
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._streams.discard(queue)
            gauge.dec()

    # ---------------------------------------------------------------------------------- dispatch

    async def _answer(
        self,
        stream: _Stream,
        call: _Call,
        method: str,
        params: Any,
        task: asyncio.Future[Any] | None = None,
    ) -> web.StreamResponse:
        started = time.perf_counter()
        label = method_label(method)
        if task is None:
            task = self._start(method, params if isinstance(params, dict) else None, call)
        parked = False
        try:
            waiting: set[asyncio.Future[Any]] = {task} if call.asked is None else {task, call.asked}
            while True:
                done, _ = await asyncio.wait(
                    waiting, timeout=KEEPALIVE_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
                if task in done:
                    break
                if call.asked is not None and call.asked.done():
                    parked = True
                    return await stream.finish(self._park(call, task), 200)
                await stream.ping()  # a long call: keep the stream alive through idle timeouts
            result = task.result()
        except RpcError as e:
            self.metrics.requests.labels(label, call.era, str(e.code)).inc()
            status = wire.error_status(e.code) if call.era == "modern" else 200
            return await stream.finish(wire.error(call.request_id, e.code, e.message, e.data), status)
        except _SessionGone:
            self.metrics.requests.labels(label, call.era, "session_lost").inc()
            return _json(
                wire.error(call.request_id, wire.INVALID_REQUEST, "Session not found"), 404, stream.headers
            )
        except BaseException:
            if not parked:
                task.cancel()
            raise
        finally:
            self.metrics.request_seconds.labels(label).observe(time.perf_counter() - started)
        self.metrics.requests.labels(label, call.era, "ok").inc()
        return await stream.finish(wire.response(call.request_id, result), 200)

    def _start(self, method: str, params: dict[str, Any] | None, call: _Call) -> asyncio.Future[Any]:
        """Run the dispatch as a task; with tracing, inside a server span whose parent is the
        client's trace (``_meta.traceparent``, as MCP carries it, or the HTTP ``traceparent``)."""
        if self.tracer is None:
            return asyncio.ensure_future(self._dispatch(method, params, call))
        from opentelemetry import propagate, trace

        meta = (params or {}).get("_meta")
        carrier = {k: v for k, v in (meta if isinstance(meta, dict) else {}).items() if isinstance(v, str)}
        if "traceparent" not in carrier:
            carrier = {
                k.lower(): v for k, v in call.headers.items() if k.lower() in ("traceparent", "tracestate")
            }
        attributes: dict[str, str] = {
            "mcp.method.name": method,
            "mcp.protocol.version": call.client.protocol_version or "",
        }
        name = (params or {}).get("name")
        if method in ("tools/call", "prompts/get") and isinstance(name, str):
            attributes["gen_ai.tool.name" if method == "tools/call" else "gen_ai.prompt.name"] = name
        if call.state is not None:
            attributes["mcp.session.id"] = call.state.sid
        span = self.tracer.start_span(
            f"{method} {name}" if isinstance(name, str) else method,
            context=propagate.extract(carrier),
            kind=trace.SpanKind.SERVER,
            attributes=attributes,
        )
        with trace.use_span(span, end_on_exit=False):
            task = asyncio.ensure_future(self._dispatch(method, params, call))

        def end(done: asyncio.Future[Any]) -> None:
            error = None if done.cancelled() else done.exception()
            if isinstance(error, RpcError):
                span.set_attribute("rpc.jsonrpc.error_code", error.code)
                span.set_status(trace.Status(trace.StatusCode.ERROR, error.message))
            elif error is not None or done.cancelled():
                span.set_status(
                    trace.Status(trace.StatusCode.ERROR, type(error).__name__ if error else "cancelled")
                )
            span.end()

        task.add_done_callback(end)
        return task

    def _traced(self, name: str, method: str, params: dict[str, Any], headers: dict[str, str]) -> Any:
        """A client span for the upstream hop; its context goes upstream in ``_meta`` and headers."""
        if self.tracer is None:
            return contextlib.nullcontext()
        from opentelemetry import propagate, trace

        span = self.tracer.start_as_current_span(
            f"{method} upstream",
            kind=trace.SpanKind.CLIENT,
            attributes={"mcp.method.name": method, "mcp.upstream": name},
        )

        @contextlib.contextmanager
        def hop() -> Any:
            with span:
                carrier: dict[str, str] = {}
                propagate.inject(carrier)
                meta = params.get("_meta")
                params["_meta"] = {**(meta if isinstance(meta, dict) else {}), **carrier}
                headers.update(carrier)
                yield

        return hop()

    async def _dispatch(self, method: str, params: dict[str, Any] | None, call: _Call) -> Any:
        modern = call.era == "modern"
        params = params or {}
        kind = _LISTS.get(method)
        if kind is not None:
            result: dict[str, Any] = {kind: self.catalog.list(kind)}
            if modern:
                result.update(resultType="complete", ttlMs=0, cacheScope="private")
            return result
        if method == "tools/call":
            name = _string(params, "name", method)
            route = self.catalog.route_tool(name)
            if route is None:
                raise RpcError(wire.INVALID_PARAMS, f"Unknown tool: {name}")
            return await self._call_tool(name, route.upstream, route.name, params, call)
        if method == "prompts/get":
            name = _string(params, "name", method)
            route = self.catalog.route_prompt(name)
            if route is None:
                raise RpcError(wire.INVALID_PARAMS, f"Unknown prompt: {name}")
            return await self._forward(route.upstream, method, {**params, "name": route.name}, call)
        if method == "resources/read":
            uri = _string(params, "uri", method)
            owner = self.catalog.route_resource(uri)
            if owner is None:
                # -32002 in the session era; 2026-07-28 (SEP-2164) makes it invalid params.
                code = wire.INVALID_PARAMS if modern else RESOURCE_NOT_FOUND
                raise RpcError(code, f"Resource not found: {uri}", {"uri": uri})
            return await self._forward(owner, method, params, call)
        if method in ("resources/subscribe", "resources/unsubscribe") and not modern:
            # The upstream's notifications/resources/updated reach the client's GET stream, which
            # mirrors the upstream session's stream.
            uri = _string(params, "uri", method)
            owner = self.catalog.route_resource(uri)
            if owner is None:
                raise RpcError(RESOURCE_NOT_FOUND, f"Resource not found: {uri}", {"uri": uri})
            if call.state is None or owner not in call.state.upstream_sessions:
                raise RpcError(wire.METHOD_NOT_FOUND, f"{method}: the server of {uri} takes no subscriptions")
            return await self._forward(owner, method, params, call)
        if method == "completion/complete":
            return await self._complete(params, call)
        if method == "ping" and not modern:
            return {}
        if method == "logging/setLevel" and not modern:
            # The level is the session's: set it on each upstream session the client has.
            for name in call.state.upstream_sessions if call.state else ():
                with contextlib.suppress(RpcError, _SessionGone):
                    await self._forward(name, method, params, _Call("legacy", call.client, None, call.state))
            return {}
        if method == "server/discover" and modern:
            return {
                "supportedVersions": list(wire.SERVED_VERSIONS),
                "capabilities": self._capabilities(),
                "serverInfo": self.server_info,
                "ttlMs": 0,
                "cacheScope": "private",
                "resultType": "complete",
            }
        raise RpcError(wire.METHOD_NOT_FOUND, f"Method not found: {method}")

    def _park(self, call: _Call, task: asyncio.Future[Any]) -> Message:
        """A session-era upstream asks a 2026-07-28 client mid-call: answer the client with an
        ``InputRequiredResult`` and keep the upstream call running until the client retries."""
        assert call.questions is not None
        asked, call.questions = call.questions, []
        token = secrets.token_urlsafe(18)
        questions = {f"q{i}": (upstream, message) for i, (upstream, message) in enumerate(asked)}
        self._parked[token] = _Parked(call, task, {k: (u, m["id"]) for k, (u, m) in questions.items()})
        task.add_done_callback(lambda _: self._parked.pop(token, None))
        requests = {
            k: {"method": m["method"], "params": m.get("params") or {}} for k, (_, m) in questions.items()
        }
        return wire.response(
            call.request_id,
            {
                "resultType": "input_required",
                "inputRequests": requests,
                "requestState": PARKED_STATE_PREFIX + token,
            },
        )

    async def _resume(
        self, stream: _Stream, call: _Call, method: str, params: dict[str, Any]
    ) -> web.StreamResponse:
        """The client retries with answers to the questions ``_park`` put: hand them upstream and
        wait on the same upstream call."""
        token = str(params.get("requestState"))[len(PARKED_STATE_PREFIX) :]
        parked = self._parked.pop(token, None)
        if parked is None:
            error = wire.error(
                call.request_id,
                wire.INVALID_PARAMS,
                "requestState names no call waiting on this replica (it ended, or another replica holds it): "
                "call again without requestState",
            )
            return await stream.finish(error, 400)
        given = params.get("inputResponses")
        answers: dict[str, Any] = given if isinstance(given, dict) else {}
        for key, (upstream, upstream_id) in parked.questions.items():
            answer = answers.get(key)
            reply = (
                wire.response(upstream_id, answer)
                if answer is not None
                else wire.error(upstream_id, wire.INVALID_PARAMS, "the client gave no answer")
            )
            with contextlib.suppress(UpstreamError, OSError, TimeoutError):
                await self.upstreams[upstream].reply(reply, None)
        # The same call object carries on, now answering this request on this stream.
        held = parked.call
        held.request_id, held.emit = call.request_id, stream.send
        held.questions, held.asked = [], asyncio.get_running_loop().create_future()
        return await self._answer(stream, held, method, params, task=parked.task)

    def _capabilities(self, *, subscribe: bool = False) -> dict[str, Any]:
        return {
            "tools": {"listChanged": True},
            "prompts": {"listChanged": True},
            "resources": {"listChanged": True, "subscribe": subscribe},
            "completions": {},
            "logging": {},
        }

    async def _complete(self, params: dict[str, Any], call: _Call) -> Any:
        ref = params.get("ref")
        if not isinstance(ref, dict):
            raise RpcError(wire.INVALID_PARAMS, "completion/complete needs params.ref")
        if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
            route = self.catalog.route_prompt(ref["name"])
            if route is None:
                raise RpcError(wire.INVALID_PARAMS, f"Unknown prompt: {ref['name']}")
            return await self._forward(
                route.upstream, "completion/complete", {**params, "ref": {**ref, "name": route.name}}, call
            )
        if ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
            owner = self.catalog.route_resource(ref["uri"])
            if owner is None:
                raise RpcError(RESOURCE_NOT_FOUND, f"Resource not found: {ref['uri']}")
            return await self._forward(owner, "completion/complete", params, call)
        raise RpcError(wire.INVALID_PARAMS, "params.ref must be a ref/prompt or ref/resource")

    async def _call_tool(
        self, name: str, upstream: str, original: str, params: dict[str, Any], call: _Call
    ) -> Any:
        started = time.perf_counter()
        outcome = "error"
        tool = self.catalog.item("tools", name) or {}
        expected = wire.param_headers(tool.get("inputSchema"), params.get("arguments"))
        if call.era == "modern":
            # As a server of 2026-07-28 the proxy checks the headers against the body; upstream it
            # sends the headers it computed, so they always agree.
            sent = {
                k.lower(): wire.decode_header_value(v)
                for k, v in call.headers.items()
                if k.lower().startswith("mcp-param-")
            }
            if sent != {k.lower(): wire.decode_header_value(v) for k, v in expected.items()}:
                raise RpcError(wire.HEADER_MISMATCH, "Mcp-Param-* headers do not match the tool's arguments")
        try:
            result = await self._forward(upstream, "tools/call", {**params, "name": original}, call, expected)
            outcome = "tool_error" if isinstance(result, dict) and result.get("isError") else "ok"
            return result
        finally:
            self.metrics.tool_calls.labels(upstream, name, outcome).inc()
            self.metrics.tool_call_seconds.labels(upstream).observe(time.perf_counter() - started)

    async def _forward(
        self,
        name: str,
        method: str,
        params: dict[str, Any],
        call: _Call,
        param_headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one request to upstream ``name``; its result, or ``RpcError``. ``param_headers``: the
        ``Mcp-Param-*`` headers of a ``tools/call`` (computed from its arguments, whatever era the
        client speaks)."""
        upstream = self.upstreams[name]
        session = call.state.upstream_sessions.get(name) if call.state is not None else None

        async def relay(message: Message) -> None:
            await self._relay(name, message, call, session)

        headers = dict(param_headers or {})
        exchange = Exchange(
            on_message=relay,
            client=call.client,
            session=session,
            request_id=call.request_id if session is not None else None,
            headers=headers,
        )
        try:
            with self._traced(name, method, params, headers):
                reply = await upstream.request(method, params, exchange)
        except SessionLost:
            if session is not None:
                log.info("upstream lost the client's session", upstream=name)
                raise _SessionGone from None
            raise RpcError(wire.INTERNAL_ERROR, f"upstream {name!r} restarted; retry the request") from None
        except UpstreamTimeout as e:
            raise RpcError(wire.REQUEST_TIMEOUT, str(e)) from None
        except UpstreamError as e:
            raise RpcError(wire.INTERNAL_ERROR, str(e)) from None
        error = reply.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            raise RpcError(
                code if isinstance(code, int) else wire.INTERNAL_ERROR,
                str(error.get("message") or "upstream error"),
                error.get("data"),
            )
        if "result" not in reply:
            raise RpcError(wire.INTERNAL_ERROR, f"upstream {name!r} sent a response without a result")
        result = reply["result"]
        if not isinstance(result, dict):
            return result
        if call.era == "legacy" and result.get("resultType") == "input_required":
            return await self._ask_for_input(name, method, params, result, call, headers)
        if call.era == "modern" and "resultType" not in result:
            # A session-era upstream's result, on the 2026-07-28 wire, where these fields are required.
            result = {**result, "resultType": "complete"}
            if method == "resources/read":
                result.setdefault("ttlMs", 0)
                result.setdefault("cacheScope", "private")
        return result

    async def _ask_for_input(
        self,
        name: str,
        method: str,
        params: dict[str, Any],
        result: dict[str, Any],
        call: _Call,
        param_headers: Mapping[str, str],
    ) -> Any:
        """A 2026-07-28 upstream needs input from a session-era client: ask it the session era's way
        (server-to-client requests on this call's stream), then retry upstream with the answers."""
        for _ in range(MAX_INPUT_ROUNDS):
            requests = result.get("inputRequests") or {}
            if not isinstance(requests, dict) or call.emit is None:
                raise RpcError(
                    wire.INTERNAL_ERROR, f"upstream {name!r} asked for input in a form the proxy cannot relay"
                )
            answers: dict[str, Any] = {}
            for key, asked in requests.items():
                if not isinstance(asked, dict) or not isinstance(asked.get("method"), str):
                    raise RpcError(wire.INTERNAL_ERROR, f"upstream {name!r} sent a malformed input request")
                answers[key] = await self._ask_client(call, asked)
            retry = {**params, "inputResponses": answers}
            if "requestState" in result:
                retry["requestState"] = result["requestState"]
            else:
                retry.pop("requestState", None)
            retry_call = _Call("retry", call.client, None, call.state)
            result = await self._forward(name, method, retry, retry_call, param_headers)
            if not (isinstance(result, dict) and result.get("resultType") == "input_required"):
                return result
        raise RpcError(
            wire.INTERNAL_ERROR, f"upstream {name!r} kept asking for input ({MAX_INPUT_ROUNDS} rounds)"
        )

    async def _ask_client(self, call: _Call, asked: dict[str, Any]) -> Any:
        assert call.emit is not None
        wrapped = f"{INPUT_ID_PREFIX}{secrets.token_hex(12)}"
        answer: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._asked[wrapped] = answer
        try:
            await call.emit(wire.request(wrapped, asked["method"], asked.get("params") or {}))
            message = await answer
        finally:
            self._asked.pop(wrapped, None)
        if isinstance(message.get("error"), dict):
            error = message["error"]
            raise RpcError(
                int(error.get("code") or wire.INTERNAL_ERROR), str(error.get("message")), error.get("data")
            )
        return message.get("result")

    async def _relay(self, upstream: str, message: Message, call: _Call, session: str | None) -> None:
        """A message of the upstream's that belongs to this call: on to the client."""
        log.debug("relaying", upstream=upstream, method=message.get("method"), era=call.era)
        if wire.is_request(message):
            method = str(message.get("method"))
            need = wire.NEEDED_CAPABILITY.get(method)
            if need is not None and need not in call.client.capabilities:
                refusal = f"{method}: the client did not declare the {need} capability"
            elif call.questions is not None:
                call.ask(upstream, message)  # put to a 2026-07-28 client by _park
                return
            elif call.era == "legacy" and call.emit is not None:
                wrapped_id = f"{WRAPPED_ID_PREFIX}{upstream}/{orjson.dumps(message['id']).decode()}"
                await call.emit({**message, "id": wrapped_id})
                return
            else:
                refusal = f"{method}: there is no client to ask"
            with contextlib.suppress(UpstreamError, OSError, TimeoutError):
                await self.upstreams[upstream].reply(
                    wire.error(message["id"], wire.METHOD_NOT_FOUND, refusal), session
                )
            return
        if not wire.is_notification(message):
            return
        kind = wire.list_kind(str(message.get("method")))
        if kind is not None:
            # What clients may see is the filtered surface: the proxy re-reads the list and tells
            # every client if that changed, rather than passing on the upstream's word.
            self.upstreams[upstream].changed(kind)
        elif call.emit is not None:
            await call.emit(message)


_LISTS: Mapping[str, Kind] = {method: kind for kind, method in LIST_METHODS.items()}
"""List methods and the catalog kind (and result field) each answers with."""


def _string(params: Mapping[str, Any], key: str, method: str) -> str:
    value = params.get(key)
    if not isinstance(value, str):
        raise RpcError(wire.INVALID_PARAMS, f"{method} needs a string params.{key}")
    return value


def _gone(request: web.Request) -> bool:
    """Whether the client has hung up."""
    return request.transport is None or request.transport.is_closing()


def _accepts(request: web.Request) -> tuple[bool, bool]:
    types = {part.split(";")[0].strip().lower() for part in request.headers.get("Accept", "").split(",")}
    anything = "*/*" in types
    return (
        anything or "application/json" in types or "application/*" in types,
        anything or "text/event-stream" in types or "text/*" in types,
    )


def _unsupported(request_id: Any, requested: str) -> Message:
    return wire.error(
        request_id,
        wire.UNSUPPORTED_VERSION,
        "Unsupported protocol version",
        {"supported": list(wire.SERVED_VERSIONS), "requested": requested},
    )


def _check_modern(request: web.Request, message: Message) -> Message | None:
    """The 2026-07-28 request ladder: envelope, then routing headers, then version; the first error."""
    request_id = message.get("id")
    for name in _ROUTING_HEADERS:
        if len(request.headers.getall(name, [])) > 1:
            return wire.error(request_id, wire.HEADER_MISMATCH, f"{name} header appears more than once")
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(meta, dict):
        return wire.error(
            request_id,
            wire.INVALID_PARAMS,
            f"params._meta must be an object with {wire.PROTOCOL_VERSION_KEY} and {wire.CAPABILITIES_KEY}",
        )
    missing = [k for k in (wire.PROTOCOL_VERSION_KEY, wire.CAPABILITIES_KEY) if k not in meta]
    if missing:
        return wire.error(request_id, wire.INVALID_PARAMS, f"params._meta lacks {', '.join(missing)}")
    version = meta[wire.PROTOCOL_VERSION_KEY]
    if request.headers.get(VERSION_HEADER) != version:
        return wire.error(
            request_id, wire.HEADER_MISMATCH, "MCP-Protocol-Version header does not match params._meta"
        )
    method = message.get("method")
    if request.headers.get("Mcp-Method") != method:
        return wire.error(request_id, wire.HEADER_MISMATCH, "Mcp-Method header does not match the method")
    key = wire.NAME_PARAMS.get(method) if isinstance(method, str) else None
    named = params.get(key) if key is not None and isinstance(params, dict) else None
    if named is not None and wire.decode_header_value(request.headers.get("Mcp-Name")) != named:
        return wire.error(request_id, wire.HEADER_MISMATCH, f"Mcp-Name header does not match params.{key}")
    capabilities, info = meta[wire.CAPABILITIES_KEY], meta.get(wire.CLIENT_INFO_KEY)
    if not isinstance(capabilities, dict) or not (info is None or isinstance(info, dict)):
        return wire.error(
            request_id, wire.INVALID_PARAMS, "client capabilities and info in params._meta must be objects"
        )
    if not isinstance(version, str):
        return wire.error(
            request_id, wire.INVALID_PARAMS, "the protocol version in params._meta must be a string"
        )
    if version not in wire.MODERN_VERSIONS:
        return _unsupported(request_id, version)
    return None


def _json(message: Message, status: int, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=wire.dumps(message), status=status, content_type="application/json", headers=dict(headers or {})
    )
