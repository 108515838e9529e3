"""A lean HTTP/1.1 server for the data plane's hot path: the LLM gateway's API port.

aiohttp's web server is general (middlewares, signals, a request object of many lazy parts, an
access logger, timers per request) and costs about 45 µs of CPU per request more than a bare
protocol on this project's benchmark machine. This server is an ``asyncio.Protocol`` with
``httptools`` (llhttp, Node's parser) reading requests, and the small part of aiohttp's ``web`` API
the gateway uses: ``Request``, ``Response``, ``StreamResponse`` and a router, ``Routes``.

What a caller may rely on:

- ``Routes`` maps a method and a path to a handler (``async (Request) -> StreamResponse``): fixed
  paths (looked up in a dict first), then patterns in the order added, whose one variable ends the
  path: ``{name}`` (one segment), ``{name:.+}`` (the rest, not empty), ``{name:.*}`` (the rest,
  maybe empty); the value goes into ``request.match_info``. Method ``*`` matches any. ``add_get``
  serves ``HEAD`` too (the body left out). A path nothing matches is a 404, a path matched with
  another method a 405 with ``Allow`` (both JSON ``{"error": {"message", "type"}}``).
- A ``Request`` has ``method``, ``path`` (percent-decoded, no query), ``query`` (a
  ``MultiDictProxy``), ``headers`` (a ``CIMultiDictProxy``; names and values read as latin-1, so
  bytes pass through unchanged), ``content_length``, ``match_info``, ``transport`` (None once the
  connection closed) and ``content``: the body as it arrives (``readexactly``, ``readany``,
  ``read``, ``iter_chunked``), chunked bodies decoded. ``Expect: 100-continue`` is answered with
  ``100 Continue`` when the handler first waits for the body.
- A handler returns a ``Response`` (written in one ``write`` with ``Content-Length`` and ``Date``)
  or a ``StreamResponse`` whose head it sent with ``prepare`` (chunked unless it set
  ``Content-Length``) and whose body it sent with ``write`` (each call one chunk, sent at once,
  waiting while the socket's buffer is above its high-water mark); one not ended is ended for
  it. Writing to a client that went away raises ``ConnectionResetError``. A header value with a
  line break is refused (``ValueError``).
- Connections are kept alive (HTTP/1.1's default; ``Connection: close`` and HTTP/1.0 honoured);
  pipelined requests are answered in order, each by a handler in a Task of its own (started when
  its head has arrived, its body fed as it comes). An answer that ends the connection says
  ``Connection: close``. A client that disconnects cancels its running handler.
- Limits: a request's line and headers at most ``max_head`` bytes (64 KiB) and one header at most
  ``max_field`` (16 KiB), else 431 and the connection closes; input that is not HTTP/1.1 is a 400
  and the connection closes (the server goes on; after such a refusal the server half-closes and
  drops what the client still sends, so the refusal is not lost to a reset). A body is buffered
  at most ``high_water`` bytes (256 KiB) and one read past what its handler has read (then the
  connection stops reading: TCP flow control); what a handler leaves unread is read and dropped,
  so the connection can serve the next request. A
  connection with no request in progress for ``keepalive_seconds`` (75 s; a head that never
  completes counts too) is closed by one timer for the whole server, not one per request.
- A handler that raises is logged (method and path, never headers or body) and answered 500, or,
  when its answer's head was sent already, its connection is closed (the client sees the answer
  cut short). The server logs nothing per request.
- ``Server.shutdown(grace)`` stops listening, closes idle connections, lets requests in flight
  finish for up to ``grace`` seconds (closing each connection after its answer), then cancels the
  handlers left and closes every connection.

Limits: no TLS, no HTTP/2, no protocol upgrades (an ``Upgrade`` or ``CONNECT`` request is answered as
plain HTTP and its connection closed); with ``host=None`` and port 0, each interface family may get
a port of its own and ``Server.port`` is the first.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Final, cast
from urllib.parse import parse_qsl, unquote

import httptools
import orjson
import structlog
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

__all__ = ["Body", "Handler", "Request", "Response", "Routes", "Server", "StreamResponse"]

log = structlog.get_logger("agentkube.dataplane")

Handler = Callable[["Request"], Awaitable["StreamResponse"]]

_MAX_HEAD: Final = 65536
_MAX_FIELD: Final = 16384
_HIGH_WATER: Final = 1 << 18
_KEEPALIVE: Final = 75.0
_MAX_PIPELINED: Final = 16
"""Requests queued behind the one being answered before the connection stops reading."""

_STATUS_LINES: Final = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n" for s in HTTPStatus}
_OWNED: Final = frozenset({"content-length", "transfer-encoding", "connection", "date"})
"""Headers the server writes itself (a ``StreamResponse`` may give its ``Content-Length``)."""
_NO_BODY: Final = frozenset({204, 304})
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_METHODS: Final = {m.encode(): m for m in ("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH")}


class _Clock:
    """The ``Date`` header's value, formatted once a second."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def __call__(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second, self._text = second, email.utils.formatdate(second, usegmt=True)
        return self._text


