"""The response cache: exact match on (client API, resolved model, canonical request).

The gateway asks ``cacheable(request.headers)`` and ``may_serve(request.headers)``, builds the key
with ``cache_key(api, model, body)``, answers a hit from the ``Entry`` (a stream replayed frame by
frame as a stream), and on a miss stores the upstream's answer once it has been sent whole.

What a caller may rely on:

- **The key** is the SHA-256 (hex) of the canonical JSON (sorted keys at every depth, no spaces,
  UTF-8) of the API name, the resolved model, ``vary`` and the request body, so key order and
  whitespace in the client's JSON do not matter while every value does (``1`` and ``1.0`` differ,
  as do aliases, since the body's ``model`` is kept). Left out of the body, because they say who
  asks or steer the provider's bookkeeping rather than what is generated: ``user``, ``metadata``,
  ``store``, ``safety_identifier``, ``prompt_cache_key``, ``prompt_cache_retention``. So two
  clients asking the same thing share an entry; to keep clients apart, pass the client id in
  ``vary``. ``vary`` is also where request headers that change the answer go (``anthropic-version``,
  ``anthropic-beta``), names in any case.
- **stream counts**: ``stream: true`` requests are stored and replayed as their SSE frames,
  others as one body, under different keys (``stream`` other than ``true`` is the same as absent,
  and ``stream_options`` counts only with ``stream: true``). A streamed answer is not served to a
  non-streaming request nor the reverse.
- An exact-match cache answers a sampled request (``temperature`` > 0, ``n`` > 1) with the one
  sample it stored, ids (``chatcmpl-...``, ``msg_...``) included, until the entry expires.
- **Only successful answers** are stored: ``put`` drops an entry whose status is not 2xx. Whether a
  stream ended cleanly (no error event, no cut connection) only the gateway knows: it calls
  ``put`` only then.
- **Cache-Control** of the request: ``no-store`` means neither lookup nor store (``cacheable``
  is False); ``no-cache`` or ``max-age=0`` means no lookup, but the fresh answer is stored
  (``may_serve`` is False).
- **Bounded size**: an entry (its body, or the sum of its frames) of more than ``max_entry_bytes``
  (2 MiB by default, some 10k streamed tokens) is not stored; ``StreamRecording`` stops keeping
  frames as soon as a stream passes the bound, so a long stream is never held whole for the cache.
- ``LocalCache(max_entries, ttl_seconds)``: this replica's memory, least recently used out first
  once there are more than ``max_entries`` entries or more than ``max_bytes`` (64 MiB) of them;
  an entry older than ``ttl_seconds`` is never served.
- ``SharedCache(client, ttl_seconds, prefix=...)``: the shared store, one string key per entry
  (``<prefix>cache:<key>``) with the TTL set on write, so every replica sees every entry. The
  store evicts by its own ``maxmemory-policy``; ``maxEntries`` does not apply there. A store that
  is unreachable makes ``get`` a miss and ``put`` a no-op, logged once per outage (``store.Outage``,
  whose ``errors`` counts); a request never fails because of the cache. An entry the store holds
  in a form this version cannot read is a miss.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson
from redis.asyncio import Redis

from agentkube.dataplane.llm.apis import API
from agentkube.dataplane.llm.store import DEFAULT_TIMEOUT_SECONDS, STORE_ERRORS, Outage

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRY_BYTES",
    "IGNORED_FIELDS",
    "Cache",
    "Entry",
    "LocalCache",
    "SharedCache",
    "StreamRecording",
    "cache_key",
    "cacheable",
    "may_serve",
]

DEFAULT_MAX_ENTRY_BYTES: Final = 2 * 1024 * 1024
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
IGNORED_FIELDS: Final = frozenset(
    {"user", "metadata", "store", "safety_identifier", "prompt_cache_key", "prompt_cache_retention"}
)
_KEY_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored answer: ``body`` for a plain response, or ``events``, the whole SSE frames of a
    stream as they were sent (each ``b"event: ...\\ndata: ...\\n\\n"`` or ``b"data: ...\\n\\n"``)."""

    status: int
    content_type: str
    body: bytes | None = None
    events: list[bytes] | None = None

    def __post_init__(self) -> None:
        if (self.body is None) == (self.events is None):
            raise ValueError("a cache entry holds either a body or the events of a stream")

    @property
    def size(self) -> int:
        """Bytes of content: the body, or the sum of the frames."""
        if self.body is not None:
            return len(self.body)
        assert self.events is not None
        return sum(len(frame) for frame in self.events)


class Cache(Protocol):
    @property
    def max_entry_bytes(self) -> int: ...

    async def get(self, key: str) -> Entry | None:
        """The entry stored under ``key`` and still fresh, else None."""
        ...

    async def put(self, key: str, entry: Entry) -> bool:
        """Store ``entry``; False when it is not stored (not 2xx, too big, store down)."""
        ...


