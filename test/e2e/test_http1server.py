"""The data plane's lean HTTP/1.1 server (``agentkube.dataplane.http1server``) against real clients.

aiohttp's client speaks well-formed HTTP/1.1 (keep-alive, chunked bodies, streamed answers); raw
sockets send what a client should not (pipelined bursts, malformed or oversized heads, a request
cut off by a disconnect) and read the answers byte for byte.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from agentkube.dataplane.http1server import Request, Response, Routes, Server, StreamResponse
from agentkube.testing import eventually

Start = Callable[..., Awaitable[Server]]


@pytest.fixture
async def serve() -> AsyncIterator[Start]:
    """Starts a ``Server`` for ``routes`` on loopback; every one is shut down after the test."""
    servers: list[Server] = []

    async def start(routes: Routes, **options: Any) -> Server:
        server = Server(routes, **options)
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.shutdown(1.0)


def _url(server: Server, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


async def _connect(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert server.port is not None
    return await asyncio.open_connection("127.0.0.1", server.port)


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One answer read off a raw connection: status, headers (lowercase names), the whole body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = b""
    return status, headers, body


async def _closed(reader: asyncio.StreamReader, within: float = 10.0) -> bool:
    """Whether the server closes the connection (EOF) within ``within`` seconds."""
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except ConnectionResetError:
        return True


async def _echo(request: Request) -> StreamResponse:
    body = await request.content.read()
    return Response(
        body=body,
        headers={
            "Content-Type": "application/octet-stream",
            "X-Path": request.path,
            "X-Method": request.method,
        },
    )


# -------------------------------------------------------------------------------- connections


async def test_requests_reuse_one_kept_alive_connection_with_date_and_length(serve: Start) -> None:
    transports: list[object] = []

    async def handler(request: Request) -> StreamResponse:
        transports.append(request.transport)
        return Response(text=f"{request.query.get('n')} {request.headers.get('x-Thing')}")

    routes = Routes()
    routes.add_get("/count", handler)
    server = await serve(routes)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for n in range(5):
            async with session.get(_url(server, f"/count?n={n}"), headers={"X-Thing": "t"}) as answer:
                assert answer.status == 200
                assert await answer.text() == f"{n} t"
                assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
                assert answer.headers["Content-Length"] == str(len(f"{n} t"))
                assert answer.headers["Date"].endswith(" GMT")
                assert "Connection" not in answer.headers
    assert len(transports) == 5 and len({id(t) for t in transports}) == 1


async def test_pipelined_requests_are_answered_in_order(serve: Start) -> None:
    release = asyncio.Event()
    started: list[str] = []

    async def handler(request: Request) -> StreamResponse:
        started.append(request.path)
        if request.path == "/a":
            await release.wait()  # the first is the slowest: the others still wait their turn
        return Response(text=request.path)

    routes = Routes()
    for path in ("/a", "/b", "/c"):
        routes.add_get(path, handler)
    server = await serve(routes)
    reader, writer = await _connect(server)
    try:
        writer.write(b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p for p in (b"/a", b"/b", b"/c")))
        await writer.drain()
        await eventually(lambda: started == ["/a"], "the first request's handler runs", within=10)
        assert started == ["/a"], "a pipelined request waits for the answer before it"
        release.set()
        bodies = [(await _answer(reader))[2] for _ in range(3)]
        assert bodies == [b"/a", b"/b", b"/c"]
        assert started == ["/a", "/b", "/c"]
    finally:
        writer.close()


async def test_connection_close_and_http_1_0_end_the_connection_after_the_answer(serve: Start) -> None:
    routes = Routes()
    routes.add_post("/echo", _echo)
    server = await serve(routes)
    for request in (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
        b"POST /echo HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi",
    ):
        reader, writer = await _connect(server)
        try:
            writer.write(request)
            status, headers, body = await _answer(reader)
            assert (status, body, headers.get("connection")) == (200, b"hi", "close")
            assert await _closed(reader)
        finally:
            writer.close()


async def test_an_idle_kept_alive_connection_is_closed_by_the_sweep(serve: Start) -> None:
    routes = Routes()
    routes.add_get("/", _echo)
    server = await serve(routes, keepalive_seconds=0.3)
    reader, writer = await _connect(server)
    half_reader, half_writer = await _connect(server)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await _answer(reader))[0] == 200
        half_writer.write(b"GET / HTTP/1.1\r\nHo")  # a head that never completes counts as idle too
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert await _closed(reader)
        assert await _closed(half_reader)
        assert loop.time() - began >= 0.25, "closed by the idle timeout, not at once"
        await eventually(lambda: not server.connections, "the server forgets them", within=10)
    finally:
        writer.close()
        half_writer.close()


# ---------------------------------------------------------------------------------- requests


async def test_a_chunked_request_body_reaches_the_handler_as_it_arrives(serve: Start) -> None:
    first_piece = asyncio.Event()
    pieces: list[bytes] = []

    async def handler(request: Request) -> StreamResponse:
        assert request.content_length is None and request.headers["Transfer-Encoding"] == "chunked"
        digest = hashlib.sha256()
        async for piece in request.content.iter_chunked(1000):
            assert len(piece) <= 1000
            pieces.append(piece)
            digest.update(piece)
            first_piece.set()
        return Response(text=digest.hexdigest())

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 3000
        await first_piece.wait()  # the handler had the first bytes before the client sent the rest
        yield b"y" * 10
        yield b"z" * 5

    routes = Routes()
    routes.add_post("/upload", handler)
    server = await serve(routes)
    async with (
        aiohttp.ClientSession() as session,
        session.post(_url(server, "/upload"), data=body()) as answer,
    ):
        assert answer.status == 200
        assert await answer.text() == hashlib.sha256(b"x" * 3000 + b"y" * 10 + b"z" * 5).hexdigest()
    assert b"".join(pieces) == b"x" * 3000 + b"y" * 10 + b"z" * 5


async def test_expect_100_continue_is_answered_when_the_handler_reads_the_body(serve: Start) -> None:
    async def refuse(request: Request) -> StreamResponse:
        return Response(status=401, text="no")

    routes = Routes()
    routes.add_post("/echo", _echo)
    routes.add_post("/refuse", refuse)
    server = await serve(routes)
    reader, writer = await _connect(server)
    try:
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        assert await asyncio.wait_for(reader.readexactly(25), 10) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        status, _, body = await _answer(reader)
        assert (status, body) == (200, b"hello")
        # Answered before the body was asked for: no 100, and the connection ends (no body follows).
        writer.write(b"POST /refuse HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        status, headers, body = await _answer(reader)
        assert (status, body, headers.get("connection")) == (401, b"no", "close")
        assert await _closed(reader)
    finally:
        writer.close()


async def test_a_body_is_buffered_only_up_to_the_high_water_mark(serve: Start) -> None:
    go = asyncio.Event()
    high_water = 1 << 16

    async def handler(request: Request) -> StreamResponse:
        await go.wait()
        body = await request.content.readexactly(request.content_length or 0)
        return Response(text=str(len(body)))

    routes = Routes()
    routes.add_post("/big", handler)
    server = await serve(routes, high_water=high_water)
    size = 32 << 20
    reader, writer = await _connect(server)
    try:
        writer.write(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        sender = asyncio.create_task(_send_all(writer, b"b" * size))
        conns = await eventually(
            lambda: [c for c in server.connections if c.read_paused],
            "the connection stops reading",
            within=10,
        )
        assert conns[0].buffered <= high_water + (1 << 20), "at most one read past the high-water mark"
        assert not sender.done(), "the client is held back by TCP flow control"
        go.set()
        status, _, body = await _answer(reader)
        assert (status, body) == (200, str(size).encode())
        await sender
    finally:
        writer.close()


async def _send_all(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def test_an_unread_body_is_dropped_and_the_connection_serves_the_next_request(serve: Start) -> None:
    async def ignore(request: Request) -> StreamResponse:
        return Response(status=413, text="too big")

    routes = Routes()
    routes.add_post("/ignore", ignore)
    routes.add_post("/echo", _echo)
    server = await serve(routes)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        async with session.post(_url(server, "/ignore"), data=b"q" * 300_000) as answer:
            assert (answer.status, await answer.text()) == (413, "too big")
        async with session.post(_url(server, "/echo"), data=b"next") as answer:
            assert (answer.status, await answer.read()) == (200, b"next")


# ----------------------------------------------------------------------------------- answers


async def test_a_streamed_answer_arrives_as_it_is_written(serve: Start) -> None:
    go_on = asyncio.Event()

    async def handler(request: Request) -> StreamResponse:
        response = StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: one\n\n")
        await go_on.wait()
        await response.write(b"data: two\n\n")
        await response.write_eof()
        return response

    routes = Routes()
    routes.add_get("/stream", handler)
    server = await serve(routes)
    async with aiohttp.ClientSession() as session, session.get(_url(server, "/stream")) as answer:
        assert answer.headers["Transfer-Encoding"] == "chunked"
        assert await asyncio.wait_for(answer.content.readuntil(b"\n\n"), 10) == b"data: one\n\n"
        go_on.set()
        assert await answer.content.read() == b"data: two\n\n"


async def test_a_handler_that_raises_gets_a_500_and_the_connection_goes_on(serve: Start) -> None:
    async def broken(request: Request) -> StreamResponse:
        raise RuntimeError("a bug")

    async def broken_mid_stream(request: Request) -> StreamResponse:
        response = StreamResponse()
        await response.prepare(request)
        await response.write(b"partial")
        raise RuntimeError("a bug after the head")

    routes = Routes()
    routes.add_get("/broken", broken)
    routes.add_get("/mid", broken_mid_stream)
    routes.add_get("/fine", _echo)
    server = await serve(routes)
    reader, writer = await _connect(server)
    try:
        writer.write(b"GET /broken HTTP/1.1\r\nHost: x\r\n\r\nGET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await _answer(reader))[0] == 500
        status, headers, _ = await _answer(reader)
        assert status == 200 and headers["x-path"] == "/fine"
        writer.write(b"GET /mid HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200 ")
        rest = await asyncio.wait_for(reader.read(), 10)  # the connection ends: the answer is cut short
        assert rest.startswith(b"7\r\npartial\r\n") and not rest.endswith(b"0\r\n\r\n")
    finally:
        writer.close()


async def test_routes_fixed_patterns_404_and_405(serve: Start) -> None:
    async def model(request: Request) -> StreamResponse:
        return Response(text=request.match_info["model"])

    async def tail(request: Request) -> StreamResponse:
        return Response(text=f"tail={request.match_info['tail']} {request.method}")

    routes = Routes()
    routes.add_post("/v1/chat", _echo)
    routes.add_get("/v1/models/{model:.+}", model)
    routes.add_route("*", "/v1/{tail:.*}", tail)
    routes.add_get("/only-get", _echo)
    server = await serve(routes)
    async with aiohttp.ClientSession() as session:
        async with session.get(_url(server, "/v1/models/org/some%20model")) as answer:
            assert await answer.text() == "org/some model"
        async with session.get(_url(server, "/v1/chat")) as answer:  # a fixed path's other method
            assert await answer.text() == "tail=chat GET"
        async with session.post(_url(server, "/v1/chat"), data=b"c") as answer:
            assert await answer.read() == b"c"
        async with session.post(_url(server, "/only-get")) as answer:
            assert answer.status == 405 and answer.headers["Allow"] == "GET, HEAD"
        async with session.get(_url(server, "/nowhere")) as answer:
            assert answer.status == 404
            assert await answer.json() == {"error": {"message": "not found", "type": "not_found"}}
        async with session.head(_url(server, "/only-get")) as answer:
            assert answer.status == 200 and await answer.read() == b""
    with pytest.raises(ValueError, match="one variable"):
        routes.add_get("/a/{x}/b", _echo)


# ------------------------------------------------------------------------------------ refusals


async def test_oversized_heads_are_refused_with_431(serve: Start) -> None:
    routes = Routes()
    routes.add_get("/", _echo)
    server = await serve(routes)
    heads = [
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 17000 + b"\r\n\r\n",  # one header over 16 KiB
        b"GET / HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(70))
        + b"\r\n",
    ]
    for head in heads:
        reader, writer = await _connect(server)
        try:
            writer.write(head)
            status, headers, _ = await _answer(reader)
            assert status == 431 and headers["connection"] == "close"
            assert await _closed(reader)
        finally:
            writer.close()
    # A header sent in pieces that never ends is refused too (not kept growing).
    reader, writer = await _connect(server)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        for _ in range(40):
            writer.write(b"v" * 4096)
            await writer.drain()
            await asyncio.sleep(0)  # one read per piece (what bounds the parser's own buffer)
        assert (await _answer(reader))[0] == 431
    finally:
        writer.close()


async def test_malformed_requests_get_a_400_and_the_server_goes_on(serve: Start) -> None:
    routes = Routes()
    routes.add_post("/echo", _echo)
    server = await serve(routes)
    for garbage in (
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
    ):
        reader, writer = await _connect(server)
        try:
            writer.write(garbage)
            status, headers, body = await _answer(reader)
            assert status == 400 and headers["connection"] == "close" and body.startswith(b"400 Bad Request")
            assert await _closed(reader)
        finally:
            writer.close()
    async with aiohttp.ClientSession() as session, session.post(_url(server, "/echo"), data=b"ok") as answer:
        assert await answer.read() == b"ok"


# ------------------------------------------------------------------------------ cancellation


async def test_a_client_that_disconnects_cancels_its_handler(serve: Start) -> None:
    started = asyncio.Event()
    outcome: list[str] = []

    async def handler(request: Request) -> StreamResponse:
        response = StreamResponse()
        await response.prepare(request)
        started.set()
        try:
            while True:
                await response.write(b"x" * 65536)
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        except ConnectionResetError:
            outcome.append("reset")
            raise

    async def waits(request: Request) -> StreamResponse:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcome.append("cancelled while waiting")
            raise
        raise AssertionError("unreachable")

    routes = Routes()
    routes.add_get("/forever", handler)
    routes.add_get("/waits", waits)
    server = await serve(routes)
    for path, expected in ((b"/forever", {"cancelled", "reset"}), (b"/waits", {"cancelled while waiting"})):
        started.clear()
        outcome.clear()
        _, writer = await _connect(server)
        writer.write(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
        await asyncio.wait_for(started.wait(), 10)
        writer.transport.abort()
        await eventually(lambda: outcome, f"the handler of {path!r} ends", within=10)
        assert outcome[0] in expected
    await eventually(lambda: not server.connections, "the connections are forgotten", within=10)


async def test_shutdown_lets_a_stream_in_flight_finish_and_refuses_new_connections(serve: Start) -> None:
    go_on = asyncio.Event()
    cancelled: list[str] = []

    async def stream(request: Request) -> StreamResponse:
        response = StreamResponse()
        await response.prepare(request)
        await response.write(b"first ")
        await go_on.wait()
        await response.write(b"last")
        return response  # ended for it

    async def stuck(request: Request) -> StreamResponse:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(request.path)
            raise
        raise AssertionError("unreachable")

    routes = Routes()
    routes.add_get("/stream", stream)
    routes.add_get("/stuck", stuck)
    routes.add_get("/", _echo)
    server = await serve(routes)
    port = server.port
    idle_reader, idle_writer = await _connect(server)
    idle_writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await _answer(idle_reader))[0] == 200
    async with aiohttp.ClientSession() as session, session.get(_url(server, "/stream")) as answer:
        assert await asyncio.wait_for(answer.content.readexactly(6), 10) == b"first "
        shutdown = asyncio.create_task(server.shutdown(30.0))
        assert await _closed(idle_reader), "an idle kept-alive connection is closed at once"

        async def refused() -> bool:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except ConnectionRefusedError:
                return True
            writer.close()
            return False

        await eventually(refused, "the server stops listening", within=10)
        assert not shutdown.done()
        go_on.set()
        assert await answer.content.read() == b"last"
    await asyncio.wait_for(shutdown, 10)
    idle_writer.close()

    # A handler still running when the grace ends is cancelled.
    server = await serve(routes)
    reader, writer = await _connect(server)
    writer.write(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
    await eventually(lambda: any(not c.idle() for c in server.connections), "the handler runs", within=10)
    await asyncio.wait_for(server.shutdown(0.2), 10)
    assert cancelled == ["/stuck"]
    assert await _closed(reader)
    writer.close()
