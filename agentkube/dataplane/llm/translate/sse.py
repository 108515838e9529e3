"""Server-sent event frames as the three APIs write them (one whole frame per call), and their data read.

``event_object`` is how every stream decoder reads one event's ``data``: the JSON object, or the
sentence a decoder ends the stream with (as a ``bad_gateway`` error) when it is not one.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

__all__ = ["DONE", "event_object", "frame"]

DONE: Final = b"data: [DONE]\n\n"
"""Chat Completions' last frame."""


def frame(data: Any, event: str | None = None) -> bytes:
    """``event: <event>`` (when named) and one ``data:`` line of compact JSON, then the blank line."""
    body = orjson.dumps(data)
    if event is None:
        return b"data: " + body + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + body + b"\n\n"


def event_object(data: bytes, noun: str = "event") -> dict[str, Any] | str:
    """An upstream's stream ``data`` as its JSON object, or why it is none (``noun``: event, chunk)."""
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return f"the upstream sent a stream {noun} that is not JSON"
    if not isinstance(payload, dict):
        return f"the upstream sent a stream {noun} that is not an object"
    return payload
