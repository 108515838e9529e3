"""Translation errors, and an upstream's error envelope re-written in the client's.

``TranslationError(field, message)`` is what a request translator raises for a request it will not
translate without changing its meaning: a field the upstream API cannot express (``n: 3`` to
Anthropic), a value it cannot carry (an image media type Anthropic does not take), or a body of the
wrong shape. It is an ``apis.Failure`` of kind ``invalid_request`` with ``param`` set to the field,
so the gateway answers it as a 400 in the client's own envelope like any other early answer.

``translate_error`` re-writes an upstream's error body (any status) in the envelope of the client's
API. What survives: the message text, verbatim (clients such as Claude Code match on it), the
``param`` and ``code`` when the upstream gave them and the client's envelope has room for them, and
the kind (from the upstream's error type when known, else from the status). What does not: an
Anthropic ``request_id`` (OpenAI's envelope has no field for it), OpenAI's ``param``/``code`` towards
Anthropic (its envelope has only ``type`` and ``message``). A body that is not a JSON envelope
becomes one whose message is the upstream's text (cut to 2,000 characters) or, when empty, names
the status.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from agentkube.dataplane.llm.apis import API, MESSAGES, Failure, Kind, error_body

__all__ = ["TranslationError", "UpstreamError", "kind_for", "parse_error", "translate_error"]


class TranslationError(Failure):
    """A request the translator refuses: ``field`` names where, ``message`` says why and what to do.

    Answer it as a 400 (``apis.error_body(client_api, err)``); ``str(err)`` is ``"field: message"``.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__("invalid_request", f"{field}: {message}", param=field)
        self.field = field
        self.reason = message


class UpstreamError(Failure):
    """An error an upstream reported, parsed from its envelope (body or mid-stream event)."""


_MAX_TEXT: Final = 2000

_BY_STATUS: Final[dict[int, Kind]] = {
    400: "invalid_request",
    401: "authentication",
    403: "permission",
    404: "not_found",
    413: "request_too_large",
    429: "rate_limit",
    500: "api_error",
    502: "bad_gateway",
    503: "overloaded",
    504: "timeout",
    529: "overloaded",
}

_BY_TYPE: Final[dict[str, Kind]] = {
    # Anthropic's error types.
    "invalid_request_error": "invalid_request",
    "authentication_error": "authentication",
    "permission_error": "permission",
    "billing_error": "permission",
    "not_found_error": "not_found",
    "request_too_large": "request_too_large",
    "rate_limit_error": "rate_limit",
    "api_error": "api_error",
    "overloaded_error": "overloaded",
    "timeout_error": "timeout",
    # OpenAI's (its ``type`` is coarse; ``code`` says more and is checked first).
    "invalid_api_key": "authentication",
    "rate_limit_exceeded": "rate_limit",
    "insufficient_quota": "rate_limit",
    "model_not_found": "not_found",
    "context_length_exceeded": "invalid_request",
    "server_error": "api_error",
}


def kind_for(status: int, error_type: str | None = None) -> Kind:
    """The gateway's kind of an upstream error: by its type when known, else by HTTP status."""
    if error_type is not None and error_type in _BY_TYPE:
        kind = _BY_TYPE[error_type]
        # OpenAI calls nearly everything ``invalid_request_error``; the status is more precise then.
        if not (kind == "invalid_request" and status in _BY_STATUS):
            return kind
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return "api_error" if status >= 500 else "invalid_request"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_error(body: bytes | dict[str, Any], status: int) -> UpstreamError:
    """Any upstream error body (OpenAI's envelope, Anthropic's, or not JSON at all) as one error."""
    data: Any = body
    if isinstance(body, bytes):
        try:
            data = orjson.loads(body) if body.strip() else None
        except orjson.JSONDecodeError:
            text = body.decode("utf-8", "replace").strip()[:_MAX_TEXT]
            return UpstreamError(kind_for(status), text or f"upstream answered HTTP {status}", status=status)
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = _text(error.get("message")) or f"upstream answered HTTP {status}"
        code = error.get("code")
        code = str(code) if isinstance(code, str | int) and not isinstance(code, bool) else None
        error_type = _text(error.get("type"))
        kind = kind_for(status, code if code in _BY_TYPE else error_type)
        return UpstreamError(kind, message, param=_text(error.get("param")), code=code, status=status)
    if isinstance(error, str) and error:  # some OpenAI-compatible servers: {"error": "text"}
        return UpstreamError(kind_for(status), error, status=status)
    if isinstance(data, dict) and _text(data.get("message")):
        return UpstreamError(kind_for(status), str(data["message"]), status=status)
    return UpstreamError(kind_for(status), f"upstream answered HTTP {status}", status=status)


def translate_error(body: bytes, status: int, src: API, dst: API) -> bytes:
    """An upstream (``src``) error body as the client (``dst``) expects it; same API: unchanged."""
    if src == dst:
        return body
    if src != MESSAGES and dst != MESSAGES and _is_envelope(body, dst):
        # Chat Completions, Responses and embeddings share one envelope: pass the upstream's bytes.
        return body
    return error_body(dst, parse_error(body, status))


def _is_envelope(body: bytes, api: API) -> bool:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(data, dict) or not isinstance(data.get("error"), dict):
        return False
    return api != MESSAGES or data.get("type") == "error"
