"""Servers that speak OpenAI's API on their own models: Ollama (``provider: ollama``) and vLLM
(``provider: vllm``).

Both serve Chat Completions, Responses and embeddings under ``<endpoint>/v1``, and recent releases
serve Anthropic's Messages API at ``<endpoint>/v1/messages`` too: Messages requests go there as
they are. A release without it answers 404 (or 405); the gateway then calls ``refuse`` and
translates Messages into Chat Completions for that upstream from then on. ``count_tokens`` is
estimated by the gateway (neither documents it). The key is optional (vLLM's ``--api-key``,
Ollama's cloud) and goes as ``Authorization: Bearer``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from agentkube.dataplane.llm.apis import API, CHAT, MESSAGES
from agentkube.dataplane.llm.providers.base import Outgoing, ProviderError
from agentkube.dataplane.llm.providers.openai import OPENAI_PATHS, OpenAIProvider

__all__ = ["OllamaProvider", "VllmProvider"]


class _Compatible(OpenAIProvider):
    default_native: ClassVar[frozenset[API]] = frozenset({*OPENAI_PATHS, MESSAGES})
    translate_to: ClassVar[API] = CHAT

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
            return await super().prepare(api, model, body, client_headers, count_tokens=count_tokens)
        if count_tokens:
            raise ProviderError(f"upstream {self.name} ({self.kind}) does not count tokens")
        headers = {**self._json_headers(), **self._anthropic_headers(client_headers), **self._auth()}
        return Outgoing(f"{self.root}/v1/messages", headers, body, self.egress)


class OllamaProvider(_Compatible):
    kind: ClassVar[str] = "ollama"
    semconv_name: ClassVar[str] = "ollama"


class VllmProvider(_Compatible):
    kind: ClassVar[str] = "vllm"
    semconv_name: ClassVar[str] = "vllm"
