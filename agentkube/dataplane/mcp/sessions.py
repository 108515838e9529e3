"""Sessions: sealed session ids, so any replica of one MCP can serve any request of a session-era client.

A session-based (2025-era) client gets an ``Mcp-Session-Id`` at ``initialize`` and sends it with every
later request, to whichever replica the Service picks. Rather than keep sessions in a shared store or
pin clients to replicas, the id *is* the session: its state (what the client said at ``initialize``
and the ids of the upstream sessions opened for it) sealed with AES-GCM under a key every replica
of the MCP shares (``sessions.keysEnv``, one Secret for all replicas).

What a caller may rely on:

- ``KeyRing.parse`` reads ``<kid>:<base64 of 32 bytes>[, ...]``: the first entry seals, every entry
  opens. Rotation is therefore: put the new key first and keep the old one after it until the
  sessions it sealed have expired (``ttlSeconds``), then drop it. Errors name the entry's position
  and what is wrong with it, never any part of the entry itself; ``repr`` shows key ids only.
- ``Sealer.seal`` returns a string of the URL-safe base64 alphabet (``A-Z a-z 0-9 - _``), so always
  visible ASCII as ``Mcp-Session-Id`` requires, of at most ``MAX_TOKEN_CHARS`` characters (it
  raises ``ValueError`` for a state that would not fit rather than hand out an id nobody can open).
  Its length grows with what the client sent about itself: some 170 characters for a client that
  sent nothing, plus 4/3 of the compact JSON of its capabilities, its info and the upstream session ids.
- ``Sealer.open`` returns the sealed state or raises ``InvalidSession`` whose ``reason`` says why:
  ``malformed`` (not one of our tokens), ``unknown key id`` (sealed under a key the ring no longer
  has), ``tampered`` (authentication failed: changed, or sealed under another key of the same id),
  ``expired`` (older than the ttl) or ``not yet valid`` (issued more than ``CLOCK_SKEW_SECONDS`` in
  the future by this replica's clock). Every reason means the same to a client: the front answers
  404 (the session is unknown to the server; the client starts a new one with ``initialize``), and
  keeps the reason for its logs and metrics. The message never includes the token.
- Opening costs one base64 decode, one AES-GCM decrypt and one JSON parse; the AEAD keys are derived
  (HKDF-SHA256) once, when the ring is made.

Token layout, before base64: ``version (1 byte) | kid length (1 byte) | kid | nonce (12 bytes) |
ciphertext and tag``; the bytes before the nonce are the associated data, so the version and key id
are authenticated too. The plaintext is compact JSON with one-letter keys.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "CLOCK_SKEW_SECONDS",
    "MAX_TOKEN_CHARS",
    "InvalidSession",
    "KeyRing",
    "Reason",
    "Sealer",
    "SessionState",
    "new_sid",
]

CLOCK_SKEW_SECONDS: Final = 60
"""How far in the future another replica's clock may have put ``issued_at``."""
MAX_TOKEN_CHARS: Final = 4096
"""Longest token sealed or opened: well inside every HTTP stack's header limit (aiohttp: 8190)."""

VERSION: Final = 1
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
HKDF_INFO: Final = b"agentkube mcp session v1"
KID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,16}")
_TOKEN_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]+")
_KEY_PATTERN: Final = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")

Reason = Literal["malformed", "unknown key id", "tampered", "expired", "not yet valid"]


class InvalidSession(Exception):
    """A session id this proxy cannot continue; ``reason`` says why (for logs and metrics only)."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(f"invalid session id: {reason}")
        self.reason: Reason = reason


def new_sid() -> str:
    """16 random bytes as hex: names a session in logs and metrics, and reveals nothing about it."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class SessionState:
    """What one client session needs on every request, whichever replica serves it."""

    protocol_version: str
    """The revision negotiated at ``initialize``."""
    client_capabilities: dict[str, Any]
    client_info: dict[str, Any] | None
    upstream_sessions: dict[str, str]
    """Upstream name -> that upstream's own ``Mcp-Session-Id`` for this client."""
    issued_at: int
    """Unix seconds when the session was started; it expires ``ttl_seconds`` later."""
    sid: str = field(default_factory=new_sid)


