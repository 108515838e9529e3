"""Server-Sent Events: reading an upstream's event stream and writing the client's, for MCP's HTTP transports.

``read_events`` parses an ``aiohttp`` body as the SSE spec says (``\\r\\n``, ``\\n`` or ``\\r`` line
ends, multi-line ``data:``, comments, ``event:``, ``id:``) without ever holding more than one event,
and refuses an event larger than the caller's bound instead of growing without limit: a misbehaving
upstream costs the proxy at most that much memory. ``format_event`` writes one event as the MCP
transports expect (``event: message`` and a single ``data:`` line of compact JSON).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

__all__ = ["PING", "Event", "EventTooLarge", "format_event", "read_events"]

PING = b": ping\n\n"
"""A comment line: keeps an idle stream open through proxies with read timeouts."""


@dataclass(frozen=True)
class Event:
    event: str
    data: bytes
    id: str | None = None


class EventTooLarge(Exception):
    """An event grew past the bound the reader was given."""


def format_event(data: bytes, event: str = "message", event_id: str | None = None) -> bytes:
    """One SSE event carrying ``data`` (which must not contain a line break: compact JSON has none)."""
    head = f"id: {event_id}\nevent: {event}\n" if event_id else f"event: {event}\n"
    return head.encode() + b"data: " + data + b"\n\n"


async def read_events(content: AsyncIterator[bytes], max_event_bytes: int) -> AsyncIterator[Event]:
    """Events of an SSE body; ``content`` yields chunks of any size (``response.content.iter_any()``)."""
    buffer = b""
    data: list[bytes] = []
    size = 0
    event = ""
    event_id: str | None = None
    async for chunk in content:
        buffer += chunk
        while True:
            end = _line_end(buffer)
            if end is None:
                if len(buffer) > max_event_bytes:
                    raise EventTooLarge(f"an event line exceeds {max_event_bytes} bytes")
                break
            line, buffer = buffer[: end[0]], buffer[end[1] :]
            if not line:
                if data:
                    yield Event(event or "message", b"\n".join(data), event_id)
                data, size, event = [], 0, ""
                continue
            if line.startswith(b":"):
                continue
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                size += len(value) + 1
                if size > max_event_bytes:
                    raise EventTooLarge(f"an event exceeds {max_event_bytes} bytes")
                data.append(value)
            elif name == b"event":
                event = value.decode("utf-8", "replace")
            elif name == b"id":
                event_id = value.decode("utf-8", "replace")
    if data:
        yield Event(event or "message", b"\n".join(data), event_id)


def _line_end(buffer: bytes) -> tuple[int, int] | None:
    """(end of the first line, start of the next) in ``buffer``, or None without a complete line."""
    n = buffer.find(b"\n")
    r = buffer.find(b"\r")
    if r == -1 or (n != -1 and n < r):
        return None if n == -1 else (n, n + 1)
    # A lone \r at the very end may be the first half of \r\n: wait for the next chunk.
    if r == len(buffer) - 1:
        return None
    return (r, r + 2) if buffer[r + 1 : r + 2] == b"\n" else (r, r + 1)
