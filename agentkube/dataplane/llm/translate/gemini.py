"""Google Gemini's generateContent API (``google-gemini``): to and from the internal form.

An upstream API only. Not written yet: every function raises ``TranslationError`` until it is.
"""

from __future__ import annotations

from typing import Any

from agentkube.dataplane.llm.translate import ir
from agentkube.dataplane.llm.translate.errors import TranslationError

__all__ = ["Decoder", "build_request", "parse_response"]


def build_request(req: ir.Request, model: str) -> dict[str, Any]:
    raise TranslationError("model", "Gemini is not served by this build")


def parse_response(body: dict[str, Any]) -> ir.Response:
    raise TranslationError("model", "Gemini is not served by this build")


class Decoder:
    """streamGenerateContent SSE chunks (``data`` one GenerateContentResponse) in, internal events out."""

    def feed(self, event: str | None, data: bytes) -> list[ir.Event]:
        raise TranslationError("model", "Gemini is not served by this build")

    def finish(self) -> list[ir.Event]:
        return []