class KeyRing:
    """The keys that seal (the first) and open (all) session ids, by key id.

    Holds only the derived AEAD keys, inside ``AESGCM`` objects; never shows them.
    """

    __slots__ = ("_aeads", "_kids")

    def __init__(self, keys: Iterable[tuple[str, bytes]]) -> None:
        """Make a ring from ``(kid, 32-byte key)`` pairs, sealing with the first."""
        aeads: dict[str, AESGCM] = {}
        for position, (kid, key) in enumerate(keys, start=1):
            if not KID_PATTERN.fullmatch(kid):
                raise ValueError(f"key {position}: key id must be 1-16 characters of A-Z a-z 0-9 _ -")
            if kid in aeads:
                raise ValueError(f"key {position}: key id repeats an earlier key's")
            if len(key) != KEY_BYTES:
                raise ValueError(f"key {position}: key is {len(key)} bytes, expected {KEY_BYTES}")
            aeads[kid] = AESGCM(_derive(key))
        if not aeads:
            raise ValueError("key ring is empty: expected <kid>:<base64 of 32 bytes>[, ...]")
        self._aeads = aeads
        self._kids = tuple(aeads)

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        """Read ``<kid>:<base64 of 32 bytes>`` entries separated by commas (whitespace around is ignored).

        The key may be standard or URL-safe base64, padded or not. Errors name the entry by position.
        """
        if not text.strip():
            raise ValueError("key ring is empty: expected <kid>:<base64 of 32 bytes>[, ...]")
        pairs: list[tuple[str, bytes]] = []
        seen: dict[str, int] = {}
        for position, entry in enumerate(text.split(","), start=1):
            where = f"key ring entry {position}"
            entry = entry.strip()
            if not entry:
                raise ValueError(f"{where}: empty (a stray comma?)")
            kid, colon, encoded = entry.partition(":")
            kid, encoded = kid.strip(), encoded.strip()
            if not colon:
                raise ValueError(f"{where}: expected <kid>:<base64 of 32 bytes>, found no ':'")
            if not KID_PATTERN.fullmatch(kid):
                raise ValueError(f"{where}: key id must be 1-16 characters of A-Z a-z 0-9 _ -")
            if kid in seen:
                raise ValueError(f"{where}: key id repeats entry {seen[kid]}")
            key = _decode_key(encoded)
            if key is None:
                raise ValueError(f"{where}: key is not base64")
            if len(key) != KEY_BYTES:
                raise ValueError(f"{where}: key decodes to {len(key)} bytes, expected {KEY_BYTES}")
            seen[kid] = position
            pairs.append((kid, key))
        return cls(pairs)

    @classmethod
    def generate(cls, kid: str = "k1") -> KeyRing:
        """A ring of one random key: for a single replica with no configured key (sessions then end
        when the process does)."""
        return cls([(kid, secrets.token_bytes(KEY_BYTES))])

    @classmethod
    def from_env(cls, var_name: str | None, *, environ: Mapping[str, str] | None = None) -> KeyRing:
        """The ring in variable ``var_name`` (``sessions.keysEnv``), or a random one when it is None.

        A named variable that is unset or empty is an error: a replica that silently made its own key
        would break every session the others issued.
        """
        if var_name is None:
            return cls.generate()
        text = (os.environ if environ is None else environ).get(var_name, "")
        if not text.strip():
            raise ValueError(f"sessions.keysEnv: variable {var_name} is not set or empty")
        try:
            return cls.parse(text)
        except ValueError as e:
            raise ValueError(f"sessions.keysEnv: variable {var_name}: {e}") from None

    @property
    def kids(self) -> tuple[str, ...]:
        """Key ids in ring order; the first seals."""
        return self._kids

    @property
    def sealing_kid(self) -> str:
        return self._kids[0]

    def _aead(self, kid: str) -> AESGCM | None:
        return self._aeads.get(kid)

    def __repr__(self) -> str:
        return f"KeyRing(kids={self._kids!r})"


def _derive(key: bytes) -> bytes:
    # HKDF rather than the raw key: the configured secret may be reused elsewhere, and a fixed info
    # string ties the derived key to this one purpose and token version.
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=HKDF_INFO).derive(key)


def _decode_key(encoded: str) -> bytes | None:
    if not _KEY_PATTERN.fullmatch(encoded):
        return None
    unpadded = encoded.rstrip("=").replace("-", "+").replace("_", "/")
    if len(unpadded) % 4 == 1:
        return None
    try:
        return base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except binascii.Error:
        return None