_date = _Clock()


class _HeadTooLarge(Exception):
    """Raised inside a parser callback: the head is over a limit (the parser stops there)."""


# ----------------------------------------------------------------------------------- requests


class Body:
    """A request's body as it arrives (``request.content``); read by its handler only."""

    __slots__ = ("_chunks", "_conn", "_continue", "_discard", "_done", "_error", "_size", "_waiter")

    def __init__(self, conn: _Connection, expect_continue: bool) -> None:
        self._conn = conn
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._done = False
        self._error: str | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._continue = expect_continue
        """The client waits for ``100 Continue`` before it sends the body (not sent yet)."""
        self._discard = False

    # -- fed by the connection

    def _feed(self, chunk: bytes) -> None:
        self._continue = False  # it is coming anyway
        if self._discard:
            return
        self._chunks.append(chunk)
        self._size += len(chunk)
        conn = self._conn
        conn.buffered += len(chunk)
        if conn.buffered > conn.server.high_water:
            conn.flow()
        self._wake()

    def _finish(self, error: str | None = None) -> None:
        if not self._done:
            self._done = True
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _drop(self) -> None:
        """The handler is done: what is buffered and what still comes is dropped."""
        self._discard = True
        if self._size:
            self._conn.buffered -= self._size
            self._chunks.clear()
            self._size = 0
            self._conn.flow()

    # -- read by the handler

    def at_eof(self) -> bool:
        """Whether the whole body has arrived and been read."""
        return self._done and not self._size

    async def _wait(self) -> None:
        conn = self._conn
        if self._continue:
            self._continue = False
            conn.send_interim(_CONTINUE)
        waiter = self._waiter = conn.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _take(self, n: int) -> bytes:
        chunks = self._chunks
        if n == self._size:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
        else:
            parts: list[bytes] = []
            got = 0
            while got < n:
                chunk = chunks.popleft()
                need = n - got
                if len(chunk) > need:
                    parts.append(chunk[:need])
                    chunks.appendleft(chunk[need:])
                    got = n
                else:
                    parts.append(chunk)
                    got += len(chunk)
            data = b"".join(parts)
        self._size -= n
        conn = self._conn
        conn.buffered -= n
        if conn.read_paused:
            conn.flow()
        return data

    async def readany(self) -> bytes:
        """What has arrived since the last read (waiting for something); ``b""`` at the end.

        Raises ``ConnectionResetError`` when the body ends early (the client went away, or its
        chunked framing is broken)."""
        while not self._size:
            if self._done:
                if self._error is not None:
                    raise ConnectionResetError(self._error)
                return b""
            await self._wait()
        return self._take(self._size)

    async def readexactly(self, n: int) -> bytes:
        """The next ``n`` bytes; ``asyncio.IncompleteReadError`` (``.partial``: what came) when the
        body ends first."""
        if self._size >= n:
            return self._take(n)
        # Taken as it comes (not left buffered until all of it is there): the connection goes on
        # reading past its high-water mark only into what the handler asked for.
        parts: list[bytes] = []
        got = 0
        while got < n:
            if self._size:
                chunk = self._take(min(self._size, n - got))
                parts.append(chunk)
                got += len(chunk)
            elif self._done:
                raise asyncio.IncompleteReadError(b"".join(parts), n)
            else:
                await self._wait()
        return b"".join(parts)

    async def read(self) -> bytes:
        """The rest of the body (``ConnectionResetError`` when it ends early)."""
        parts: list[bytes] = []
        while chunk := await self.readany():
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        """The body as it arrives, in pieces of at most ``n`` bytes (``ConnectionResetError`` when
        it ends early)."""
        while chunk := await self.readany():
            if len(chunk) <= n:
                yield chunk
            else:
                for start in range(0, len(chunk), n):
                    yield chunk[start : start + n]


