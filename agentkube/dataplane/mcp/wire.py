"""The MCP wire: protocol versions, JSON-RPC codes, the 2026-07-28 envelope and header rules, messages.

One place for the constants both sides of the proxy use (the front towards clients, the upstream
clients towards servers), and the small builders of JSON-RPC messages. Messages are plain dicts and
are encoded with orjson; nothing here validates a whole message against a schema (the proxy
forwards what it does not need to understand).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any, Final, Literal

import orjson

__all__ = [
    "CAPABILITIES_KEY",
    "CLIENT_INFO_KEY",
    "ENVELOPE_KEYS",
    "HANDSHAKE_VERSIONS",
    "HEADER_MISMATCH",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "LATEST_HANDSHAKE",
    "METHOD_NOT_FOUND",
    "MISSING_CAPABILITY",
    "MODERN",
    "MODERN_VERSIONS",
    "NAME_PARAMS",
    "NEEDED_CAPABILITY",
    "PARSE_ERROR",
    "PROTOCOL_VERSION_KEY",
    "REQUEST_TIMEOUT",
    "SERVED_VERSIONS",
    "SESSION_VERSIONS",
    "UNSUPPORTED_VERSION",
    "ListKind",
    "decode_header_value",
    "dumps",
    "encode_header_value",
    "error",
    "error_status",
    "is_notification",
    "is_request",
    "is_response",
    "list_kind",
    "notification",
    "param_headers",
    "request",
    "response",
    "without_envelope",
]

MODERN: Final = "2026-07-28"
MODERN_VERSIONS: Final = (MODERN,)
HANDSHAKE_VERSIONS: Final = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
"""Revisions that start with ``initialize``, newest first (2024-11-05 only for HTTP+SSE upstreams)."""
LATEST_HANDSHAKE: Final = HANDSHAKE_VERSIONS[0]
SESSION_VERSIONS: Final = HANDSHAKE_VERSIONS[:3]
"""The session-era revisions the proxy serves to clients over Streamable HTTP (2024-11-05 had none)."""
SERVED_VERSIONS: Final = (MODERN, *SESSION_VERSIONS)
"""Every revision the proxy's front serves, as ``server/discover`` and version errors list them."""

PROTOCOL_VERSION_KEY: Final = "io.modelcontextprotocol/protocolVersion"
CAPABILITIES_KEY: Final = "io.modelcontextprotocol/clientCapabilities"
CLIENT_INFO_KEY: Final = "io.modelcontextprotocol/clientInfo"
ENVELOPE_KEYS: Final = frozenset({PROTOCOL_VERSION_KEY, CAPABILITIES_KEY, CLIENT_INFO_KEY})

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
REQUEST_TIMEOUT: Final = -32001
HEADER_MISMATCH: Final = -32020
MISSING_CAPABILITY: Final = -32021
UNSUPPORTED_VERSION: Final = -32022

# The HTTP status of a JSON-RPC error on the 2026-07-28 transport; other codes answer 200.
_ERROR_STATUS: Final[Mapping[int, int]] = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    MISSING_CAPABILITY: 400,
    UNSUPPORTED_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}

NEEDED_CAPABILITY: Final[Mapping[str, str]] = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}
"""The client capability a server-to-client request needs before it may be put to a client."""

NAME_PARAMS: Final[Mapping[str, str]] = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
"""Methods whose ``Mcp-Name`` header mirrors a body param, and which param."""


def dumps(message: Any) -> bytes:
    return orjson.dumps(message)


def error_status(code: int) -> int:
    return _ERROR_STATUS.get(code, 200)


def request(request_id: Any, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def notification(method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


def response(request_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def error(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": body}


def is_request(message: Mapping[str, Any]) -> bool:
    return "method" in message and "id" in message


def is_notification(message: Mapping[str, Any]) -> bool:
    return "method" in message and "id" not in message


def is_response(message: Mapping[str, Any]) -> bool:
    return "method" not in message and "id" in message and ("result" in message or "error" in message)


ListKind = Literal["tools", "prompts", "resources"]
_LIST_CHANGED: Final[Mapping[str, ListKind]] = {
    "notifications/tools/list_changed": "tools",
    "notifications/prompts/list_changed": "prompts",
    "notifications/resources/list_changed": "resources",
}


def list_kind(method: str) -> ListKind | None:
    """``tools`` for ``notifications/tools/list_changed`` (and so on); None for any other method."""
    return _LIST_CHANGED.get(method)


def without_envelope(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """``params`` without the 2026-07-28 envelope keys in ``_meta`` (and without an emptied ``_meta``)."""
    out = dict(params or {})
    meta = out.get("_meta")
    if isinstance(meta, Mapping):
        kept = {k: v for k, v in meta.items() if k not in ENVELOPE_KEYS}
        if kept:
            out["_meta"] = kept
        else:
            del out["_meta"]
    return out


_SENTINEL = re.compile(r"^=\?base64\?(.*)\?=$")
_SAFE = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$")


def encode_header_value(value: str) -> str:
    """``value`` as an HTTP header value: verbatim when it is visible ASCII without edge spaces (and
    does not itself look like the sentinel), else ``=?base64?<utf-8 base64>?=``."""
    if _SAFE.match(value) and not _SENTINEL.match(value):
        return value
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="


def decode_header_value(value: str | None) -> str | None:
    """Inverse of ``encode_header_value``; None for a malformed sentinel (so it never matches)."""
    if value is None:
        return None
    m = _SENTINEL.match(value)
    if m is None:
        return value
    try:
        raw = base64.b64decode(m.group(1), validate=True)
        if base64.b64encode(raw).decode() != m.group(1):
            return None
        return raw.decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


PARAM_HEADER_PREFIX: Final = "Mcp-Param-"
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def param_headers(input_schema: Any, arguments: Any) -> dict[str, str]:
    """The ``Mcp-Param-<token>`` headers a 2026-07-28 ``tools/call`` mirrors from its arguments: one
    per property the tool's ``inputSchema`` marks with ``x-mcp-header`` (reached through nested
    ``properties`` only), whose argument is a string, integer or boolean. A schema with a malformed
    or duplicated annotation yields none (clients drop such tools, servers validate nothing)."""
    found: list[tuple[tuple[str, ...], str, Any]] = []
    stack: list[tuple[tuple[str, ...], Any]] = [((), input_schema)]
    while stack:
        path, schema = stack.pop()
        if not isinstance(schema, Mapping):
            continue
        token = schema.get("x-mcp-header")
        if token is not None:
            if not path or not isinstance(token, str) or not _TOKEN.match(token):
                return {}
            found.append((path, token, schema.get("type")))
        properties = schema.get("properties")
        if isinstance(properties, Mapping):
            stack.extend(((*path, str(k)), v) for k, v in properties.items())
    if len({token.lower() for _, token, _ in found}) != len(found):
        return {}
    headers: dict[str, str] = {}
    for path, token, kind in found:
        value: Any = arguments
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        if isinstance(value, bool):
            rendered = "true" if value else "false"
        elif kind == "integer" and isinstance(value, float) and value.is_integer():
            rendered = str(int(value))
        elif isinstance(value, str | int | float):
            rendered = str(value)
        else:
            continue
        headers[PARAM_HEADER_PREFIX + token] = encode_header_value(rendered)
    return headers