class Sealer:
    """Seals ``SessionState`` into a session id and opens it again, checking its age."""

    def __init__(self, keyring: KeyRing, ttl_seconds: int, clock: Callable[[], float] = time.time) -> None:
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")
        self.keyring = keyring
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        kid = keyring.sealing_kid.encode("ascii")
        self._header = bytes((VERSION, len(kid))) + kid
        self._aead = keyring._aeads[keyring.sealing_kid]

    def new_state(
        self,
        protocol_version: str,
        client_capabilities: dict[str, Any],
        client_info: dict[str, Any] | None = None,
        upstream_sessions: dict[str, str] | None = None,
    ) -> SessionState:
        """A fresh session issued now (by this sealer's clock), with a new ``sid``."""
        return SessionState(
            protocol_version=protocol_version,
            client_capabilities=client_capabilities,
            client_info=client_info,
            upstream_sessions={} if upstream_sessions is None else upstream_sessions,
            issued_at=int(self._clock()),
        )

    def seal(self, state: SessionState) -> str:
        """The session id for ``state``: sealed under the ring's first key with a random nonce."""
        plain = orjson.dumps(
            {
                "p": state.protocol_version,
                "c": state.client_capabilities,
                "i": state.client_info,
                "u": state.upstream_sessions,
                "t": state.issued_at,
                "s": state.sid,
            }
        )
        nonce = secrets.token_bytes(NONCE_BYTES)
        raw = self._header + nonce + self._aead.encrypt(nonce, plain, self._header)
        token = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
        if len(token) > MAX_TOKEN_CHARS:
            raise ValueError(
                f"session state seals to {len(token)} characters, more than {MAX_TOKEN_CHARS}: "
                "the client's capabilities or info are too large to carry in a session id"
            )
        return token

    def open(self, token: str) -> SessionState:
        """The state sealed in ``token``; ``InvalidSession`` when it is not ours, changed or too old."""
        if len(token) > MAX_TOKEN_CHARS or not _TOKEN_PATTERN.fullmatch(token) or len(token) % 4 == 1:
            raise InvalidSession("malformed")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        # base64 leaves spare bits in the last character; refusing a non-canonical spelling makes
        # every token string map to one byte string, so no two distinct ids open to one session.
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
            raise InvalidSession("malformed")
        if len(raw) < 2 or raw[0] != VERSION:
            raise InvalidSession("malformed")
        end = 2 + raw[1]
        if len(raw) < end + NONCE_BYTES + TAG_BYTES:
            raise InvalidSession("malformed")
        kid = raw[2:end].decode("ascii", errors="replace")
        if not KID_PATTERN.fullmatch(kid):
            raise InvalidSession("malformed")
        aead = self.keyring._aead(kid)
        if aead is None:
            raise InvalidSession("unknown key id")
        try:
            plain = aead.decrypt(raw[end : end + NONCE_BYTES], raw[end + NONCE_BYTES :], raw[:end])
        except InvalidTag:
            raise InvalidSession("tampered") from None
        state = _state_of(plain)
        now = self._clock()
        if now > state.issued_at + self.ttl_seconds:
            raise InvalidSession("expired")
        if state.issued_at > now + CLOCK_SKEW_SECONDS:
            raise InvalidSession("not yet valid")
        return state

    def __repr__(self) -> str:
        return f"Sealer(keyring={self.keyring!r}, ttl_seconds={self.ttl_seconds})"


def _state_of(plain: bytes) -> SessionState:
    # Authenticated plaintext was written by some replica's ``seal``; checking its shape still
    # guards against a replica of another token version sharing the key.
    try:
        data = orjson.loads(plain)
    except orjson.JSONDecodeError:
        raise InvalidSession("malformed") from None
    if not isinstance(data, dict):
        raise InvalidSession("malformed")
    version, caps, info = data.get("p"), data.get("c"), data.get("i")
    upstreams, issued, sid = data.get("u"), data.get("t"), data.get("s")
    if (
        not isinstance(version, str)
        or not isinstance(caps, dict)
        or not (info is None or isinstance(info, dict))
        or not isinstance(upstreams, dict)
        or not all(isinstance(v, str) for v in upstreams.values())
        or not isinstance(issued, int)
        or isinstance(issued, bool)
        or not isinstance(sid, str)
    ):
        raise InvalidSession("malformed")
    return SessionState(
        protocol_version=version,
        client_capabilities=caps,
        client_info=info,
        upstream_sessions=upstreams,
        issued_at=issued,
        sid=sid,
    )
