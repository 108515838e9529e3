"""Client API keys (``auth.mode: apikey``): who is calling, told apart by key.

Keys come from the environment variables the config names (``auth.clients[].keyEnv``), read once when
the gateway starts; the Deployment fills them from the client-key Secret, whose every key is a
client id. A key added to or removed from that Secret changes the config, and the pods roll.

What a caller may rely on:

- A client presents its key as ``Authorization: Bearer <key>`` (the openai SDK) or ``x-api-key:
  <key>`` (the anthropic SDK); either is accepted on every route.
- The presented key is compared with every client's key in constant time (SHA-256 digests, so their
  lengths do not show either, and no early exit), and the match's id is the client id that labels
  metrics and logs. The key itself is never logged and never forwarded: providers get their own.
- With ``auth.mode: none`` every request is client ``ANONYMOUS``, whatever it presents.
- A client whose variable is unset or empty is a ``ClientKeyError`` at start naming the variable, so a
  pod that could not let a configured client in never becomes ready.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import Final

from agentkube.dataplane.llm.config import ClientAuth

__all__ = ["ANONYMOUS", "ClientKeyError", "Clients", "Unauthorized", "presented_key"]

ANONYMOUS: Final = "anonymous"


class ClientKeyError(ValueError):
    """A client's key variable is missing from the environment."""


class Unauthorized(Exception):
    """No key, or a key no client has; the message says which (never the key)."""


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request carries: the ``Authorization`` Bearer token, else ``x-api-key``."""
    authorization = headers.get("Authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


class Clients:
    def __init__(self, auth: ClientAuth, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.required = auth.mode == "apikey"
        self._digests: list[tuple[bytes, str]] = []
        for client in auth.clients:
            key = env.get(client.key_env)
            if not key:
                raise ClientKeyError(
                    f"auth.clients[{client.id}].keyEnv: {client.key_env} is not set in the gateway's "
                    "environment; the Deployment fills it from the client-key Secret"
                )
            self._digests.append((hashlib.sha256(key.encode()).digest(), client.id))

    @property
    def ids(self) -> list[str]:
        return [client for _, client in self._digests]

    def identify(self, headers: Mapping[str, str]) -> str:
        """The client id of a request; ``Unauthorized`` when a key is needed and none matches."""
        if not self.required:
            return ANONYMOUS
        key = presented_key(headers)
        if key is None:
            raise Unauthorized("no API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'")
        digest = hashlib.sha256(key.encode()).digest()
        found: str | None = None
        for known, client in self._digests:
            if hmac.compare_digest(digest, known) and found is None:
                found = client
        if found is None:
            raise Unauthorized("invalid API key")
        return found
