"""Anthropic (``provider: anthropic``): the Messages API at ``api.anthropic.com``.

The key goes as ``x-api-key``; ``anthropic-version`` is the client's own (``2023-06-01`` when the
client spoke another API) and ``anthropic-beta`` is forwarded when the client sent it, so beta
features a client asks for reach the provider. ``count_tokens`` is the provider's own. Chat
Completions and Responses requests are translated into Messages; embeddings are not served.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from agentkube.dataplane.llm.apis import API, MESSAGES
from agentkube.dataplane.llm.providers.base import Outgoing, Provider, ProviderError, base_url

__all__ = ["AnthropicProvider"]


class AnthropicProvider(Provider):
    kind: ClassVar[str] = "anthropic"
    semconv_name: ClassVar[str] = "anthropic"
    default_native: ClassVar[frozenset[API]] = frozenset({MESSAGES})
    translate_to: ClassVar[API] = MESSAGES
    counts_tokens: ClassVar[bool] = True
    public_url: ClassVar[str] = "https://api.anthropic.com"

    @property
    def root(self) -> str:
        return base_url(self.config.endpoint, self.public_url)

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
        if api != MESSAGES:
            raise ProviderError(f"upstream {self.name} (anthropic) speaks only {MESSAGES}, not {api}")
        headers = {**self._json_headers(), **self._anthropic_headers(client_headers)}
        if self._key:
            headers["x-api-key"] = self._key
        path = "/v1/messages/count_tokens" if count_tokens else "/v1/messages"
        return Outgoing(f"{self.root}{path}", headers, body, self.egress)
