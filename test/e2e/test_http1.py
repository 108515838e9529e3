"""The data plane's lean HTTP/1.1 client (``agentkube.dataplane.http1``) against real servers.

aiohttp's server is the peer for well-formed answers (Content-Length, chunked, TLS); a bare asyncio
server stands in for what a well-behaved server never does on purpose (a body cut short, a kept-alive
connection closed under a request, an answer that is not HTTP); the local node's forward proxy
(``agentkube.testing.podnet.ServiceRouter``, what pods' egress goes through) carries both proxy forms.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from agentkube.dataplane.http1 import ClientError, Pool, Timeout
from agentkube.testing.pki import CertificateAuthority
from agentkube.testing.podnet import ServiceRouter

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    return runner, server.sockets[0].getsockname()[1]


@pytest.fixture
async def echo() -> AsyncIterator[tuple[int, list[object]]]:
    """An aiohttp server echoing the body and naming the connection each request came on."""
    transports: list[object] = []

    async def handler(request: web.Request) -> web.Response:
        transports.append(request.transport)
        body = await request.read()
        return web.json_response(
            {"path": request.path_qs, "body": body.decode(), "auth": request.headers.get("Authorization")}
        )

    runner, port = await _serve(handler)
    yield port, transports
    await runner.cleanup()


Answer = Callable[[int, bytes], tuple[bytes, bool] | None]


async def _raw_server(answer: Answer) -> tuple[asyncio.Server, int]:
    """A bare server: for the n-th request on a connection, ``answer(n, head)`` gives the bytes to
    write and whether to keep the connection open after them; None closes it without a word."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                await reader.readexactly(length)
                out = answer(n, head)
                n += 1
                if out is None:
                    break
                writer.write(out[0])
                await writer.drain()
                if not out[1]:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_answers_keep_their_connection_and_headers_are_looked_up_in_any_case(
    echo: tuple[int, list[object]],
) -> None:
    port, transports = echo
    pool = Pool()
    try:
        for i in range(5):
            response = await pool.request(
                "POST", f"http://127.0.0.1:{port}/v1/chat?x={i}", {"Authorization": "Bearer up"}, b'{"n":1}'
            )
            assert response.status == 200 and response.content_type == "application/json"
            assert response.headers.get("CONTENT-TYPE", "").startswith("application/json")
            assert "content-length" in response.headers and "Content-Length" in response.headers
            assert (await response.read()) == (
                b'{"path": "/v1/chat?x=%d", "body": "{\\"n\\":1}", "auth": "Bearer up"}' % i
            )
            assert response.at_eof()
            response.release()
    finally:
        await pool.close()
    assert len(transports) == 5 and len({id(t) for t in transports}) == 1, "one kept-alive connection"


async def test_a_stream_is_read_as_it_arrives_not_when_it_ends() -> None:
    go_on = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: one\n\n")
        await asyncio.wait_for(go_on.wait(), 10)
        await response.write(b"data: two\n\n")
        await response.write_eof()
        return response

    runner, port = await _serve(handler)
    pool = Pool()
    try:
        response = await pool.request("POST", f"http://127.0.0.1:{port}/", {}, b"{}")
        assert response.content_type == "text/event-stream"
        assert await asyncio.wait_for(response.readany(), 10) == b"data: one\n\n"
        assert not response.at_eof()
        go_on.set()
        rest = b""
        while chunk := await asyncio.wait_for(response.readany(), 10):
            rest += chunk
        assert rest == b"data: two\n\n" and response.at_eof()
        response.release()
    finally:
        await pool.close()
        await runner.cleanup()


async def test_an_answer_left_unread_closes_its_connection_and_the_next_request_opens_one() -> None:
    transports: list[object] = []
    done = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        transports.append(request.transport)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        if request.path == "/endless":
            await done.wait()  # never ends on its own: the client leaves it unread
        await response.write_eof()
        return response

    runner, port = await _serve(handler)
    pool = Pool()
    try:
        response = await pool.request("POST", f"http://127.0.0.1:{port}/endless", {}, b"")
        assert await asyncio.wait_for(response.read(5), 10) == b"data:"
        assert not response.at_eof()
        response.release()  # not read to its end: closed, not pooled
        for _ in range(2):
            again = await pool.request("POST", f"http://127.0.0.1:{port}/short", {}, b"")
            assert await asyncio.wait_for(again.read(), 10) == b"data: first\n\n"
            again.release()
    finally:
        done.set()
        await pool.close()
        await runner.cleanup()
    assert len(transports) == 3 and len({id(t) for t in transports}) == 2