def cache_key(api: API, model: str, body: Mapping[str, Any], *, vary: Mapping[str, str] | None = None) -> str:
    """The key of one request; ``body`` is the client's parsed JSON, left unchanged."""
    canonical = {k: v for k, v in body.items() if k not in IGNORED_FIELDS}
    if canonical.get("stream") is not True:
        canonical.pop("stream", None)
        canonical.pop("stream_options", None)
    varying = {k.lower(): v for k, v in (vary or {}).items()}
    text = orjson.dumps([_KEY_VERSION, api, model, varying, canonical], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(text).hexdigest()


def _cache_control(headers: Mapping[str, str]) -> set[str]:
    directives: set[str] = set()
    for name, value in headers.items():
        if name.lower() == "cache-control":
            directives.update(d.strip().lower().replace(" ", "") for d in value.split(","))
    return directives


def cacheable(request_headers: Mapping[str, str]) -> bool:
    """False when the request says ``Cache-Control: no-store``: no lookup, and its answer is not
    stored. Takes a plain dict or aiohttp's headers (every Cache-Control header counts)."""
    return "no-store" not in _cache_control(request_headers)


def may_serve(request_headers: Mapping[str, str]) -> bool:
    """False when the request wants a fresh answer (``no-store``, ``no-cache``, ``max-age=0``)."""
    return not _cache_control(request_headers) & {"no-store", "no-cache", "max-age=0"}


class StreamRecording:
    """The frames of a stream being sent, kept for the cache while they fit in ``max_bytes``."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_ENTRY_BYTES) -> None:
        self._max = max_bytes
        self._size = 0
        self._frames: list[bytes] | None = []

    @property
    def overflowed(self) -> bool:
        return self._frames is None

    def add(self, frame: bytes) -> None:
        if self._frames is None:
            return
        self._size += len(frame)
        if self._size > self._max:
            self._frames = None
        else:
            self._frames.append(frame)

    def extend(self, frames: Iterable[bytes]) -> None:
        for frame in frames:
            self.add(frame)

    def entry(self, status: int = 200, content_type: str = "text/event-stream") -> Entry | None:
        """The entry to store, or None when the stream passed the bound."""
        if self._frames is None:
            return None
        return Entry(status, content_type, events=list(self._frames))


def _storable(entry: Entry, max_entry_bytes: int) -> bool:
    return 200 <= entry.status < 300 and entry.size <= max_entry_bytes


class LocalCache:
    """LRU + TTL in this replica's memory. ``clock`` (seconds, monotonic) is for tests."""

    def __init__(
        self,
        max_entries: int,
        ttl_seconds: float,
        *,
        max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or ttl_seconds <= 0:
            raise ValueError("caching: maxEntries must be at least 1 and ttlSeconds more than 0")
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._max_entry_bytes = min(max_entry_bytes, max_bytes)
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Entry]] = OrderedDict()
        self._bytes = 0

    @property
    def max_entry_bytes(self) -> int:
        return self._max_entry_bytes

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """Bytes of content held (``Entry.size`` summed), for a gauge."""
        return self._bytes

    async def get(self, key: str) -> Entry | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires, entry = found
        if self._clock() >= expires:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    async def put(self, key: str, entry: Entry) -> bool:
        if not _storable(entry, self._max_entry_bytes):
            return False
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (self._clock() + self.ttl_seconds, entry)
        self._bytes += entry.size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
        return True

    def _drop(self, key: str) -> None:
        _, entry = self._entries.pop(key)
        self._bytes -= entry.size


# An entry in the store: magic and version, status, kind (0 body, 1 events), content type, then the
# body as the rest, or a count of frames and each frame with its length. Lengths are big-endian.
_MAGIC: Final = b"AKc1"
_HEAD: Final = struct.Struct("!4sHBH")
_U32: Final = struct.Struct("!I")


def _encode(entry: Entry) -> bytes:
    ctype = entry.content_type.encode()
    if entry.body is not None:
        return b"".join((_HEAD.pack(_MAGIC, entry.status, 0, len(ctype)), ctype, entry.body))
    assert entry.events is not None
    parts = [_HEAD.pack(_MAGIC, entry.status, 1, len(ctype)), ctype, _U32.pack(len(entry.events))]
    for frame in entry.events:
        parts += (_U32.pack(len(frame)), frame)
    return b"".join(parts)


def _decode(blob: bytes) -> Entry | None:
    """The entry, or None for bytes that are not an entry of this version."""
    try:
        magic, status, kind, ctype_len = _HEAD.unpack_from(blob)
        if magic != _MAGIC or kind not in (0, 1):
            return None
        at = _HEAD.size + ctype_len
        ctype = blob[_HEAD.size : at].decode()
        if kind == 0:
            return Entry(status, ctype, body=blob[at:])
        (count,) = _U32.unpack_from(blob, at)
        at += _U32.size
        frames = []
        for _ in range(count):
            (length,) = _U32.unpack_from(blob, at)
            at += _U32.size
            if at + length > len(blob):
                return None
            frames.append(blob[at : at + length])
            at += length
        return Entry(status, ctype, events=frames) if at == len(blob) else None
    except (struct.error, UnicodeDecodeError):
        return None


class SharedCache:
    """Entries in the shared store with a TTL, seen by every replica. See the module docstring."""

    def __init__(
        self,
        client: Redis,
        ttl_seconds: float,
        *,
        prefix: str,
        max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        outage: Outage | None = None,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("caching: ttlSeconds must be more than 0")
        self._client = client
        self._ttl_ms = max(1, round(ttl_seconds * 1000))
        self._prefix = f"{prefix}cache:"
        self._max_entry_bytes = max_entry_bytes
        self._timeout = timeout
        self.outage = outage or Outage("cache")

    @property
    def max_entry_bytes(self) -> int:
        return self._max_entry_bytes

    async def get(self, key: str) -> Entry | None:
        if not self.outage.should_try():
            return None
        try:
            async with asyncio.timeout(self._timeout):
                blob = await self._client.get(self._prefix + key)
        except STORE_ERRORS as error:
            self.outage.failed(error)
            return None
        self.outage.succeeded()
        return _decode(blob) if isinstance(blob, bytes) else None

    async def put(self, key: str, entry: Entry) -> bool:
        if not _storable(entry, self._max_entry_bytes) or not self.outage.should_try():
            return False
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.set(self._prefix + key, _encode(entry), px=self._ttl_ms)
        except STORE_ERRORS as error:
            self.outage.failed(error)
            return False
        self.outage.succeeded()
        return True