class Request:
    """One request: its head at once, its body (``content``) as it arrives."""

    __slots__ = (
        "_conn",
        "_finished",
        "_head_sent",
        "_http11",
        "_keep",
        "_keep_alive",
        "_query",
        "content",
        "headers",
        "match_info",
        "method",
        "path",
        "query_string",
    )

    def __init__(
        self,
        conn: _Connection,
        method: str,
        path: str,
        query_string: str,
        headers: CIMultiDictProxy[str],
        *,
        http11: bool,
        keep_alive: bool,
        content: Body,
    ) -> None:
        self._conn = conn
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.content = content
        self.match_info: dict[str, str] = {}
        self._http11 = http11
        self._keep_alive = keep_alive
        """What the client asked for (``parser.should_keep_alive()``)."""
        self._query: MultiDictProxy[str] | None = None
        self._head_sent = False
        self._keep = False
        """Whether the answer's head promised to keep the connection."""
        self._finished = False
        """The whole answer was written."""

    @property
    def query(self) -> MultiDictProxy[str]:
        query = self._query
        if query is None:
            pairs = parse_qsl(self.query_string, keep_blank_values=True) if self.query_string else []
            query = self._query = MultiDictProxy(MultiDict(pairs))
        return query

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None else None  # llhttp let only digits through

    @property
    def transport(self) -> asyncio.Transport | None:
        conn = self._conn
        return None if conn.lost else conn.transport

    async def read(self) -> bytes:
        """The whole body."""
        return await self.content.read()


def _target(raw: bytes) -> tuple[str, str]:
    """The decoded path and the raw query string of a request target."""
    if raw[:1] == b"/":
        path_bytes, _, query = raw.partition(b"?")
    elif raw == b"*":
        return "*", ""
    else:  # absolute form (``GET http://host/path``), or an authority (``CONNECT host:port``)
        try:
            url = httptools.parse_url(raw)
        except httptools.HttpParserInvalidURLError:
            return raw.decode("latin-1"), ""
        path_bytes, query = url.path or b"/", url.query or b""
    path = path_bytes.decode("utf-8", "replace")
    if "%" in path:
        path = unquote(path)
    return path, query.decode("latin-1")


# ------------------------------------------------------------------------------------ answers