async def test_a_body_ended_by_close_is_whole_and_one_cut_short_is_an_error() -> None:
    def close_delimited(n: int, head: bytes) -> tuple[bytes, bool]:
        return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it", False

    def cut(n: int, head: bytes) -> tuple[bytes, bool]:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nten bytes.", False

    whole_server, whole = await _raw_server(close_delimited)
    cut_server, short = await _raw_server(cut)
    pool = Pool()
    try:
        response = await pool.request("POST", f"http://127.0.0.1:{whole}/", {}, b"")
        assert await asyncio.wait_for(response.read(), 10) == b"all of it"
        response.release()
        response = await pool.request("POST", f"http://127.0.0.1:{short}/", {}, b"")
        with pytest.raises(ClientError, match="closed the connection inside its answer"):
            await asyncio.wait_for(response.read(), 10)
        response.close()
    finally:
        await pool.close()
        whole_server.close()
        cut_server.close()


async def test_a_kept_alive_connection_closed_under_a_request_is_retried_once_on_a_new_one() -> None:
    connections: list[int] = []

    def first_answer_only(n: int, head: bytes) -> tuple[bytes, bool] | None:
        if n == 0:
            connections.append(1)
            return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", True
        return None  # the second request on a connection: closed without a word

    server, port = await _raw_server(first_answer_only)
    pool = Pool()
    try:
        for _ in range(3):
            response = await pool.request("POST", f"http://127.0.0.1:{port}/", {}, b"{}")
            assert await response.read() == b"ok"
            response.release()
    finally:
        await pool.close()
        server.close()
    assert len(connections) == 3


async def test_failures_are_client_errors_that_name_what_happened() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    free = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()

    def garbage(n: int, head: bytes) -> tuple[bytes, bool]:
        return b"SMTP ready\r\n\r\n", True

    def silent_close(n: int, head: bytes) -> None:
        return None

    garbage_server, bad = await _raw_server(garbage)
    closing_server, closing = await _raw_server(silent_close)
    pool = Pool()
    try:
        with pytest.raises(ClientError, match=rf"cannot connect to 127\.0\.0\.1:{free}"):
            await pool.request("POST", f"http://127.0.0.1:{free}/", {}, b"")
        with pytest.raises(ClientError, match=r"not valid HTTP/1\.1"):
            await asyncio.wait_for(pool.request("POST", f"http://127.0.0.1:{bad}/", {}, b""), 10)
        with pytest.raises(ClientError, match="closed the connection before answering"):
            await asyncio.wait_for(pool.request("POST", f"http://127.0.0.1:{closing}/", {}, b""), 10)
        with pytest.raises(ValueError, match="line break"):
            await pool.request("POST", f"http://127.0.0.1:{closing}/", {"X-Evil": "a\r\nInjected: 1"}, b"")
    finally:
        await pool.close()
        garbage_server.close()
        closing_server.close()


def _serving_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA's certificate, and a serving certificate for 127.0.0.1 it signed with its key."""
    authority = CertificateAuthority("upstream-test-ca")
    issued = authority.server(["127.0.0.1"])
    paths = directory / "ca.crt", directory / "tls.crt", directory / "tls.key"
    for path, data in zip(paths, (authority.ca.cert, issued.cert, issued.key), strict=True):
        path.write_bytes(data)
    return paths


async def test_tls_is_verified_and_tunnels_through_the_nodes_proxy(tmp_path: Path) -> None:
    ca, cert, key = _serving_files(tmp_path)
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(cert, key)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=f"secure {request.secure} {request.path}")

    runner, port = await _serve(handler, serving)
    trusting = ssl.create_default_context(cafile=str(ca))
    pool, strict = Pool(ssl_context=trusting), Pool()
    try:
        response = await pool.request("POST", f"https://127.0.0.1:{port}/direct", {}, b"")
        assert (await response.read(), response.status) == (b"secure True /direct", 200)
        response.release()
        with pytest.raises(ClientError, match=r"TLS with 127\.0\.0\.1"):
            await strict.request("POST", f"https://127.0.0.1:{port}/", {}, b"")
        async with ServiceRouter() as router:
            proxy = f"http://{router.proxy_address}"
            response = await pool.request("POST", f"https://127.0.0.1:{port}/tunnel", {}, b"{}", proxy=proxy)
            assert await response.read() == b"secure True /tunnel"
            response.release()
    finally:
        await pool.close()
        await strict.close()
        await runner.cleanup()


