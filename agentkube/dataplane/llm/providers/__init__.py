"""The providers the gateway forwards to, one module each, and ``build`` to make one from its config.

A new provider is one module with a ``Provider`` subclass, one line in ``PROVIDERS`` and its name in
the config's ``Provider`` literal (which a test holds equal to ``PROVIDERS``).
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


def build(config: Upstream, environ: Mapping[str, str] | None = None) -> Provider:
    """The provider of upstream ``config`` (``ProviderError`` when its environment lacks what it needs)."""
    return PROVIDERS[config.provider](config, environ)
