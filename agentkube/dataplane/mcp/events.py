"""Server-Sent Events: reading an upstream's event stream and writing the client's, for MCP's HTTP transports.

``read_events`` parses an ``aiohttp`` body as the SSE spec says (``\\r\\n``, ``\\n`` or ``\\r`` line
ends, multi-line ``data:``, comments, ``event:``, ``id:``) without ever holding more than one event,
and refuses an event larger than the caller's bound instead of growing without limit: a misbehaving
upstream costs the proxy at most that much memory. ``format_event`` writes one event as the MCP
transports expect (``event: message`` and a single ``data:`` line of compact JSON).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

__all__ = ["PING", "EventTooLarge", "SseEvent", "SseParser", "format_event", "read_events"]

_EOL: Final = re.compile(rb"\r\n|[\r\n]")
_BOM: Final = b"\xef\xbb\xbf"

PING = b": ping\n\n"
"""A comment line: keeps an idle stream open through proxies with read timeouts."""


@dataclass(frozen=True)
class SseEvent:
    event: str
    """The ``event:`` field; ``message`` when the event named none."""
    data: str
    id: str
    """The last event id in effect when this event was dispatched ("" when none was set)."""


class SseParser:
    """Turns chunks of an event stream into events; keeps at most ``max_event_bytes`` of one event."""

    def __init__(self, max_event_bytes: int) -> None:
        self._max = max_event_bytes
        self._buf = bytearray()
        self._scan = 0
        self._skip_lf = False
        self._first_line = True
        self._data: list[bytes] = []
        self._event = ""
        self._size = 0
        self._discarding = False
        self._partial = False
        self.last_event_id = ""
        self.retry: int | None = None
        """The reconnection time (ms) the server asked for with ``retry:``, if any."""
        self.dropped = 0
        """How many events were over ``max_event_bytes`` and dropped."""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        events: list[SseEvent] = []
        if not chunk:
            return events
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buf = self._buf
        buf += chunk
        start = 0
        while (match := _EOL.search(buf, self._scan)) is not None:
            if match.end() == len(buf) and match.group() == b"\r":
                # A CR that ends the chunk may be the first half of a CRLF.
                self._skip_lf = True
            event = self._line(bytes(buf[start : match.start()]))
            start = self._scan = match.end()
            if event is not None:
                events.append(event)
        del buf[:start]
        self._scan = len(buf)
        if buf and (self._discarding or self._size + len(buf) > self._max):
            # An unterminated line already too long: drop what there is and the rest of its event.
            self._discarding = True
            self._data.clear()
            self._partial = True
            buf.clear()
            self._scan = 0
        return events

    def _line(self, line: bytes) -> SseEvent | None:
        if self._partial:
            self._partial = False
            return None
        if self._first_line:
            self._first_line = False
            if line.startswith(_BOM):
                line = line[len(_BOM) :]
        if not line:
            return self._dispatch()
        if self._discarding or line[:1] == b":":
            return None
        self._size += len(line) + 1
        if self._size > self._max:
            self._discarding = True
            self._data.clear()
            return None
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\0" not in value:
                self.last_event_id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        data, event = self._data, self._event
        discarded = self._discarding
        self._data, self._event, self._size, self._discarding = [], "", 0, False
        if discarded:
            self.dropped += 1
            return None
        if not data:
            return None
        return SseEvent(event or "message", b"\n".join(data).decode("utf-8", "replace"), self.last_event_id)


class EventTooLarge(Exception):
    """An event grew past the bound the reader was given."""


def format_event(data: bytes, event: str = "message", event_id: str | None = None) -> bytes:
    """One SSE event carrying ``data`` (which must not contain a line break: compact JSON has none)."""
    head = f"id: {event_id}\nevent: {event}\n" if event_id else f"event: {event}\n"
    return head.encode() + b"data: " + data + b"\n\n"


async def read_events(content: AsyncIterator[bytes], max_event_bytes: int) -> AsyncIterator[SseEvent]:
    """Events of an SSE body (``response.content.iter_any()``); ``EventTooLarge`` for an event over the
    bound, which a response stream cannot skip (the message it carried would be lost)."""
    parser = SseParser(max_event_bytes)
    async for chunk in content:
        for event in parser.feed(chunk):
            yield event
        if parser.dropped:
            raise EventTooLarge(f"an event exceeds {max_event_bytes} bytes")
