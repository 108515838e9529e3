"""Inline media: ``data:`` URLs (OpenAI's form) <-> base64 data with a media type (Anthropic's form).

The gateway never fetches a URL: an ``https://`` image or document URL is passed to the upstream as a
URL (Anthropic ``source.type: url``, OpenAI ``image_url``), and the upstream fetches it. Only inline
data is converted between the two forms; the base64 text itself is passed as it came, never decoded.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ANTHROPIC_IMAGE_TYPES", "data_url", "is_remote", "parse_data_url"]

ANTHROPIC_IMAGE_TYPES: Final = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:<media type>;base64,<data>`` as ``(media_type, data)``; ``None`` for any other URL."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    if not sep:
        return None
    media_type, _, encoding = head.rpartition(";")
    if encoding != "base64" or not media_type:
        return None
    return media_type.split(";", 1)[0].strip().lower(), data


def data_url(media_type: str, data: str) -> str:
    return f"data:{media_type};base64,{data}"


def is_remote(url: str) -> bool:
    """An ``http(s)://`` URL, which the upstream may fetch (the gateway never does)."""
    return url.startswith(("https://", "http://"))
