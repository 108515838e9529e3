"""OpenAI (``provider: openai``): Chat Completions, Responses and embeddings at ``api.openai.com/v1``.

The key goes as ``Authorization: Bearer``. ``endpoint`` replaces the public URL (a proxy, or any
server that speaks OpenAI's API), with or without its ``/v1``. A Messages request is translated into
Chat Completions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from agentkube.dataplane.llm.apis import API, CHAT, EMBEDDINGS, RESPONSES
from agentkube.dataplane.llm.providers.base import Outgoing, Provider, ProviderError, base_url

__all__ = ["OPENAI_PATHS", "OpenAIProvider"]

OPENAI_PATHS: dict[API, str] = {CHAT: "/chat/completions", RESPONSES: "/responses", EMBEDDINGS: "/embeddings"}


class OpenAIProvider(Provider):
    kind: ClassVar[str] = "openai"
    semconv_name: ClassVar[str] = "openai"
    default_native: ClassVar[frozenset[API]] = frozenset(OPENAI_PATHS)
    translate_to: ClassVar[API] = CHAT
    stream_usage: ClassVar[bool] = True
    public_url: ClassVar[str] = "https://api.openai.com/v1"

    @property
    def root(self) -> str:
        return base_url(self.config.endpoint, self.public_url)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"} if self._key else {}

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
        path = OPENAI_PATHS.get(api)
        if path is None or count_tokens:
            raise ProviderError(f"upstream {self.name} ({self.kind}) does not serve {api}")
        return Outgoing(f"{self.root}/v1{path}", {**self._json_headers(), **self._auth()}, body, self.egress)