class StreamResponse:
    """An answer written as it is made: ``prepare`` sends the head, ``write`` each piece."""

    __slots__ = ("_bodyless", "_chunked", "_conn", "_eof", "_request", "headers", "prepared", "status")

    def __init__(self, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.headers: CIMultiDict[str] = CIMultiDict(headers) if headers else CIMultiDict()
        self.prepared = False
        self._conn: _Connection | None = None
        self._request: Request | None = None
        self._chunked = False
        self._bodyless = False
        self._eof = False

    async def prepare(self, request: Request) -> None:
        """Send the head (once): ``Transfer-Encoding: chunked`` unless ``Content-Length`` was given."""
        if self.prepared:
            return
        conn = request._conn
        keep = conn.keeps(request)
        status = self.status
        self._bodyless = request.method == "HEAD" or status in _NO_BODY or status < 200
        length = self.headers.get("Content-Length")
        if length is not None:
            framing = f"Content-Length: {length}\r\n"
        elif self._bodyless:
            framing = ""
        elif request._http11:
            framing = "Transfer-Encoding: chunked\r\n"
            self._chunked = True
        else:  # an HTTP/1.0 client knows no chunks: the end of the connection is the end of the body
            framing = ""
            keep = False
        head = _head(status, self.headers, keep, framing)
        self._conn, self._request = conn, request
        request._head_sent, request._keep = True, keep
        self.prepared = True
        conn.send(head)
        if conn.write_paused:
            await conn.drain()

    async def write(self, data: bytes) -> None:
        """Send ``data`` (one chunk) now; waits while the socket's buffer is full."""
        conn = self._conn
        if conn is None or self._eof:
            raise RuntimeError("write() needs a prepared answer that has not ended")
        if not data or self._bodyless:
            return
        conn.send(b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data)
        if conn.write_paused:
            await conn.drain()

    async def write_eof(self, data: bytes = b"") -> None:
        """Send ``data`` and end the answer."""
        if self._eof:
            return
        if data:
            await self.write(data)
        conn, request = self._conn, self._request
        if conn is None or request is None:
            raise RuntimeError("write_eof() needs a prepared answer")
        self._eof = True
        if self._chunked:
            conn.send(b"0\r\n\r\n")
        request._finished = True


class Response(StreamResponse):
    """A whole answer: ``body`` (or ``text``, utf-8, ``text/plain`` unless a Content-Type is given)."""

    __slots__ = ("body",)

    def __init__(
        self,
        *,
        status: int = 200,
        body: bytes | None = None,
        text: str | None = None,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        super().__init__(status, headers)
        if text is not None:
            body = text.encode("utf-8")
            if content_type is None and "Content-Type" not in self.headers:
                content_type = "text/plain; charset=utf-8"
        if content_type is not None:
            self.headers["Content-Type"] = content_type
        self.body = body if body is not None else b""

    async def prepare(self, request: Request) -> None:
        """Send the whole answer."""
        if not self.prepared:
            request._conn.write_whole(request, self)


def _head(status: int, headers: CIMultiDict[str], keep: bool, framing: str) -> bytes:
    parts = [_STATUS_LINES.get(status) or f"HTTP/1.1 {status} \r\n"]
    for name, value in headers.items():
        if name.lower() in _OWNED:
            continue
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise ValueError(f"header {name}: a value may not contain a line break")
        parts.append(f"{name}: {value}\r\n")
    parts.append(framing)
    parts.append(f"Date: {_date()}\r\n")
    parts.append("\r\n" if keep else "Connection: close\r\n\r\n")
    return "".join(parts).encode("latin-1")


def _plain(status: int, text: str) -> bytes:
    """A whole answer that closes the connection (the server's own refusals)."""
    body = text.encode("utf-8")
    headers = CIMultiDict({"Content-Type": "text/plain; charset=utf-8"})
    return _head(status, headers, False, f"Content-Length: {len(body)}\r\n") + body


def _error_json(message: str, kind: str) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": kind}})


# ------------------------------------------------------------------------------------- routes


class _Pattern:
    __slots__ = ("kind", "methods", "name", "prefix", "source")

    def __init__(self, source: str, prefix: str, name: str, kind: str) -> None:
        self.source = source
        self.prefix = prefix
        self.name = name
        self.kind = kind  # "segment", "rest" (.+) or "any" (.*)
        self.methods: dict[str, Handler] = {}

    def match(self, path: str) -> str | None:
        if not path.startswith(self.prefix):
            return None
        rest = path[len(self.prefix) :]
        if self.kind == "any":
            return rest
        if not rest or (self.kind == "segment" and "/" in rest):
            return None
        return rest


class Routes:
    """Handlers by method and path (see the module's docstring for the patterns)."""

    def __init__(self, *, not_found: Handler | None = None) -> None:
        """not_found: the handler of a path no route matches (default: a JSON 404)."""
        self._fixed: dict[str, dict[str, Handler]] = {}
        self._patterns: list[_Pattern] = []
        self._not_found: Handler = not_found or _not_found

    def add_get(self, path: str, handler: Handler) -> None:
        self.add_route("GET", path, handler)
        self.add_route("HEAD", path, handler)

    def add_post(self, path: str, handler: Handler) -> None:
        self.add_route("POST", path, handler)

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """``method``: a method or ``*`` (any); raises ``ValueError`` for a pattern not supported."""
        method = method.upper()
        if not path.startswith("/"):
            raise ValueError(f"route {path!r}: a path begins with /")
        if "{" not in path and "}" not in path:
            self._fixed.setdefault(path, {})[method] = handler
            return
        pattern = _parse_pattern(path)
        for known in self._patterns:
            if known.source == path:
                pattern = known
                break
        else:
            self._patterns.append(pattern)
        pattern.methods[method] = handler

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler for ``method`` and ``path`` and what its pattern matched (a 404 or 405
        handler when none)."""
        allowed: list[str] = []
        methods = self._fixed.get(path)
        if methods is not None:
            handler = methods.get(method) or methods.get("*")
            if handler is not None:
                return handler, {}
            allowed += methods
        for pattern in self._patterns:
            value = pattern.match(path)
            if value is None:
                continue
            handler = pattern.methods.get(method) or pattern.methods.get("*")
            if handler is not None:
                return handler, {pattern.name: value}
            allowed += pattern.methods
        if allowed:
            return _not_allowed(sorted(set(allowed))), {}
        return self._not_found, {}


def _parse_pattern(path: str) -> _Pattern:
    start = path.find("{")
    if start < 0 or not path.endswith("}") or path.count("{") != 1 or path.count("}") != 1:
        raise ValueError(
            f"route {path!r}: one variable, at the end of the path ({{name}}, {{name:.+}}, {{name:.*}})"
        )
    name, _, regex = path[start + 1 : -1].partition(":")
    kinds = {"": "segment", ".+": "rest", ".*": "any"}
    if not name.isidentifier() or regex not in kinds:
        raise ValueError(f"route {path!r}: a variable is {{name}}, {{name:.+}} or {{name:.*}}")
    return _Pattern(path, path[:start], name, kinds[regex])


async def _not_found(request: Request) -> StreamResponse:
    return Response(
        status=404, body=_error_json("not found", "not_found"), headers={"Content-Type": "application/json"}
    )


def _not_allowed(allowed: list[str]) -> Handler:
    async def handler(request: Request) -> StreamResponse:
        return Response(
            status=405,
            body=_error_json(f"{request.method} is not allowed on {request.path}", "method_not_allowed"),
            headers={"Content-Type": "application/json", "Allow": ", ".join(allowed)},
        )

    return handler


# --------------------------------------------------------------------------------- connection


class _Refusal:
    """A queued answer of the server's own (after the answers owed before it); then the end."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class _Connection(asyncio.Protocol):
    """One client connection: requests parsed as bytes arrive, answered one at a time, in order."""

    def __init__(self, server: Server, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._fields: list[tuple[str, str]] = []
        self._head_size = 0
        self._head_fed = 0
        self._in_head = False
        self._begun = 0
        self._too_large = False
        self._receiving: Body | None = None
        """The body being parsed (None: between requests, or dropping an ignored one)."""
        self._task: asyncio.Task[None] | None = None
        self._current: Request | None = None
        self._pending: deque[Request | _Refusal] = deque()
        self._closing = False
        """No request after the one being answered is served: the connection ends after it."""
        self._no_more = False
        """The last request said the connection ends with it: later bytes are not parsed."""
        self._broken = False
        """Nothing more is parsed (bad input, an upgrade, or closed)."""
        self._lingering = False
        """Refused and half closed: what the client still sends is read and dropped."""
        self.buffered = 0
        """Body bytes parsed and not yet read by their handlers."""
        self.read_paused = False
        self.write_paused = False
        self._drains: list[asyncio.Future[None]] = []
        self.idle_since = 0.0

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport
        self.server.connections.add(self)
        self.idle_since = self.loop.time()
        self.server.idle(self)

    def data_received(self, data: bytes) -> None:
        if self._broken or (self._no_more and self._receiving is None):
            return
        in_head = self._in_head
        begun = self._begun
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # An upgrade (or CONNECT) is answered as plain HTTP; what follows its head is not HTTP.
            self._closing = self._broken = True
            body = self._receiving
            if body is not None:
                self._receiving = None
                body._finish()
            self.flow()
            return
        except httptools.HttpParserError as e:
            if self._too_large:
                self._refuse(
                    431,
                    f"431 Request Header Fields Too Large: a request's head may have {self.server.max_head} "
                    f"bytes, and one header {self.server.max_field}\n",
                )
            elif self._no_more and self._receiving is None:
                self._broken = True  # bytes after a request that ended the connection: ignored
            else:
                self._refuse(400, f"400 Bad Request: {e}\n")
            return
        if self._in_head and in_head and begun == self._begun:
            # A head still incomplete across whole reads: llhttp keeps an unfinished header itself,
            # so its size is bounded here (to within one read).
            self._head_fed += len(data)
            if self._head_fed > self.server.max_head:
                self._too_large = True
                self._refuse(431, "431 Request Header Fields Too Large\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._broken = self._closing = True
        self.server.connections.discard(self)
        task = self._task
        if task is not None and not task.done():
            task.cancel()  # nobody reads the answer: the handler's work stops
        why = "the client closed the connection inside its request body"
        if self._receiving is not None:
            self._receiving._finish(why)
        if self._current is not None:
            self._current.content._finish(why)
        for item in self._pending:
            if isinstance(item, Request):
                item.content._finish(why)
        self._pending.clear()
        for waiter in self._drains:
            if not waiter.done():
                waiter.set_exception(ConnectionResetError("the client closed the connection"))
        self._drains.clear()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        for waiter in self._drains:
            if not waiter.done():
                waiter.set_result(None)
        self._drains.clear()

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        self._in_head = True
        self._begun += 1
        self._url = b""
        self._fields = []
        self._head_size = 0
        self._head_fed = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > self.server.max_head:
            self._too_large = True
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        self._head_size += size + 4
        if size > self.server.max_field or self._head_size > self.server.max_head:
            self._too_large = True
            raise _HeadTooLarge
        self._fields.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._closing or self._no_more:
            self._receiving = None  # after an answer that ends the connection: not served
            return
        parser = self._parser
        headers = CIMultiDictProxy(CIMultiDict(self._fields))
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("latin-1")
        path, query = _target(self._url)
        http11 = parser.get_http_version() == "1.1"
        keep_alive = parser.should_keep_alive()
        if not keep_alive:
            self._no_more = True
        expect = headers.get("Expect")
        body = Body(self, http11 and expect is not None and expect.lower() == "100-continue")
        self._receiving = body
        request = Request(
            self, method, path, query, headers, http11=http11, keep_alive=keep_alive, content=body
        )
        if self._task is None and not self._pending:
            self._start(request)
        else:
            self._pending.append(request)
            self.flow()

    def on_body(self, body: bytes) -> None:
        receiving = self._receiving
        if receiving is not None:
            receiving._feed(body)

    def on_message_complete(self) -> None:
        body = self._receiving
        self._receiving = None
        if body is not None:
            body._finish()
        if self._closing and self._task is None and not self.lost:
            self.close()  # the body left unread after the last answer has arrived: a clean close

    # -- answering

    def _start(self, request: Request) -> None:
        self._current = request
        self._task = self.loop.create_task(self._respond(request))

    async def _respond(self, request: Request) -> None:
        try:
            handler, request.match_info = self.server.routes.resolve(request.method, request.path)
            try:
                response = await handler(request)
                if not isinstance(response, StreamResponse):
                    raise TypeError(f"the handler returned {type(response).__name__}, not a Response")
                if isinstance(response, Response) and not response.prepared:
                    self.write_whole(request, response)
                else:
                    if not response.prepared:
                        await response.prepare(request)
                    await response.write_eof()
            except ConnectionResetError:  # the client went away: nobody to answer
                pass
            except Exception:
                log.exception("request handler failed", method=request.method, path=request.path)
                if not request._head_sent and not self.lost:
                    self.write_whole(request, Response(status=500, text="500 Internal Server Error\n"))
        finally:
            self._done(request)

    def keeps(self, request: Request) -> bool:
        """Whether the connection stays open after the answer to ``request`` (decided at its head)."""
        if not request._keep_alive or self._closing or self.lost:
            return False
        if self.server.draining and not self._pending:
            return False
        body = request.content
        if body._error is not None:  # its framing broke: nothing after it can be read
            return False
        # A client still waiting for 100 Continue never sends the body: nothing else can follow.
        return body._done or not body._continue

    def write_whole(self, request: Request, response: Response) -> None:
        keep = self.keeps(request)
        status = response.status
        body = response.body
        headers = response.headers
        if status in _NO_BODY or status < 200:
            framing, body = "", b""
        else:
            framing = f"Content-Length: {len(body)}\r\n"
            if body and "Content-Type" not in headers:
                framing += "Content-Type: application/octet-stream\r\n"
        head = _head(status, headers, keep, framing)
        response.prepared = response._eof = True
        request._head_sent = request._finished = True
        request._keep = keep
        if not self.lost:
            assert self.transport is not None
            self.transport.write(head if request.method == "HEAD" or not body else head + body)

    def send(self, data: bytes) -> None:
        if self.lost:
            raise ConnectionResetError("the client closed the connection")
        assert self.transport is not None
        self.transport.write(data)

    def send_interim(self, data: bytes) -> None:
        if not self.lost:
            assert self.transport is not None
            self.transport.write(data)

    async def drain(self) -> None:
        if self.lost:
            raise ConnectionResetError("the client closed the connection")
        waiter = self.loop.create_future()
        self._drains.append(waiter)
        await waiter

    def _done(self, request: Request) -> None:
        self._task = None
        self._current = None
        if self.lost:
            return
        self.idle_since = self.loop.time()
        body = request.content
        unfinished = not body._done
        if unfinished or body._size:
            body._drop()
        if not (request._finished and request._keep) or (self.server.draining and not self._pending):
            self._closing = True
            self._pending.clear()
            if unfinished and body is self._receiving and not body._continue and request._finished:
                # The client is still sending a body nobody read: it is read to its end (and dropped)
                # before the close, lest unread bytes make the close a reset that loses the answer.
                self.flow()
                self.server.idle(self)  # bounded: the sweep ends a client that never finishes
                return
            self.close()
            return
        if self._pending:
            item = self._pending.popleft()
            self.flow()
            if isinstance(item, _Refusal):
                self._write_refusal(item)
            else:
                self._start(item)
            return
        self.server.idle(self)

    def _refuse(self, status: int, text: str) -> None:
        """Bad input: answer ``status`` after the answers owed, then close; nothing more is parsed."""
        self._broken = True
        body = self._receiving
        if body is not None:  # inside a body: its handler sees it end early; no answer of our own
            self._receiving = None
            body._finish("the request body is not valid HTTP/1.1")
            self._no_more = True
        elif self._task is None and not self._pending:
            self._write_refusal(_Refusal(_plain(status, text)))
        else:
            self._pending.append(_Refusal(_plain(status, text)))
        self.flow()

    def _write_refusal(self, refusal: _Refusal) -> None:
        self._closing = self._broken = True
        transport = self.transport
        if self.lost or transport is None:
            return
        transport.write(refusal.data)
        if not transport.can_write_eof():
            self.close()
            return
        # A half close: the client reads the refusal and the end of the stream; what it still sends
        # is read and dropped until it closes too (or the sweep ends it), so that the close is never
        # a reset, which could lose the refusal on its way.
        transport.write_eof()
        self._lingering = True
        self.idle_since = self.loop.time()
        self.flow()
        self.server.idle(self)

    # -- flow and lifetime

    def flow(self) -> None:
        """Read or not, as the buffered body, the queue of requests and the state ask."""
        transport = self.transport
        if self.lost or transport is None:
            return
        pause = (
            (self._broken and not self._lingering)
            or self.buffered > self.server.high_water
            or len(self._pending) >= _MAX_PIPELINED
        )
        if pause != self.read_paused:
            self.read_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def idle(self) -> bool:
        return self._task is None and not self._pending

    def close(self) -> None:
        self._closing = self._broken = True
        if self.transport is not None and not self.lost:
            self.transport.close()


# ------------------------------------------------------------------------------------- server


class Server:
    """Serves ``routes`` on one listening address (see the module's docstring)."""

    def __init__(
        self,
        routes: Routes,
        *,
        keepalive_seconds: float = _KEEPALIVE,
        max_head: int = _MAX_HEAD,
        max_field: int = _MAX_FIELD,
        high_water: int = _HIGH_WATER,
    ) -> None:
        self.routes = routes
        self.keepalive_seconds = keepalive_seconds
        self.max_head = max_head
        self.max_field = max_field
        self.high_water = high_water
        self.draining = False
        self.port: int | None = None
        """The port bound, once ``start`` returned."""
        self.connections: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        # One timer for every idle connection (not one per request): it closes those idle too long.
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, host: str | None, port: int, *, backlog: int = 1024) -> None:
        """Listen on ``host`` (None: every interface) and ``port`` (0: any free one)."""
        loop = self._loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self, loop), host, port, reuse_address=True, backlog=backlog
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        """Stop listening; connections open stay open."""
        if self._server is not None:
            self._server.close()

    async def shutdown(self, grace_seconds: float) -> None:
        """Stop listening, close idle connections, give requests in flight ``grace_seconds`` to finish
        (each connection closes after its answer), then cancel the rest and close every connection."""
        self.close()
        self.draining = True
        loop = self._loop or asyncio.get_running_loop()
        for conn in list(self.connections):
            if conn.idle():
                conn.close()
        deadline = loop.time() + grace_seconds
        while True:
            tasks = self._tasks()
            left = deadline - loop.time()
            if not tasks or left <= 0:
                break
            await asyncio.wait(tasks, timeout=left)
        tasks = self._tasks()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        for conn in list(self.connections):
            conn.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._server is not None:
            await self._server.wait_closed()

    def _tasks(self) -> set[asyncio.Task[None]]:
        return {c._task for c in self.connections if c._task is not None and not c._task.done()}

    def idle(self, conn: _Connection) -> None:
        """``conn`` has no request in progress since ``conn.idle_since``: the sweep will see it."""
        if self._sweeper is None and self._loop is not None and not self.draining:
            self._sweeper = self._loop.call_later(self.keepalive_seconds, self._sweep)

    def _sweep(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        oldest: float | None = None
        for conn in list(self.connections):
            if not conn.idle():
                continue
            if now - conn.idle_since >= self.keepalive_seconds:
                conn.close()
            elif oldest is None or conn.idle_since < oldest:
                oldest = conn.idle_since
        self._sweeper = (
            None if oldest is None else loop.call_later(oldest + self.keepalive_seconds - now, self._sweep)
        )
