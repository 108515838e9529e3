"""Inline media: ``data:`` URLs (OpenAI's form) <-> base64 data with a media type (Anthropic's form).

The gateway never fetches a URL: an ``https://`` image or document URL is passed to the upstream as a
URL (Anthropic ``source.type: url``, OpenAI ``image_url``), and the upstream fetches it. Only inline
data is converted between the two forms; the base64 text itself is passed as it came, never decoded.
"""

from __future__ import annotations

from typing import Any, Final

from agentkube.dataplane.llm.translate import ir
from agentkube.dataplane.llm.translate.errors import TranslationError
from agentkube.dataplane.llm.translate.fields import at

__all__ = [
    "ANTHROPIC_IMAGE_TYPES",
    "data_url",
    "is_remote",
    "openai_document",
    "openai_image",
    "parse_data_url",
    "refuse_openai_file",
]

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


def openai_image(url: str, detail: str | None) -> ir.Image:
    """An OpenAI image URL: inline data when it is a ``data:`` URL, else the URL for the upstream."""
    inline = parse_data_url(url)
    if inline is not None:
        return ir.Image(data=inline[1], media_type=inline[0], detail=detail)
    return ir.Image(url=url, detail=detail)


def openai_document(data: str, filename: str | None) -> ir.Document:
    """OpenAI ``file_data``: a ``data:`` URL, or base64 text with no media type."""
    inline = parse_data_url(data)
    if inline is not None:
        return ir.Document(data=inline[1], media_type=inline[0], filename=filename)
    return ir.Document(data=data, filename=filename)


def refuse_openai_file(part: dict[str, Any], path: str) -> None:
    """Refuse a part that names a ``file_id``: the file is stored at OpenAI, out of another's reach."""
    if part.get("file_id") is not None:
        raise TranslationError(
            at(path, "file_id"), "files stored at OpenAI cannot be sent to another provider"
        )
