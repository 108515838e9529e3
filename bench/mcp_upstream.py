"""A minimal, fast MCP server for ``bench.mcp_proxy``: the upstream every subject of that bench fronts.

    python -m bench.mcp_upstream --port PORT [--host 127.0.0.1]

It is written on a bare ``asyncio.Protocol`` (uvloop when installed) with its own HTTP/1.1 parsing,
so that the upstream is never what a proxy's figure measures: every answer is precomputed JSON and
only the request id (and, for ``echo``, the text) is spliced in. It speaks both protocol eras on
``/mcp`` (any path is served the same):

- 2026-07-28 (a request whose ``MCP-Protocol-Version`` header names it): ``server/discover`` answers
  ``supportedVersions: ["2026-07-28"]`` and every result carries ``resultType: "complete"``;
- the session era: ``initialize`` answers with a fresh ``Mcp-Session-Id`` header (never remembered:
  any id is accepted later, the server keeps no per-session state), notifications get 202.

Tools: ``echo`` (returns its ``text`` argument), ``big`` (returns 1 MiB of text) and 198 more that
only fill ``tools/list`` to 200 tools. Answers are JSON, never SSE; GET (the notification stream)
gets 405, DELETE (end of session) 200. Nothing here validates a request beyond what routing needs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
from collections.abc import Callable
from typing import Any, cast

import orjson

__all__ = ["BIG_BYTES", "MODERN", "TOOLS", "dechunk", "main", "run", "serve"]

MODERN = "2026-07-28"
SESSION_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
TOOLS = 200
BIG_BYTES = 1024 * 1024
_MAX_HEAD = 64 * 1024
_SERVER_INFO = {"name": "bench-upstream", "version": "1.0.0"}
_CAPABILITIES = {"tools": {"listChanged": False}}


def _tools() -> list[dict[str, Any]]:
    text = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    tools = [
        {"name": "echo", "description": "Returns its text argument.", "inputSchema": text},
        {"name": "big", "description": "Returns 1 MiB of text.", "inputSchema": {"type": "object"}},
    ]
    for i in range(TOOLS - len(tools)):
        tools.append(
            {
                "name": f"filler_{i:03d}",
                "description": f"Filler tool number {i}, listed and never called.",
                "inputSchema": {
                    "type": "object",
                    "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
                    "required": ["query"],
                },
            }
        )
    return tools


def _results(modern: bool) -> dict[str, bytes]:
    """Every fixed result, encoded once; the 2026-07-28 variants carry ``resultType``."""
    extra: dict[str, Any] = {"resultType": "complete"} if modern else {}
    listing: dict[str, Any] = {"tools": _tools(), **extra}
    if modern:
        listing.update(ttlMs=0, cacheScope="private")
    results = {
        "tools/list": listing,
        "big": {"content": [{"type": "text", "text": "x" * BIG_BYTES}], "isError": False, **extra},
        "ping": {**extra},
        "server/discover": {
            "supportedVersions": [MODERN],
            "capabilities": _CAPABILITIES,
            "serverInfo": _SERVER_INFO,
            "ttlMs": 0,
            "cacheScope": "private",
            "resultType": "complete",
        },
    }
    return {key: orjson.dumps(value) for key, value in results.items()}


_MODERN_RESULTS = _results(modern=True)
_SESSION_RESULTS = _results(modern=False)
_ECHO_HEAD = b'{"content":[{"type":"text","text":'
_ECHO_TAIL = {True: b'}],"isError":false,"resultType":"complete"}', False: b'}],"isError":false}'}
_STATUS = {200: b"200 OK", 202: b"202 Accepted", 400: b"400 Bad Request", 405: b"405 Method Not Allowed"}


def _response(request_id: Any, result: bytes) -> bytes:
    return b'{"jsonrpc":"2.0","id":' + orjson.dumps(request_id) + b',"result":' + result + b"}"


def _error(request_id: Any, code: int, message: str) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}})


def answer(headers: dict[str, str], body: bytes) -> tuple[int, bytes, dict[str, str]]:
    """The (status, JSON body, extra headers) for one POSTed JSON-RPC message."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 400, _error(None, -32700, "Parse error"), {}
    if not isinstance(message, dict) or "method" not in message or "id" not in message:
        return 202, b"", {}  # a notification or a response: nothing to say
    request_id, method = message["id"], message["method"]
    params = message.get("params") or {}
    modern = headers.get("mcp-protocol-version") == MODERN
    results = _MODERN_RESULTS if modern else _SESSION_RESULTS
    if method == "tools/call":
        name = params.get("name")
        if name == "echo":
            text = (params.get("arguments") or {}).get("text", "")
            return 200, _response(request_id, _ECHO_HEAD + orjson.dumps(text) + _ECHO_TAIL[modern]), {}
        if name == "big":
            return 200, _response(request_id, results["big"]), {}
        return 200, _error(request_id, -32602, f"Unknown tool: {name}"), {}
    if method == "initialize":
        asked = params.get("protocolVersion")
        version = asked if asked in SESSION_VERSIONS else SESSION_VERSIONS[0]
        result = {"protocolVersion": version, "capabilities": _CAPABILITIES, "serverInfo": _SERVER_INFO}
        return 200, _response(request_id, orjson.dumps(result)), {"Mcp-Session-Id": secrets.token_hex(16)}
    if method in results and (method != "server/discover" or modern):
        return 200, _response(request_id, results[method]), {}
    return 200, _error(request_id, -32601, f"Method not found: {method}"), {}


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; requests are answered in the order they arrive."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but they have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and not self.transport.is_closing():
            request = self._take_request()
            if request is None:
                if len(self.buffer) > _MAX_HEAD and b"\r\n\r\n" not in self.buffer:
                    self.transport.close()
                return
            self._respond(*request)

    def _take_request(self) -> tuple[str, dict[str, str], bytes] | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        method = lines[0].split(" ", 1)[0]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        start = end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            taken = dechunk(self.buffer, start)
            if taken is None:
                return None
            body, consumed = taken
        else:
            length = int(headers.get("content-length") or 0)
            if len(self.buffer) < start + length:
                return None
            body, consumed = bytes(self.buffer[start : start + length]), start + length
        del self.buffer[:consumed]
        return method, headers, body

    def _respond(self, method: str, headers: dict[str, str], body: bytes) -> None:
        assert self.transport is not None
        extra: dict[str, str] = {}
        if method == "POST":
            status, payload, extra = answer(headers, body)
        elif method == "DELETE":
            status, payload = 200, b""
        else:
            status, payload, extra = 405, b"", {"Allow": "POST, DELETE"}
        head = [b"HTTP/1.1 ", _STATUS[status], b"\r\nContent-Length: ", str(len(payload)).encode()]
        if payload:
            head.append(b"\r\nContent-Type: application/json")
        for key, value in extra.items():
            head += [b"\r\n", key.encode(), b": ", value.encode()]
        close = headers.get("connection", "").lower() == "close"
        if close:
            head.append(b"\r\nConnection: close")
        head.append(b"\r\n\r\n")
        self.transport.write(b"".join(head) + payload)
        if close:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A whole chunked body from ``buffer[start:]`` and where it ends, or None while incomplete."""
    body = bytearray()
    at = start
    while True:
        eol = buffer.find(b"\r\n", at)
        if eol < 0:
            return None
        size = int(bytes(buffer[at:eol]).split(b";", 1)[0], 16)
        at = eol + 2
        if size == 0:
            trailer = buffer.find(b"\r\n", at)  # no trailers are sent by the clients here
            return (bytes(body), trailer + 2) if trailer >= 0 else None
        if len(buffer) < at + size + 2:
            return None
        body += buffer[at : at + size]
        at += size + 2


async def serve(host: str, port: int, protocol: Callable[[], asyncio.Protocol] | None = None) -> None:
    """Serve ``protocol`` (default: this module's MCP answers) until cancelled."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol or _Connection, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def run(prog: str, doc: str, protocol: Callable[[], asyncio.Protocol]) -> None:
    """The command line of a bench upstream: ``--host``, ``--port``, served under uvloop until Ctrl-C."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency of the data plane
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(args.host, args.port, protocol))


def main() -> None:
    run("python -m bench.mcp_upstream", __doc__, _Connection)


if __name__ == "__main__":
    main()
