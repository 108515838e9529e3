"""The older HTTP+SSE transport (MCP 2024-11-05).

``SseUpstream`` GETs the server's URL with ``Accept: text/event-stream`` and waits for the
``endpoint`` event, which names where to POST messages (a relative or absolute URL, resolved against
the configured URL; one on another origin is refused, so credentials never leave for a host the
config did not name). Every message to the server is a POST there (202 expected); every message from
the server is a ``message`` event on the stream. One stream serves every client of the proxy pod
through an ``RpcPeer``; when it drops, requests in flight fail with ``UpstreamError`` and the
upstream reconnects with backoff (a new stream is a new session: a new handshake).

Credentials (``auth``) are read from the environment once, at ``start()``, and sent on the GET and
every POST. ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` are honoured (``http.egress``, once per URL).
Redirects are not followed: the configured URL is the one credentials go to.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Final

import aiohttp
import orjson
import structlog
from yarl import URL

from agentkube.dataplane.mcp import config
from agentkube.dataplane.mcp.events import SseEvent, SseParser
from agentkube.dataplane.mcp.http import auth_headers, egress
from agentkube.dataplane.mcp.rpc import PeerUpstream, Send
from agentkube.dataplane.mcp.upstream import Message, UpstreamError

__all__ = ["SseUpstream", "resolve_endpoint"]

log = structlog.get_logger("agentkube.mcp.sse")

# What the server answers a POSTed message with: 202 Accepted per the spec; 200/204 seen in the wild.
_POST_OK: Final = frozenset({200, 202, 204})


def resolve_endpoint(base: URL, data: str) -> URL:
    """The POST URL an ``endpoint`` event names, resolved against ``base``; another origin is refused."""
    try:
        endpoint = base.join(URL(data.strip()))
    except ValueError as error:
        raise UpstreamError("the endpoint event is not a URL") from error
    if (endpoint.scheme, endpoint.host, endpoint.port) != (base.scheme, base.host, base.port):
        raise UpstreamError(
            f"the server named an endpoint on another origin ({endpoint.scheme}://{endpoint.host}:"
            f"{endpoint.port}); refused"
        )
    return endpoint


class SseUpstream(PeerUpstream):
    """An MCP server on the HTTP+SSE transport of 2024-11-05 (see the module docstring).

    ``http`` is the proxy's shared client session (the upstream
    never closes it); without one, each connection makes its own. ``environ`` is where
    ``auth.secretEnv`` is read (default: the proxy's ``os.environ``).
    """

    def __init__(
        self,
        upstream: config.HttpUpstream,
        limits: config.Limits,
        http: aiohttp.ClientSession | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(upstream.name, limits)
        self.config = upstream
        self._http = http
        self._environ = environ
        self._url = URL(upstream.url)
        self._auth: dict[str, str] = {}
        self._auth_problem: str | None = None

    async def start(self) -> None:
        try:
            self._auth, self._auth_problem = auth_headers(self.config.auth, self._environ), None
        except UpstreamError as error:
            self._auth, self._auth_problem = {}, str(error)
            log.error("upstream auth not available", upstream=self.name, reason=self._auth_problem)
        await super().start()

    async def _connect(self, stack: contextlib.AsyncExitStack) -> tuple[Send, AsyncIterator[bytes | str]]:
        if self._auth_problem is not None:
            raise UpstreamError(f"{self.name}: {self._auth_problem}")
        timeout = self._limits.connect_timeout_seconds
        session = self._http
        if session is None:
            session = await stack.enter_async_context(
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout),
                    cookie_jar=aiohttp.DummyCookieJar(),
                )
            )
        headers = {**self._auth, "Accept": "text/event-stream", "Cache-Control": "no-cache"}
        # The stream lives as long as the connection: no total or read timeout, whatever the
        # session's defaults.
        stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=None)
        try:
            response = await stack.enter_async_context(
                session.get(
                    self._url,
                    headers=headers,
                    allow_redirects=False,
                    timeout=stream_timeout,
                    **egress(self._url),
                )
            )
        except aiohttp.ClientError as error:
            raise UpstreamError(f"{self.name}: GET {self._url}: {type(error).__name__}: {error}") from error
        if response.status != 200:
            raise UpstreamError(f"{self.name}: GET {self._url} answered {response.status}")
        if response.content_type != "text/event-stream":
            raise UpstreamError(
                f"{self.name}: GET {self._url} answered {response.content_type!r}, not an event stream"
            )
        events = self._events(response)
        stack.push_async_callback(events.aclose)
        endpoint: URL | None = None
        async for event in events:
            if event.event == "endpoint":
                endpoint = self._resolve(event.data)
                break
        if endpoint is None:
            raise UpstreamError(f"{self.name}: the stream ended before its endpoint event")
        return self._poster(session, endpoint), self._messages(events)

    def _resolve(self, data: str) -> URL:
        try:
            return resolve_endpoint(self._url, data)
        except UpstreamError as error:
            raise UpstreamError(f"{self.name}: {error}") from None

    def _poster(self, session: aiohttp.ClientSession, endpoint: URL) -> Send:
        headers = {**self._auth, "Content-Type": "application/json"}
        timeout = aiohttp.ClientTimeout(total=self._limits.connect_timeout_seconds)
        via = egress(endpoint)

        async def post(message: Message) -> None:
            try:
                body = orjson.dumps(message)
                async with session.post(
                    endpoint, data=body, headers=headers, allow_redirects=False, timeout=timeout, **via
                ) as response:
                    if response.status not in _POST_OK:
                        raise UpstreamError(f"{self.name}: POST of a message answered {response.status}")
            except aiohttp.ClientError as error:
                raise UpstreamError(f"{self.name}: POST of a message: {type(error).__name__}") from error
            except TimeoutError:
                raise UpstreamError(f"{self.name}: POST of a message timed out") from None

        return post

    async def _events(self, response: aiohttp.ClientResponse) -> AsyncGenerator[SseEvent, None]:
        parser = SseParser(self._limits.max_message_bytes)
        dropped = 0
        async for chunk in response.content.iter_any():
            for event in parser.feed(chunk):
                yield event
            if parser.dropped != dropped:
                dropped = parser.dropped
                log.warning(
                    "skipped an event over the size limit",
                    upstream=self.name,
                    limit_bytes=self._limits.max_message_bytes,
                )

    async def _messages(self, events: AsyncIterator[SseEvent]) -> AsyncIterator[bytes | str]:
        async for event in events:
            if event.event == "message":
                yield event.data
            else:
                log.debug("ignored an event", upstream=self.name, event=event.event)
