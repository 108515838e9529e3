"""What every provider module gives the gateway: which APIs it accepts, and how to address it.

A provider turns "send this body, in API ``api``, for model ``model``" into an HTTP request: the URL,
the credential headers, the version headers, and (for the few that need it) a body of its own. It
never sees the client's credential (the gateway passes only the headers a provider may forward:
``anthropic-version`` and ``anthropic-beta``) and it never parses the body.

What the gateway may rely on:

- ``native`` is the set of APIs the upstream accepts as they are; a request in one of them is sent as
  the client's own bytes. ``api_for(client_api, model)`` is the API to send in: the client's own when
  native, else ``translate_to`` (a chat API the gateway translates into), and None for embeddings on
  a provider without them. A provider whose API depends on the model (Bedrock: Claude through the
  Messages form, other models through Converse) overrides it.
- ``refuse(api)`` takes an API out of ``native`` for the life of the process: a compatible server
  (ollama, vllm) that answers 404 on ``/v1/messages`` is an older release without it, and its
  requests are translated from then on.
- ``prepare`` is async so a provider that signs requests or fetches short-lived tokens (Bedrock,
  Vertex AI: one module each, registered in ``providers.PROVIDERS``) can do so per request, without
  blocking the event loop. ``stream`` says whether the client asked for a stream (the URL may
  differ), and the body it gets is already in ``api`` for ``model``; it may rewrite it (Bedrock's and
  Vertex AI's Messages form carry ``anthropic_version`` and no ``model``).
- A stream answer is one whose content type is in ``stream_types``; ``stream_events()`` makes the
  decoder of one stream's bytes into events of the upstream's API (SSE by default; Bedrock's binary
  event stream otherwise). ``reframes`` says the bytes are not SSE a client could read, so the
  gateway re-frames events even when the client's API and the upstream's match.
- ``error_envelope`` rewrites an upstream's error answer into a client API's envelope when the
  provider's own is not one (Bedrock's ``{"message"}``, Google's ``{"error": {"status"}}``) and says
  which API's envelope it is; by default the body is the upstream API's own and passes unchanged.
- The provider key is read once, when the provider is built; a variable named but unset is a
  ``ProviderError`` naming the variable, never its value.
- ``egress`` holds the ``http1.Pool.request`` keywords for the forward proxy ``HTTPS_PROXY`` and
  ``NO_PROXY`` pick for this upstream's URL (worked out once).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from agentkube.dataplane.llm.apis import API, CHAT, EMBEDDINGS, MESSAGES, RESPONSES
from agentkube.dataplane.llm.config import Upstream
from agentkube.dataplane.llm.providers.sse import Event, SseSplitter
from agentkube.dataplane.mcp.http import egress

__all__ = [
    "CHAT_APIS",
    "SSE_TYPES",
    "USER_AGENT",
    "EventSource",
    "Outgoing",
    "Provider",
    "ProviderError",
    "base_url",
]

CHAT_APIS: frozenset[API] = frozenset({CHAT, RESPONSES, MESSAGES})
USER_AGENT = "agentkube-llm-gateway"
# Client headers a provider speaking the Messages API receives as the client sent them.
ANTHROPIC_FORWARDED = ("anthropic-version", "anthropic-beta")
ANTHROPIC_VERSION = "2023-06-01"
SSE_TYPES: frozenset[str] = frozenset({"text/event-stream"})


class ProviderError(ValueError):
    """A provider that cannot be built from its config and environment; the message names the fix."""


@dataclass(frozen=True)
class Outgoing:
    """One request to an upstream, ready to send."""

    url: str
    headers: dict[str, str]
    body: bytes
    extra: dict[str, Any] = field(default_factory=dict)
    """More ``http1.Pool.request`` keywords (the egress proxy: ``proxy``, ``proxy_headers``)."""


class EventSource(Protocol):
    """One stream's bytes in, its events out as they complete (``SseSplitter`` is one)."""

    def feed(self, chunk: bytes) -> list[Event]: ...

    def finish(self) -> list[Event]: ...


def base_url(endpoint: str | None, default: str, *, strip: str = "/v1") -> str:
    """``endpoint`` (or ``default``) without a trailing slash or ``strip`` suffix."""
    url = (endpoint or default).rstrip("/")
    return url.removesuffix(strip) if strip and url.endswith(strip) else url


class Provider(ABC):
    """One upstream of the gateway, as its provider addresses it."""

    kind: ClassVar[str]
    """The config's ``provider`` value."""
    semconv_name: ClassVar[str]
    """``gen_ai.provider.name`` of OpenTelemetry's GenAI conventions."""
    default_native: ClassVar[frozenset[API]]
    translate_to: ClassVar[API]
    counts_tokens: ClassVar[bool] = False
    """Whether it serves ``/v1/messages/count_tokens`` itself (else the gateway estimates)."""
    stream_types: ClassVar[frozenset[str]] = SSE_TYPES
    """Content types of a stream answer."""
    reframes: ClassVar[bool] = False
    """Whether stream events are re-framed as SSE even when the client's API is the upstream's."""
    stream_usage: ClassVar[bool] = False
    """Whether its Chat Completions streams honour ``stream_options.include_usage``: the gateway then
    asks for the usage chunk to count tokens, and keeps it from a client that did not ask."""

    def __init__(self, config: Upstream, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.name = config.name
        self.native: set[API] = set(self.default_native)
        self._key = self._read_key(environ if environ is not None else os.environ)
        self.egress: dict[str, Any] = egress(self.root)

    def _read_key(self, environ: Mapping[str, str]) -> str | None:
        variable = self.config.api_key_env
        if variable is None:
            return None
        value = environ.get(variable)
        if not value:
            raise ProviderError(
                f"upstreams[{self.name}].apiKeyEnv: {variable} is not set in the gateway's environment; "
                "the Deployment fills it from the upstream's credentialsRef Secret"
            )
        return value

    @property
    @abstractmethod
    def root(self) -> str:
        """The base URL requests are built on (for the egress proxy and for logs; no credential)."""

    def api_for(self, client_api: API, model: str) -> API | None:
        """The API a request of ``client_api`` for ``model`` is sent in, or None if it cannot be."""
        if client_api in self.native:
            return client_api
        if client_api == EMBEDDINGS:
            return None
        return self.translate_to if self.translate_to in self.native else None

    def refuse(self, api: API) -> None:
        """The upstream answered that it has no endpoint for ``api``: translate from now on."""
        if api != self.translate_to:
            self.native.discard(api)

    @abstractmethod
    async def prepare(
        self,
        api: API,
        model: str,
        body: bytes,
        client_headers: Mapping[str, str],
        *,
        count_tokens: bool = False,
        stream: bool = False,
    ) -> Outgoing:
        """The request that sends ``body`` (already in ``api``, for ``model``) to this upstream."""

    def stream_events(self) -> EventSource:
        """A decoder of one stream answer's bytes (SSE)."""
        return SseSplitter()

    def error_envelope(
        self, api: API, status: int, body: bytes, headers: Mapping[str, str]
    ) -> tuple[API, bytes]:
        """An error answer (``status``, ``body``) to a request in ``api``, in a client API's envelope.

        Returns that API and the body; by default ``api`` and the body unchanged.
        """
        return api, body

    def _json_headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "User-Agent": USER_AGENT}

    def _anthropic_headers(self, client_headers: Mapping[str, str]) -> dict[str, str]:
        headers = {"anthropic-version": client_headers.get("anthropic-version") or ANTHROPIC_VERSION}
        beta = client_headers.get("anthropic-beta")
        if beta:
            headers["anthropic-beta"] = beta
        return headers
