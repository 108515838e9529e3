"""The providers the gateway forwards to, one module each, and ``build`` to make one from its config.

A new provider is one module with a ``Provider`` subclass and one line in ``PROVIDERS``. Providers
named by the config but not served by this release build to None (today every provider the config
allows is served): the gateway starts without them, says so once in its log, and answers requests
only they could serve with an error naming the upstream.
"""

from __future__ import annotations

from collections.abc import Mapping

from agentkube.dataplane.llm.config import Upstream
from agentkube.dataplane.llm.providers.anthropic import AnthropicProvider
from agentkube.dataplane.llm.providers.azure_openai import AzureOpenAIProvider
from agentkube.dataplane.llm.providers.base import Outgoing, Provider, ProviderError
from agentkube.dataplane.llm.providers.bedrock import BedrockProvider
from agentkube.dataplane.llm.providers.compatible import OllamaProvider, VllmProvider
from agentkube.dataplane.llm.providers.openai import OpenAIProvider
from agentkube.dataplane.llm.providers.vertex import VertexProvider

__all__ = ["PROVIDERS", "Outgoing", "Provider", "ProviderError", "build"]

PROVIDERS: dict[str, type[Provider]] = {
    "openai": OpenAIProvider,
    "azure-openai": AzureOpenAIProvider,
    "anthropic": AnthropicProvider,
    "ollama": OllamaProvider,
    "vllm": VllmProvider,
    "bedrock": BedrockProvider,
    "vertex": VertexProvider,
}


def build(config: Upstream, environ: Mapping[str, str] | None = None) -> Provider | None:
    """The provider of upstream ``config``; None when this release has no module for it."""
    cls = PROVIDERS.get(config.provider)
    return cls(config, environ) if cls is not None else None
