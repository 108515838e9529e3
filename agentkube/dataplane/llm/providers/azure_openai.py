"""Azure OpenAI (``provider: azure-openai``): a resource's deployments, in either URL scheme.

``endpoint`` is the resource URL (``https://<resource>.openai.azure.com``). The key goes as the
``api-key`` header. Which scheme is chosen by ``azureApiVersion``:

- a dated version (``2024-10-21``, ``2025-04-01-preview``): the deployment URLs,
  ``/openai/deployments/<deployment>/chat/completions?api-version=<version>`` (and ``/embeddings``),
  where the deployment is the model name the gateway sends; Responses at
  ``/openai/responses?api-version=<version>`` (Azure serves it from preview versions on);
- ``v1``, or none, or an endpoint already ending in ``/openai/v1``: the v1 API,
  ``/openai/v1/chat/completions``, ``/openai/v1/responses``, ``/openai/v1/embeddings``, with the
  deployment name as the body's ``model``.

A Messages request is translated into Chat Completions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar
from urllib.parse import quote

from agentkube.dataplane.llm.apis import API, CHAT, EMBEDDINGS, RESPONSES
from agentkube.dataplane.llm.providers.base import Outgoing, Provider, ProviderError, base_url
from agentkube.dataplane.llm.providers.openai import OPENAI_PATHS

__all__ = ["AzureOpenAIProvider"]


class AzureOpenAIProvider(Provider):
    kind: ClassVar[str] = "azure-openai"
    semconv_name: ClassVar[str] = "azure.ai.openai"
    default_native: ClassVar[frozenset[API]] = frozenset({CHAT, RESPONSES, EMBEDDINGS})
    translate_to: ClassVar[API] = CHAT
    stream_usage: ClassVar[bool] = True

    @property
    def root(self) -> str:
        assert self.config.endpoint is not None  # the config requires it for azure-openai
        return base_url(self.config.endpoint, "", strip="/openai/v1")

    @property
    def v1(self) -> bool:
        """Whether requests go to the ``/openai/v1`` API rather than the deployment URLs."""
        version = self.config.azure_api_version
        endpoint = (self.config.endpoint or "").rstrip("/")
        return version in (None, "v1") or endpoint.endswith("/openai/v1")

    def url(self, api: API, model: str) -> str:
        path = OPENAI_PATHS[api]
        if self.v1:
            return f"{self.root}/openai/v1{path}"
        version = quote(self.config.azure_api_version or "", safe="")
        if api == RESPONSES:
            return f"{self.root}/openai/responses?api-version={version}"
        return f"{self.root}/openai/deployments/{quote(model, safe='')}{path}?api-version={version}"

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
        if api not in OPENAI_PATHS or count_tokens:
            raise ProviderError(f"upstream {self.name} (azure-openai) does not serve {api}")
        headers = self._json_headers()
        if self._key:
            headers["api-key"] = self._key
        return Outgoing(self.url(api, model), headers, body, self.egress)
