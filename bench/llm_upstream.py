"""A minimal, fast OpenAI-compatible server for ``bench.llm_gateway``: the upstream every gateway fronts.

    python -m bench.llm_upstream --port PORT [--host 127.0.0.1]

Written on a bare ``asyncio.Protocol`` (uvloop when installed) with its own HTTP/1.1 parsing, like
``bench.mcp_upstream``, so that the upstream is never what a gateway's figure measures. Every answer
is a fixed, precomputed Chat Completion:

- ``POST .../chat/completions`` without ``"stream": true``: one ``chat.completion`` object (JSON,
  ``Content-Length``), the same bytes every time (its ``model`` is always ``bench-model``);
- with ``"stream": true``: ``text/event-stream`` in chunked encoding: a role chunk and the first
  content chunk in the first write, then the other ``CONTENT_CHUNKS - 1`` content chunks, the
  ``finish_reason`` chunk, a usage chunk (only when ``stream_options.include_usage`` is true, as
  OpenAI does) and ``data: [DONE]`` in a second write on the next turn of the event loop. Nothing is
  delayed on purpose: time to first token through a gateway is the gateway's own doing.
- ``GET .../models``: the one model; anything else: 404 in OpenAI's error shape.

The body is parsed (orjson) only to read ``stream`` and ``stream_options``; nothing else is
checked, and no credential is required. ``CONTENT`` is the text a whole stream spells out.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson

from bench.mcp_upstream import dechunk, run

__all__ = ["CONTENT", "CONTENT_CHUNKS", "MODEL", "main"]

MODEL = "bench-model"
_WORDS = ["Hello", " from", " the", " bench", " upstream", ":", " a", " fixed", " answer", " of",
          " sixteen", " small", " tokens", " for", " every", " request."]  # fmt: skip
CONTENT = "".join(_WORDS)
CONTENT_CHUNKS = len(_WORDS)
_ID = "chatcmpl-bench0000000000000000000000"
_CREATED = 1_700_000_000
_MAX_HEAD = 64 * 1024
_USAGE = {"prompt_tokens": 24, "completion_tokens": CONTENT_CHUNKS, "total_tokens": 24 + CONTENT_CHUNKS}

_COMPLETION = orjson.dumps(
    {
        "id": _ID,
        "object": "chat.completion",
        "created": _CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": CONTENT, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _USAGE,
        "system_fingerprint": "fp_bench",
    }
)
_MODELS = orjson.dumps(
    {"object": "list", "data": [{"id": MODEL, "object": "model", "created": _CREATED, "owned_by": "bench"}]}
)
_NOT_FOUND = orjson.dumps(
    {"error": {"message": "no such route", "type": "invalid_request_error", "param": None, "code": None}}
)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": _ID,
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": MODEL,
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def _event(value: dict[str, Any] | bytes) -> bytes:
    data = value if isinstance(value, bytes) else orjson.dumps(value)
    frame = b"data: " + data + b"\n\n"
    return b"%x\r\n" % len(frame) + frame + b"\r\n"  # one chunk of the chunked encoding per event


_STREAM_FIRST = _event(_chunk({"role": "assistant", "content": "", "refusal": None})) + _event(
    _chunk({"content": _WORDS[0]})
)
_STREAM_REST = b"".join(_event(_chunk({"content": w})) for w in _WORDS[1:]) + _event(_chunk({}, "stop"))
_STREAM_USAGE = _event({**_chunk({}), "choices": [], "usage": _USAGE})
_STREAM_END = _event(b"[DONE]") + b"0\r\n\r\n"
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n"
)


def _wants(body: bytes) -> tuple[bool, bool]:
    """(stream, include_usage) of a Chat Completions request body."""
    try:
        parsed = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        return False, False
    if not isinstance(parsed, dict) or parsed.get("stream") is not True:
        return False, False
    options = parsed.get("stream_options")
    return True, isinstance(options, dict) and options.get("include_usage") is True


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; requests are answered in the order they arrive."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.streaming = False
        """A stream's second write is pending: later requests wait for it (answers stay in order)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but they have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._serve()

    def _serve(self) -> None:
        while not self.streaming and self.transport is not None and not self.transport.is_closing():
            request = self._take_request()
            if request is None:
                if len(self.buffer) > _MAX_HEAD and b"\r\n\r\n" not in self.buffer:
                    self.transport.close()
                return
            self._respond(*request)

    def _take_request(self) -> tuple[str, str, dict[str, str], bytes] | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        path = rest.split(" ", 1)[0].split("?", 1)[0]
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
        return method, path, headers, body

    def _respond(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        assert self.transport is not None
        close = headers.get("connection", "").lower() == "close"
        if method == "POST" and path.endswith("/chat/completions"):
            stream, usage = _wants(body)
            if stream:
                head = _STREAM_HEAD + (b"Connection: close\r\n" if close else b"") + b"\r\n"
                self.transport.write(head + _STREAM_FIRST)
                self.streaming = True
                rest = _STREAM_REST + (_STREAM_USAGE if usage else b"") + _STREAM_END
                asyncio.get_running_loop().call_soon(self._finish_stream, rest, close)
                return
            self._write(200, _COMPLETION, close)
        elif method == "GET" and path.endswith("/models"):
            self._write(200, _MODELS, close)
        else:
            self._write(404, _NOT_FOUND, close)

    def _finish_stream(self, rest: bytes, close: bool) -> None:
        self.streaming = False
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(rest)
        if close:
            self.transport.close()
            return
        self._serve()  # requests that arrived while the stream was open

    def _write(self, status: int, payload: bytes, close: bool) -> None:
        assert self.transport is not None
        reason = b"200 OK" if status == 200 else b"404 Not Found"
        head = b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
            reason,
            len(payload),
        )
        if close:
            head += b"Connection: close\r\n"
        self.transport.write(head + b"\r\n" + payload)
        if close:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def main() -> None:
    run("python -m bench.llm_upstream", __doc__, _Connection)


if __name__ == "__main__":
    main()
