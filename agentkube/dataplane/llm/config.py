"""The LLM gateway's config file (``apiVersion: agentkube.io/v1alpha1``, ``kind: LLMGatewayConfig``).

The operator renders one per LLMGateway object into its ConfigMap; ``agentkube llm-gateway --config
PATH`` reads it with ``load_llm_gateway_config``. What the program may rely on:

- No secret value is in the file. A provider API key is named by the environment variable carrying
  it (``upstreams[].apiKeyEnv``); each client API key likewise (``auth.clients[].keyEnv``), with the
  client id being the key's name in the Secret. The Deployment fills those variables from Secrets.
- Every ``routing.modelMap[].upstream`` names an upstream of the file, and ``routing.defaultModel``
  (when set) is served by an upstream or is a modelMap alias; the loader checks both.
- ``rateLimit.scope: perClient`` comes with ``auth.mode: apikey`` (clients are told apart by key).
- ``metrics`` has a default (port 9090) and may be left out; it is never ``listen``'s port.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pydantic import Field, model_validator

from agentkube.dataplane.configfile import (
    API_VERSION,
    ConfigError,
    ConfigModel,
    EnvName,
    Listen,
    dump,
    load,
    load_file,
    require_unique,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_METRICS_PORT",
    "KIND",
    "Caching",
    "Client",
    "ClientAuth",
    "ConfigError",
    "Guardrails",
    "LLMGatewayConfig",
    "Listen",
    "ModelMapping",
    "RateLimit",
    "Routing",
    "Upstream",
    "dump",
    "load_llm_gateway_config",
    "load_llm_gateway_config_file",
]

KIND: Final = "LLMGatewayConfig"
DEFAULT_METRICS_PORT: Final = 9090
Provider = Literal["openai", "anthropic", "bedrock", "vertex", "azure-openai", "ollama", "vllm"]


class Upstream(ConfigModel):
    """A model provider. Provider-specific fields are set only for their provider."""

    name: str = Field(min_length=1)
    provider: Provider
    api_key_env: EnvName | None = Field(
        None, description="Environment variable holding the API key; None: the pod's workload identity."
    )
    models: list[str] = Field(min_length=1)
    priority: int = Field(default=0, ge=0)
    endpoint: str | None = Field(default=None, pattern=r"^https?://")
    region: str | None = None
    project: str | None = None
    location: str | None = None
    azure_api_version: str | None = None


class ModelMapping(ConfigModel):
    """Requests for model ``from`` are sent as model ``to`` to ``upstream``."""

    from_: str = Field(alias="from")
    to: str
    upstream: str


class Routing(ConfigModel):
    default_model: str | None = None
    model_map: list[ModelMapping] = Field(default_factory=list)


class RateLimit(ConfigModel):
    requests_per_minute: int = Field(ge=1)
    scope: Literal["global", "perClient", "perModel"] = "global"


class Guardrails(ConfigModel):
    pii_redaction: bool = False
    input_filters: list[Literal["prompt-injection"]] = Field(default_factory=list)


class Caching(ConfigModel):
    enabled: bool = False
    ttl_seconds: int = Field(default=300, ge=1)
    max_entries: int = Field(default=1000, ge=1)


class Client(ConfigModel):
    """A client allowed in with mode apikey: its id and the variable holding its key."""

    id: str = Field(min_length=1)
    key_env: EnvName


class ClientAuth(ConfigModel):
    mode: Literal["none", "apikey"] = "none"
    clients: list[Client] = Field(default_factory=list)

    @model_validator(mode="after")
    def _clients_only_with_apikey(self) -> ClientAuth:
        if self.mode == "none" and self.clients:
            raise ValueError("clients are only for mode apikey")
        return self


class LLMGatewayConfig(ConfigModel):
    """The whole config of one LLM gateway."""

    api_version: Literal["agentkube.io/v1alpha1"] = API_VERSION
    kind: Literal["LLMGatewayConfig"] = KIND
    name: str = Field(description="namespace/name of the LLMGateway object, for logs and metrics.")
    listen: Listen
    metrics: Listen = Field(
        default_factory=lambda: Listen(port=DEFAULT_METRICS_PORT),
        description="Where /metrics is served, apart from the client APIs (port 9090).",
    )
    upstreams: list[Upstream] = Field(min_length=1)
    routing: Routing = Field(default_factory=Routing)
    rate_limit: RateLimit | None = None
    guardrails: Guardrails = Field(default_factory=Guardrails)
    caching: Caching = Field(default_factory=Caching)
    auth: ClientAuth = Field(default_factory=ClientAuth)

    @model_validator(mode="after")
    def _consistent(self) -> LLMGatewayConfig:
        names = [u.name for u in self.upstreams]
        require_unique(names, "upstreams: duplicate name(s)")
        if self.metrics.port == self.listen.port:
            raise ValueError(f"metrics.port: {self.metrics.port} is listen.port too; give it another port")
        for i, mapping in enumerate(self.routing.model_map):
            if mapping.upstream not in names:
                raise ValueError(f"routing.modelMap[{i}].upstream: no upstream named {mapping.upstream!r}")
        default = self.routing.default_model
        if default is not None and not (
            any(default in u.models for u in self.upstreams)
            or any(default in (m.from_, m.to) for m in self.routing.model_map)
        ):
            raise ValueError(f"routing.defaultModel: {default!r} is served by no upstream and no alias")
        if (
            self.rate_limit is not None
            and self.rate_limit.scope == "perClient"
            and self.auth.mode != "apikey"
        ):
            raise ValueError("rateLimit.scope: perClient needs auth.mode apikey")
        return self

    @property
    def served_models(self) -> list[str]:
        """Model names clients may request: every upstream's models, then every alias, each once."""
        seen: dict[str, None] = {}
        for upstream in self.upstreams:
            seen.update(dict.fromkeys(upstream.models))
        seen.update(dict.fromkeys(m.from_ for m in self.routing.model_map))
        return list(seen)


def load_llm_gateway_config(text: str, *, source: str = "<config>") -> LLMGatewayConfig:
    """Parse an LLM gateway config; ``ConfigError`` names every offending field."""
    return load(LLMGatewayConfig, text, source=source)


def load_llm_gateway_config_file(path: str | Path) -> LLMGatewayConfig:
    return load_file(LLMGatewayConfig, path)
