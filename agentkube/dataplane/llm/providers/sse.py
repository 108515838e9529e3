"""Server-sent events of an upstream stream, split as the bytes arrive (never waiting for the end).

``SseSplitter.feed(chunk)`` returns the events completed by ``chunk``: each one's ``event`` name (None
when the frame has none, as OpenAI's Chat Completions frames) and its ``data`` lines joined by
``\\n``. Frames may be split anywhere across chunks; ``\\r\\n`` line ends are accepted; comments
(``: ping``) and frames without data are dropped. A frame longer than ``max_event_bytes`` raises
``EventTooLarge`` rather than growing the buffer without end.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Event", "EventTooLarge", "SseSplitter"]


class EventTooLarge(ValueError):
    """One SSE frame exceeded the splitter's bound."""


@dataclass(frozen=True, slots=True)
class Event:
    event: str | None
    data: bytes


class SseSplitter:
    def __init__(self, max_event_bytes: int = 64 * 1024 * 1024) -> None:
        self._buffer = b""
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[Event]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        events: list[Event] = []
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            event = _parse(buffer[start:end])
            if event is not None:
                events.append(event)
            start = end + 2
        self._buffer = buffer[start:]
        if len(self._buffer) > self._max:
            raise EventTooLarge(f"an SSE event exceeds {self._max} bytes")
        return events

    def finish(self) -> list[Event]:
        """The last frame, when the stream ended without its blank line."""
        rest, self._buffer = self._buffer, b""
        event = _parse(rest.rstrip(b"\n")) if rest.strip() else None
        return [event] if event is not None else []


def _parse(frame: bytes) -> Event | None:
    name: str | None = None
    data: list[bytes] = []
    for line in frame.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    if not data:
        return None
    return Event(name, b"\n".join(data))
