"""The client APIs the LLM gateway speaks, and each one's own error envelope.

Four client APIs, named by the constants every part of the gateway shares (``CHAT``, ``RESPONSES``,
``EMBEDDINGS``, ``MESSAGES``); ``PATHS`` says where each is served. Two more are spoken only towards
an upstream (``CONVERSE`` for Bedrock, ``GEMINI`` for Vertex AI): requests are translated into them and
their answers out of them, and their errors reach the gateway already in a client envelope (the
provider module rewrites them, ``Provider.error_envelope``). Two families of error envelope:

- OpenAI (Chat Completions, Responses, embeddings): ``{"error": {"message", "type", "param", "code"}}``
- Anthropic (Messages): ``{"type": "error", "error": {"type", "message"}}``

``Failure`` is what any step of the pipeline raises to answer early (bad input, no such model, a key
that does not match, a budget spent); ``error_body(api, failure)`` renders it in the envelope of the
API the client spoke, so an SDK raises its own typed error (``openai.AuthenticationError``,
``anthropic.NotFoundError``...). ``stream_error`` is the same for a stream already under way: one SSE
frame each SDK turns into an exception. Error texts are the gateway's own and never carry a
credential or a prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import orjson

__all__ = [
    "API",
    "APIS",
    "CHAT",
    "CONVERSE",
    "COUNT_TOKENS_PATH",
    "EMBEDDINGS",
    "GEMINI",
    "KINDS",
    "MESSAGES",
    "PATHS",
    "RESPONSES",
    "STREAMING_APIS",
    "Failure",
    "Kind",
    "error_body",
    "family",
    "stream_error",
]

API = Literal[
    "openai-chat",
    "openai-responses",
    "openai-embeddings",
    "anthropic-messages",
    "bedrock-converse",
    "google-gemini",
]

CHAT: Final = "openai-chat"
"""OpenAI Chat Completions, ``POST /v1/chat/completions``."""
RESPONSES: Final = "openai-responses"
"""OpenAI Responses, ``POST /v1/responses``."""
EMBEDDINGS: Final = "openai-embeddings"
"""OpenAI embeddings, ``POST /v1/embeddings``."""
MESSAGES: Final = "anthropic-messages"
"""Anthropic Messages, ``POST /v1/messages`` (and ``/v1/messages/count_tokens``)."""
CONVERSE: Final = "bedrock-converse"
"""Amazon Bedrock's Converse / ConverseStream: an upstream API only, never a client's."""
GEMINI: Final = "google-gemini"
"""Google's Gemini ``generateContent`` / ``streamGenerateContent``: an upstream API only."""

APIS: Final[tuple[API, ...]] = (CHAT, RESPONSES, EMBEDDINGS, MESSAGES)
STREAMING_APIS: Final[frozenset[API]] = frozenset({CHAT, RESPONSES, MESSAGES})
PATHS: Final[dict[API, str]] = {
    CHAT: "/v1/chat/completions",
    RESPONSES: "/v1/responses",
    EMBEDDINGS: "/v1/embeddings",
    MESSAGES: "/v1/messages",
}
COUNT_TOKENS_PATH: Final = "/v1/messages/count_tokens"


def family(api: API) -> Literal["openai", "anthropic"]:
    """Which envelope family ``api`` answers errors in."""
    return "anthropic" if api == MESSAGES else "openai"


Kind = Literal[
    "invalid_request",
    "authentication",
    "permission",
    "not_found",
    "request_too_large",
    "rate_limit",
    "api_error",
    "bad_gateway",
    "overloaded",
    "timeout",
]


@dataclass(frozen=True)
class _Shape:
    status: int
    openai_type: str
    openai_code: str | None
    anthropic_type: str


# What each kind of failure looks like in each family: the status, OpenAI's type and code, and
# Anthropic's type, as the providers themselves send them (the SDKs pick their exception by status).
KINDS: Final[dict[Kind, _Shape]] = {
    "invalid_request": _Shape(400, "invalid_request_error", None, "invalid_request_error"),
    "authentication": _Shape(401, "invalid_request_error", "invalid_api_key", "authentication_error"),
    "permission": _Shape(403, "invalid_request_error", "permission_denied", "permission_error"),
    "not_found": _Shape(404, "invalid_request_error", "model_not_found", "not_found_error"),
    "request_too_large": _Shape(413, "invalid_request_error", "request_too_large", "request_too_large"),
    "rate_limit": _Shape(429, "requests", "rate_limit_exceeded", "rate_limit_error"),
    "api_error": _Shape(500, "server_error", None, "api_error"),
    "bad_gateway": _Shape(502, "server_error", "upstream_unavailable", "api_error"),
    "overloaded": _Shape(503, "server_error", "overloaded", "overloaded_error"),
    "timeout": _Shape(504, "server_error", "upstream_timeout", "timeout_error"),
}


class Failure(Exception):
    """An answer the gateway gives instead of a provider's: a kind, a message, and what it names.

    ``param`` is the request field at fault (OpenAI's ``param``), ``code`` overrides the kind's
    OpenAI code, ``headers`` go on the response (``Retry-After`` on a 429), and ``status``
    overrides the kind's status (rarely: 405, 501).
    """

    def __init__(
        self,
        kind: Kind,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: Kind = kind
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}
        self.status = status if status is not None else KINDS[kind].status


def _openai_error(failure: Failure) -> dict[str, object]:
    shape = KINDS[failure.kind]
    return {
        "message": failure.message,
        "type": shape.openai_type,
        "param": failure.param,
        "code": failure.code if failure.code is not None else shape.openai_code,
    }


def _anthropic_error(failure: Failure) -> dict[str, object]:
    return {
        "type": "error",
        "error": {"type": KINDS[failure.kind].anthropic_type, "message": failure.message},
    }


def error_body(api: API, failure: Failure) -> bytes:
    """``failure`` as the JSON body the client of ``api`` expects."""
    if family(api) == "anthropic":
        return orjson.dumps(_anthropic_error(failure))
    return orjson.dumps({"error": _openai_error(failure)})


def stream_error(api: API, failure: Failure, *, sequence_number: int = 0) -> bytes:
    """One SSE frame that ends a stream already under way with ``failure``, in ``api``'s shape.

    Chat Completions: a ``data:`` frame holding ``{"error": ...}`` (the openai SDK raises
    ``APIError``). Responses: an ``error`` event (``type: error``, with ``sequence_number``).
    Messages: an ``error`` event holding the Anthropic envelope (the anthropic SDK raises the
    status error of its type).
    """
    if api == MESSAGES:
        return b"event: error\ndata: " + orjson.dumps(_anthropic_error(failure)) + b"\n\n"
    error = _openai_error(failure)
    if api == RESPONSES:
        event = {
            "type": "error",
            "code": error["code"] or error["type"],
            "message": failure.message,
            "param": failure.param,
            "sequence_number": sequence_number,
        }
        return b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"
    return b"data: " + orjson.dumps({"error": error}) + b"\n\n"
