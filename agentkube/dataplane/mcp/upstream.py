"""Upstream: how the proxy speaks to one MCP server, whatever its transport and protocol era.

Three transports implement ``Upstream``: Streamable HTTP (``http.py``, both eras), the older HTTP+SSE
transport of 2024-11-05 (``sse.py``) and a child process on stdin/stdout (``stdio.py``). The front
(``front.py``) and the catalog (``catalog.py``) only ever see this interface.

What a caller may rely on:

- ``start()`` returns at once; connecting happens in the background and is retried with backoff
  for as long as the upstream does not answer (fail open: the other upstreams are served
  meanwhile). ``tried`` is set after the first attempt, whatever its outcome; ``up`` says whether
  the upstream answers now.
- ``request()`` forwards one JSON-RPC request and returns the upstream's JSON-RPC response message
  (a dict with ``result`` or ``error``; its ``id`` is not meaningful to the caller). Messages that
  belong to the request and arrive before its response (progress and logging notifications,
  server-to-client requests such as sampling, elicitation and roots) are handed to
  ``exchange.on_message`` as the upstream sent them, in order. Transport failures, garbage and
  timeouts raise ``UpstreamError``; an upstream that no longer knows the client's session raises
  ``SessionLost``. Cancelling the awaiting task cancels the request upstream (a closed stream or
  ``notifications/cancelled``, as the transport needs).
- ``reply()`` hands the client's response to a server-to-client request back to the upstream that
  made it (the message carries the upstream's own request id).
- ``open_session()`` starts an upstream session on behalf of one client (session-era Streamable HTTP
  only) and returns its id, to be sealed into the client's own session id; other transports and
  eras return None, and ``request()`` then needs no session.
- ``on_list_changed`` is called with ``tools``, ``prompts`` or ``resources`` when the upstream says
  that list changed, and with all three when it (re)connects; ``on_down`` when it stops answering.
  Implementations report both through ``_set_up`` and ``_list_changed``.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agentkube.dataplane.mcp.wire import ListKind

__all__ = [
    "DEFAULT_CLIENT",
    "LIST_KINDS",
    "PROXY_CAPABILITIES",
    "PROXY_CLIENT",
    "PROXY_INFO",
    "ClientContext",
    "Era",
    "Exchange",
    "ListKind",
    "Message",
    "SessionLost",
    "Upstream",
    "UpstreamError",
    "UpstreamTimeout",
]

Message = dict[str, Any]
"""One decoded JSON-RPC message."""

Era = Literal["modern", "legacy"]
"""modern: the stateless revision 2026-07-28 (``server/discover``, ``_meta`` on every request);
legacy: the session-based revisions that start with ``initialize`` (2024-11-05 to 2025-11-25)."""

LIST_KINDS: tuple[ListKind, ...] = ("tools", "prompts", "resources")

PROXY_INFO: Mapping[str, Any] = {"name": "agentkube-mcp-proxy", "version": "0.1.0"}
"""How the proxy names itself to upstreams (when it speaks for itself) and to clients."""

PROXY_CAPABILITIES: Mapping[str, Any] = {"sampling": {}, "elicitation": {}, "roots": {"listChanged": True}}
"""What the proxy declares when it speaks for itself (its own sessions, its catalog listings): it
relays all three to the client of the call a server request belongs to, if that client declared it.
Servers that offer some tools only to clients with these capabilities list them to the proxy."""


@dataclass(frozen=True)
class ClientContext:
    """The client a request is forwarded for: what it told the proxy about itself."""

    capabilities: Mapping[str, Any] = field(default_factory=dict)
    info: Mapping[str, Any] | None = None
    protocol_version: str | None = None
    """The version the client speaks to the proxy (either era)."""


DEFAULT_CLIENT = ClientContext()
"""Nobody in particular: a request made for no client can ask no client anything."""

PROXY_CLIENT = ClientContext(capabilities=PROXY_CAPABILITIES)
"""The proxy speaking for itself: its own sessions and catalog listings."""


class UpstreamError(Exception):
    """The upstream could not answer: unreachable, closed, garbage, or too slow."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer within the call timeout."""


class SessionLost(UpstreamError):
    """The upstream answered 404 for the client's session (it restarted): the client must re-initialize."""


@dataclass
class Exchange:
    """What travels with one forwarded request besides its method and params."""

    on_message: Callable[[Message], Awaitable[None]] | None = None
    """Receives the notifications and server-to-client requests that belong to this request."""
    client: ClientContext = DEFAULT_CLIENT
    session: str | None = None
    """The upstream's own session id for this client (session-era Streamable HTTP), if one was opened."""
    timeout: float | None = None
    """Seconds the upstream may take; None: the upstream's configured call timeout."""
    request_id: Any = None
    """The id to send upstream: the client's own within its upstream session, so that its
    ``notifications/cancelled`` can be forwarded by any replica. None: the upstream picks one."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra HTTP headers for this request (``Mcp-Param-*`` of 2026-07-28); other transports ignore them."""


class Upstream(abc.ABC):
    """One MCP server behind the proxy."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tried = asyncio.Event()
        self.on_list_changed: Callable[[ListKind], None] | None = None
        self.on_down: Callable[[], None] | None = None
        """Called when an upstream that answered stops answering (its items leave the catalog)."""
        self._up = False

    @property
    def up(self) -> bool:
        return self._up

    @property
    def era(self) -> Era | None:
        """The era this upstream speaks, once known (None before the first successful connect)."""
        return None

    def _set_up(self, up: bool) -> None:
        """Record whether the upstream answers; a (re)connect refreshes every list."""
        was, self._up = self._up, up
        self.tried.set()
        if up and not was:
            self._list_changed(*LIST_KINDS)
        elif was and not up and self.on_down is not None:
            self.on_down()

    def changed(self, kind: ListKind) -> None:
        """Someone saw this upstream say ``notifications/<kind>/list_changed`` (on a client's stream)."""
        self._list_changed(kind)

    def _list_changed(self, *kinds: ListKind) -> None:
        if self.on_list_changed is not None:
            for kind in kinds:
                self.on_list_changed(kind)

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""

    @abc.abstractmethod
    async def request(self, method: str, params: Mapping[str, Any] | None, exchange: Exchange) -> Message:
        """Forward one request; its JSON-RPC response (``result`` or ``error``)."""

    @abc.abstractmethod
    async def reply(self, message: Message, session: str | None = None) -> None:
        """Send the client's response to a server-to-client request of this upstream."""

    async def notify(self, method: str, params: Mapping[str, Any] | None, session: str | None = None) -> None:
        """Forward a client notification that concerns this upstream (default: dropped)."""
        return None

    async def listen(self, session: str, on_message: Callable[[Message], Awaitable[None]]) -> None:
        """Hold the upstream's notification stream of a client's session, handing each message to
        ``on_message``, until it ends or the caller cancels (session-era Streamable HTTP only: the
        default returns at once)."""
        return None

    async def open_session(self, client: ClientContext) -> str | None:
        """Start an upstream session for ``client``; its id, or None when this upstream needs none."""
        return None

    async def close_session(self, session: str) -> None:
        """End an upstream session opened by ``open_session`` (best effort)."""
        return None

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop: end connections and children; pending requests fail with ``UpstreamError``."""
