"""A lean HTTP/1.1 client for hot paths: one request, its answer as it arrives.

The LLM gateway sends every request to an upstream through this client, and the operator's
``agentkube.runtime.client.Client`` every request to the API server (watches included). aiohttp's
``ClientSession`` is general (cookies, redirects, auth, tracing, decompression, multidicts) and
costs about 90 µs of CPU per request on this project's benchmark machine; a proxy needs none of
that. This client costs about 15 µs: a pool of keep-alive connections per origin on
``asyncio.Protocol``, ``httptools`` (llhttp, Node's parser) for the answers, and the request
written in one ``write``.

What a caller may rely on:

- ``Pool.request(method, url, headers, body)`` returns a ``Response`` as soon as the status line
  and headers have arrived; its body is read with ``read()`` (whole, optionally bounded; read to its
  end, the answer is released) or ``readany()`` (what has arrived, ``b""`` at the end). Every
  failure to connect, a connection that closes before or inside an answer, and a malformed answer
  raises ``ClientError`` (a connection-level failure: the caller may try another upstream) with a
  message that names what happened and never a header value.
- ``https`` URLs are verified against the system's CAs (``SSL_CERT_FILE`` honoured) or the pool's
  ``ssl_context``, for the URL's host or the pool's ``server_hostname``. A ``proxy``
  (``http://host:port``) is used the standard way: ``CONNECT`` for ``https`` targets (TLS inside
  the tunnel), the absolute URL for ``http`` ones; ``proxy_headers`` go to the proxy only.
- A connection returns to its pool only when the answer was read to its end and neither side said
  ``Connection: close``; ``release()`` does that (or closes it when the body was not read to the
  end), ``close()`` always closes. A request on a kept-alive connection that the server had closed
  meanwhile (nothing of an answer received) is sent once more on a new connection: the server cannot
  have acted on it. Idle connections are closed after ``keepalive_seconds``.
- A body is buffered up to ``high_water`` bytes when the reader is slower than the upstream; beyond
  that the connection stops reading until the buffer drains (TCP flow control, never unbounded).
- Timeouts cost no timer per request: ``request(..., answer_seconds=T)`` gives the answer's head and body
  ``T`` seconds from the send, and ``Response.idle_timeout(S)`` then limits each later read to ``S``
  seconds of waiting (a stream's silence); one timer per pool, set for the earliest deadline, ends
  whatever is late with ``Timeout`` (a ``ClientError`` and a ``TimeoutError``) and closes its
  connection. Deadlines are kept to within the event loop's timer precision (about a millisecond).
- No compression is asked for (no ``Accept-Encoding``), so bodies arrive as sent. Header names and
  values are the caller's; a value with a line break is refused (``ValueError``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, cast, overload
from urllib.parse import urlsplit

import httptools

__all__ = ["ClientError", "Headers", "Pool", "Response", "Timeout"]

_HIGH_WATER: Final = 1 << 20
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_C0_CONTROL_OR_SPACE: Final = "".join(map(chr, range(33)))
"""What ``urlsplit`` strips from the start of a URL (WHATWG's C0 control or space)."""


class ClientError(Exception):
    """The upstream could not be reached, or its answer could not be read to its end."""


class Timeout(ClientError, TimeoutError):
    """The answer (or, after ``Response.idle_timeout``, its next bytes) did not arrive in time."""


class Headers(dict[str, str]):
    """An answer's headers, looked up by lowercase name (``get("Content-Type")`` works too).

    A header sent more than once keeps its values joined by ``", "`` (``Set-Cookie`` aside, which a
    proxy of model APIs never needs).
    """

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    @overload  # type: ignore[override]
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...
    def get(self, name: str, default: str | None = None) -> str | None:
        return super().get(name.lower(), default)


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int
    host_header: str
    authority: str
    """``host:port`` always (what ``CONNECT`` names)."""


@lru_cache(maxsize=256)
def _origin(prefix: str) -> _Origin:
    parts = urlsplit(prefix)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {parts.scheme}://{parts.hostname or ''}")
    port = parts.port or _DEFAULT_PORTS[scheme]
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == _DEFAULT_PORTS[scheme] else f"{shown}:{port}"
    return _Origin(scheme, host, port, host_header, f"{shown}:{port}")


def _split(url: str) -> tuple[_Origin, str]:
    """``url``'s origin and request target, as ``urlsplit`` reads them (tabs and line breaks
    removed, the fragment dropped). The origin is parsed once per scheme and authority, not once per
    URL: a client of one server sends a new path and query with nearly every request."""
    url = url.lstrip(_C0_CONTROL_OR_SPACE)
    if "\t" in url or "\r" in url or "\n" in url:
        url = url.replace("\t", "").replace("\r", "").replace("\n", "")
    start = url.find("://")
    end = len(url)
    if start >= 0:
        for mark in "/?#":
            at = url.find(mark, start + 3)
            if 0 <= at < end:
                end = at
    path, _, query = url[end:].partition("#")[0].partition("?")
    return _origin(url[:end]), (path or "/") + ("?" + query if query else "")


def _check_value(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name}: a value may not contain a line break")
    return value


class Response:
    """One answer: status and headers at once, the body as it arrives."""

    __slots__ = (
        "_chunks",
        "_conn",
        "_done",
        "_error",
        "_idle",
        "_size",
        "_waiter",
        "content_type",
        "headers",
        "status",
    )

    def __init__(self, conn: _Connection, status: int, headers: Headers) -> None:
        self._conn: _Connection | None = conn
        self.status = status
        self.headers = headers
        content_type = headers.get("content-type") or "application/octet-stream"
        self.content_type = content_type.split(";", 1)[0].strip().lower()
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._done = False
        self._error: ClientError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._idle: float | None = None

    # -- fed by the connection

    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        self._wake()
        if self._size > _HIGH_WATER and self._conn is not None:
            self._conn.pause()

    def _finish(self, error: ClientError | None = None) -> None:
        if not self._done:
            self._done = True
            self._error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- read by the caller

    def at_eof(self) -> bool:
        """Whether the whole body has arrived and been read."""
        return self._done and not self._chunks and self._error is None

    def idle_timeout(self, seconds: float | None) -> None:
        """From now on, each read waits at most ``seconds`` for more bytes (``Timeout`` after that);
        the request's own ``answer_seconds`` no longer applies. None: reads wait as long as it takes."""
        self._idle = seconds
        if self._conn is not None:
            self._conn.disarm()

    async def readany(self) -> bytes:
        """What has arrived since the last read (waiting for something); ``b""`` at the end."""
        while not self._chunks:
            if self._done:
                if self._error is not None:
                    raise self._error
                return b""
            conn = self._conn
            loop = conn.loop if conn is not None else asyncio.get_running_loop()
            if self._idle is not None and conn is not None:
                conn.arm(loop.time() + self._idle)
            self._waiter = loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
                if self._idle is not None and conn is not None:
                    conn.disarm()
        chunk = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks.clear()
        self._size = 0
        if self._conn is not None:
            self._conn.resume()
        return chunk

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body; with ``limit``, at most that many bytes (the rest is not read).

        A body read to its end releases the answer (its connection goes back to the pool).
        """
        parts: list[bytes] = []
        size = 0
        while chunk := await self.readany():
            parts.append(chunk)
            size += len(chunk)
            if limit is not None and size >= limit:
                if self.at_eof():
                    self.release()
                return b"".join(parts)[:limit]
        self.release()
        return b"".join(parts) if len(parts) != 1 else parts[0]

    def release(self) -> None:
        """Done with this answer: its connection goes back to the pool if it can be reused."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.done(reusable=self.at_eof())

    def close(self) -> None:
        """Done with this answer: its connection is closed."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.done(reusable=False)


class _Connection(asyncio.Protocol):
    """One kept-alive connection: one request at a time, its answer parsed as bytes arrive."""

    def __init__(self, pool: Pool, key: tuple[_Origin, str | None], loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self.key = key
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.reused = False
        self.received = False
        self.lost = False
        self._parser = httptools.HttpResponseParser(self)
        self._headers = Headers()
        self._head: asyncio.Future[Response] | None = None
        self._response: Response | None = None
        self._complete = False
        self._keep = False
        self._paused = False
        self._tunnel: asyncio.Future[bytes] | None = None
        self._tunnel_buffer = b""
        self.idle_since = 0.0
        self.deadline = 0.0
        """When the answer (or the read waiting) is late; 0: no deadline."""

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport

    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel_buffer += data
            if b"\r\n\r\n" in self._tunnel_buffer and not self._tunnel.done():
                self._tunnel.set_result(self._tunnel_buffer)
            return
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(ClientError(f"the upstream's answer is not valid HTTP/1.1: {e}"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.disarm()
        self._pool.forget(self)
        if self._tunnel is not None and not self._tunnel.done():
            self._tunnel.set_exception(ClientError("the proxy closed the connection during CONNECT"))
        response = self._response
        if response is not None and not self._complete:
            if self._delimited_by_close(response):
                self._complete = True
                response._finish()
            else:
                response._finish(ClientError("the upstream closed the connection inside its answer"))
        elif self._head is not None and not self._head.done():
            why = f": {exc}" if exc is not None else ""
            self._head.set_exception(ClientError(f"the upstream closed the connection before answering{why}"))

    def pause_writing(self) -> None:  # the body is written in one go; nothing to pause
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self._headers.get(key)
        self._headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self._headers = Headers()
            return
        self._keep = self._parser.should_keep_alive()
        response = Response(self, status, self._headers)
        self._response = response
        head = self._head
        if head is not None and not head.done():
            head.set_result(response)

    def on_body(self, body: bytes) -> None:
        if self._response is not None:
            self._response._feed(body)

    def on_message_complete(self) -> None:
        if self._response is None:  # the end of an interim answer
            return
        self._complete = True
        self.disarm()  # all of it is here: nothing left to be late
        self._response._finish()

    # -- used by the pool and the response

    @staticmethod
    def _delimited_by_close(response: Response) -> bool:
        headers = response.headers
        return "content-length" not in headers and "chunked" not in (headers.get("transfer-encoding") or "")

    def _fail(self, error: ClientError) -> None:
        if self._response is not None:
            self._response._finish(error)
        elif self._head is not None and not self._head.done():
            self._head.set_exception(error)

    def start(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._headers = Headers()
        self._response = None
        self._complete = False
        self.received = False
        self._head = self.loop.create_future()
        self.transport.write(data)
        return self._head

    def pause(self) -> None:
        if not self._paused and self.transport is not None and not self.lost:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.lost:
            self._paused = False
            self.transport.resume_reading()

    def arm(self, deadline: float) -> None:
        self.deadline = deadline
        self._pool.watch(self)

    def disarm(self) -> None:
        if self.deadline:
            self.deadline = 0.0
            self._pool.unwatch(self)

    def expire(self) -> None:
        self.deadline = 0.0
        self._fail(Timeout("the upstream's answer did not arrive in time"))
        self.abort()

    def done(self, *, reusable: bool) -> None:
        self.disarm()
        if reusable and self._complete and self._keep and not self.lost:
            self.resume()
            self._head = None
            self._response = None
            self._pool.put(self)
        else:
            self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def tunnel(self, request: bytes) -> None:
        """Send ``CONNECT`` and wait for the proxy's 2xx (the tunnel then carries TLS)."""
        assert self.transport is not None
        self._tunnel = self.loop.create_future()
        self.transport.write(request)
        try:
            answer = await self._tunnel
        finally:
            self._tunnel = None
        head, _, rest = answer.partition(b"\r\n\r\n")
        line = head.split(b"\r\n", 1)[0].split(b" ", 2)
        if len(line) < 2 or not line[1].isdigit() or not 200 <= int(line[1]) < 300:
            status = line[1].decode("latin-1") if len(line) > 1 else "no status"
            raise ClientError(f"the proxy refused CONNECT: {status}")
        if rest:
            raise ClientError("the proxy sent bytes after its CONNECT answer before TLS began")


class Pool:
    """Kept-alive connections per origin (and proxy); see the module's docstring."""

    def __init__(
        self,
        *,
        connect_seconds: float = 10.0,
        keepalive_seconds: float = 30.0,
        max_idle: int = 256,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        """server_hostname: the name TLS verifies the server's certificate against, when not the
        URL's host (a kubeconfig's ``tls-server-name``)."""
        self.connect_seconds = connect_seconds
        self.server_hostname = server_hostname
        self.keepalive_seconds = keepalive_seconds
        self.max_idle = max_idle
        self._ssl = ssl_context
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop of the first request: a pool serves one event loop."""
        self._idle: dict[tuple[_Origin, str | None], list[_Connection]] = {}
        self._closed = False
        # One timer for all idle connections (not one per request): it closes those idle too long.
        self._sweeper: asyncio.TimerHandle | None = None
        # One timer for every deadline, set for the earliest (see the module's docstring).
        self._timed: set[_Connection] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    @property
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes = b"",
        *,
        proxy: str | None = None,
        proxy_headers: Mapping[str, str] | None = None,
        connect_seconds: float | None = None,
        answer_seconds: float | None = None,
    ) -> Response:
        """Send one request; the answer once its head has arrived (see the module's docstring).

        ``answer_seconds``: seconds from now for the answer's head and its whole body (``Timeout`` after
        that, and the connection is closed), unless ``Response.idle_timeout`` changes it; None: no
        limit. ``connect_seconds`` (default: the pool's) bounds making a new connection, inside it.
        """
        if self._closed:
            raise ClientError("the client is closed")
        origin, target = _split(url)
        if proxy is not None and origin.scheme == "http":
            target = url  # a plain-HTTP request through a proxy names the absolute URL
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {origin.host_header}\r\n"]
        for name, value in headers.items():
            lines.append(f"{name}: {_check_value(name, value)}\r\n")
        if proxy is not None and origin.scheme == "http" and proxy_headers:
            for name, value in proxy_headers.items():
                lines.append(f"{name}: {_check_value(name, value)}\r\n")
        if body or method not in ("GET", "HEAD"):
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        data = "".join(lines).encode("latin-1") + body
        key = (origin, proxy)
        loop = self._loop
        if loop is None:  # asyncio.get_running_loop() is a getpid() syscall on Python 3.11: once
            loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + answer_seconds if answer_seconds is not None else 0.0
        for attempt in (0, 1):
            conn = self._take(key, loop) if attempt == 0 else None
            if conn is None:
                if deadline:
                    left = deadline - loop.time()
                    if left <= 0:
                        raise Timeout("the upstream's answer did not arrive in time")
                    limit = connect_seconds if connect_seconds is not None else self.connect_seconds
                    connect_seconds = min(limit, left)
                conn = await self._connect(loop, origin, proxy, proxy_headers, connect_seconds)
            if deadline:
                conn.arm(deadline)
            head = conn.start(data)
            try:
                return await head
            except Timeout:
                raise  # its connection is closed already; late is late, on any connection
            except ClientError:
                if attempt == 0 and conn.reused and not conn.received:
                    continue  # the server had closed the idle connection; it never saw this request
                raise
            except BaseException:
                conn.abort()
                raise
        raise AssertionError("unreachable")

    def _take(self, key: tuple[_Origin, str | None], loop: asyncio.AbstractEventLoop) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = loop.time()
        while idle:
            conn = idle.pop()  # the most recently used: the likeliest to be open still
            if conn.lost:
                continue
            if now - conn.idle_since > self.keepalive_seconds:
                conn.abort()
                continue
            conn.reused = True
            return conn
        return None

    async def _connect(
        self,
        loop: asyncio.AbstractEventLoop,
        origin: _Origin,
        proxy: str | None,
        proxy_headers: Mapping[str, str] | None,
        connect_seconds: float | None,
    ) -> _Connection:
        conn = _Connection(self, (origin, proxy), loop)
        tls = origin.scheme == "https"
        timeout = connect_seconds if connect_seconds is not None else self.connect_seconds
        try:
            async with asyncio.timeout(timeout):
                if proxy is None:
                    await loop.create_connection(
                        lambda: conn,
                        origin.host,
                        origin.port,
                        ssl=self.ssl_context if tls else None,
                        server_hostname=(self.server_hostname or origin.host) if tls else None,
                    )
                    return conn
                via, _ = _split(proxy)
                await loop.create_connection(lambda: conn, via.host, via.port)
                if not tls:
                    return conn
                extra = "".join(f"{n}: {_check_value(n, v)}\r\n" for n, v in (proxy_headers or {}).items())
                authority = origin.authority
                connect = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{extra}\r\n"
                await conn.tunnel(connect.encode("latin-1"))
                assert conn.transport is not None
                transport = await loop.start_tls(
                    conn.transport,
                    conn,
                    self.ssl_context,
                    server_hostname=self.server_hostname or origin.host,
                )
                if transport is None:
                    raise ClientError("TLS could not begin inside the proxy's tunnel")
                conn.transport = transport
                return conn
        except TimeoutError:
            conn.abort()
            raise ClientError(f"no connection to {origin.host_header} within {timeout:g} s") from None
        except ssl.SSLError as e:
            conn.abort()
            raise ClientError(f"TLS with {origin.host_header} failed: {e.reason or e}") from None
        except OSError as e:
            conn.abort()
            raise ClientError(f"cannot connect to {origin.host_header}: {e.strerror or e}") from None
        except BaseException:
            conn.abort()
            raise

    def put(self, conn: _Connection) -> None:
        if self._closed:
            conn.abort()
            return
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= self.max_idle:
            conn.abort()
            return
        loop = conn.loop
        conn.idle_since = loop.time()
        idle.append(conn)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self.keepalive_seconds, self._sweep)

    def _sweep(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        oldest: float | None = None
        for idle in self._idle.values():
            for conn in list(idle):
                if now - conn.idle_since >= self.keepalive_seconds:
                    idle.remove(conn)
                    conn.abort()
                elif oldest is None or conn.idle_since < oldest:
                    oldest = conn.idle_since
        self._sweeper = (
            None if oldest is None else loop.call_later(oldest + self.keepalive_seconds - now, self._sweep)
        )

    def watch(self, conn: _Connection) -> None:
        """Note ``conn.deadline``; the timer is moved only when this deadline is the earliest."""
        self._timed.add(conn)
        timer = self._timer
        if timer is None or conn.deadline < self._timer_at:
            if timer is not None:
                timer.cancel()
            self._timer_at = conn.deadline
            self._timer = conn.loop.call_at(conn.deadline, self._expire)

    def unwatch(self, conn: _Connection) -> None:
        self._timed.discard(conn)  # the timer stays: when it fires, it finds the next deadline

    def _expire(self) -> None:
        self._timer = None
        loop = self._loop
        assert loop is not None
        now = loop.time()
        late = [conn for conn in self._timed if conn.deadline <= now]
        for conn in late:
            self._timed.discard(conn)
            conn.expire()
        if self._timed:
            self._timer_at = min(conn.deadline for conn in self._timed)
            self._timer = loop.call_at(self._timer_at, self._expire)

    def forget(self, conn: _Connection) -> None:
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    async def close(self) -> None:
        """Close every idle connection; answers being read keep theirs until released."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for conn in list(idle):
                conn.abort()
        self._idle.clear()
