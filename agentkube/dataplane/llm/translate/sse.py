"""Server-sent event frames as the three APIs write them (one whole frame per call)."""

from __future__ import annotations

from typing import Any, Final

import orjson

__all__ = ["DONE", "frame"]

DONE: Final = b"data: [DONE]\n\n"
"""Chat Completions' last frame."""


def frame(data: Any, event: str | None = None) -> bytes:
    """``event: <event>`` (when named) and one ``data:`` line of compact JSON, then the blank line."""
    body = orjson.dumps(data)
    if event is None:
        return b"data: " + body + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + body + b"\n\n"