async def test_plain_http_through_the_nodes_proxy_names_the_absolute_url(
    echo: tuple[int, list[object]],
) -> None:
    port, _ = echo
    pool = Pool()
    try:
        async with ServiceRouter() as router:
            for _ in range(2):  # the proxy closes after each answer; the second request opens anew
                response = await pool.request(
                    "POST",
                    f"http://127.0.0.1:{port}/v1/x?y=1",
                    {},
                    b"hi",
                    proxy=f"http://{router.proxy_address}",
                )
                assert await response.read() == b'{"path": "/v1/x?y=1", "body": "hi", "auth": null}'
                response.release()
    finally:
        await pool.close()


async def test_an_idle_connection_is_closed_after_keepalive_seconds(echo: tuple[int, list[object]]) -> None:
    port, transports = echo
    pool = Pool(keepalive_seconds=0.2)
    try:
        response = await pool.request("POST", f"http://127.0.0.1:{port}/", {}, b"")
        await response.read()
        server_side = transports[-1]
        assert isinstance(server_side, asyncio.Transport)
        deadline = asyncio.get_running_loop().time() + 10
        while not server_side.is_closing():  # the pool's sweep closes it; the server sees the end
            assert asyncio.get_running_loop().time() < deadline, "the idle connection was never closed"
            await asyncio.sleep(0.05)
        again = await pool.request("POST", f"http://127.0.0.1:{port}/", {}, b"")
        await again.read()
    finally:
        await pool.close()
    assert len({id(t) for t in transports}) == 2


async def test_an_answer_late_in_its_head_body_or_stream_raises_timeout_and_the_next_is_served() -> None:
    """One timer per pool: a head, a body or (after idle_timeout) a stream's next bytes that come late
    end in ``Timeout`` (a ClientError and a TimeoutError), the late connection is closed, and neither
    the late request is sent again nor the prompt ones around it are cut."""
    release = asyncio.Event()
    seen: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.path)
        if request.path == "/slow-head":
            await asyncio.wait_for(release.wait(), 10)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: one\n\n")
        if request.path in ("/slow-body", "/silent-stream"):
            await asyncio.wait_for(release.wait(), 10)
        await response.write_eof()
        return response

    runner, port = await _serve(handler)
    pool = Pool()
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        with pytest.raises(Timeout) as late_head:
            await pool.request("POST", f"http://127.0.0.1:{port}/slow-head", {}, b"{}", answer_seconds=0.2)
        assert isinstance(late_head.value, TimeoutError) and isinstance(late_head.value, ClientError)
        assert 0.15 <= loop.time() - started < 5

        slow = await pool.request("POST", f"http://127.0.0.1:{port}/slow-body", {}, b"{}", answer_seconds=0.3)
        assert slow.status == 200
        with pytest.raises(Timeout):
            await slow.read()

        prompt = await pool.request("POST", f"http://127.0.0.1:{port}/fast", {}, b"{}", answer_seconds=0.3)
        assert await prompt.read() == b"data: one\n\n"

        stream = await pool.request(
            "POST", f"http://127.0.0.1:{port}/silent-stream", {}, b"{}", answer_seconds=0.2
        )
        stream.idle_timeout(0.5)  # replaces the 0.2 s for the whole answer
        assert await stream.readany() == b"data: one\n\n"
        started = loop.time()
        with pytest.raises(Timeout):
            await stream.readany()
        assert 0.4 <= loop.time() - started < 5, "the idle limit counts from the read, not the send"
    finally:
        release.set()
        await pool.close()
        await runner.cleanup()
    assert seen.count("/slow-head") == 1, "a late request is not sent again"


async def test_a_deadline_met_leaves_the_connection_kept_alive(echo: tuple[int, list[object]]) -> None:
    port, transports = echo
    pool = Pool()
    try:
        for _ in range(3):
            response = await pool.request("POST", f"http://127.0.0.1:{port}/x", {}, b"{}", answer_seconds=0.2)
            assert response.status == 200 and await response.read()
        deadline = asyncio.get_running_loop().time() + 5
        while pool._timer is not None:  # the pool's one timer fires for the 0.2 s deadlines, then stops
            assert asyncio.get_running_loop().time() < deadline, "the deadline timer never fired"
            await asyncio.sleep(0.05)
        again = await pool.request("POST", f"http://127.0.0.1:{port}/x", {}, b"{}")
        assert await again.read()
    finally:
        await pool.close()
    assert len({id(t) for t in transports}) == 1, "deadlines met close nothing"
