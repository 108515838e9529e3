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
- Providers azure-openai, ollama and vllm come with an ``endpoint``; openai, anthropic and azure-openai
  with an ``apiKeyEnv``; ``region``, ``project``, ``location`` and ``azureApiVersion`` only with the
  provider they belong to (the same rules the LLMGateway CRD enforces).
- Every field added after the first release has a default, so a config the operator rendered before
  it existed still loads: ``upstreams[].timeouts``, ``routing.cooldownSeconds`` and
  ``routing.failuresBeforeCooldown``, ``rateLimit.replicas``, ``store``, ``limits``. ``dump`` leaves
  them out while they hold their default, so the operator's rendered text (and its config hash) stays
  what it was until a value is actually set.
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
    "Limits",
    "Listen",
    "ModelMapping",
    "RateLimit",
    "Routing",
    "Store",
    "Timeouts",
    "Upstream",
    "dump",
    "load_llm_gateway_config",
    "load_llm_gateway_config_file",
]

KIND: Final = "LLMGatewayConfig"
DEFAULT_METRICS_PORT: Final = 9090
MiB: Final = 1024 * 1024
Provider = Literal["openai", "anthropic", "bedrock", "vertex", "azure-openai", "ollama", "vllm"]
NEEDS_ENDPOINT: Final[tuple[Provider, ...]] = ("azure-openai", "ollama", "vllm")
NEEDS_API_KEY: Final[tuple[Provider, ...]] = ("openai", "anthropic", "azure-openai")
# Fields that belong to one provider, and that provider.
_PROVIDER_FIELDS: Final[dict[str, Provider]] = {
    "region": "bedrock",
    "project": "vertex",
    "location": "vertex",
    "azure_api_version": "azure-openai",
}


class Timeouts(ConfigModel):
    """How long the gateway waits on one upstream before it counts as failed (and the next is tried)."""

    connect_seconds: float = Field(
        default=10.0, gt=0, description="To open a connection (TCP and TLS) to the upstream (10 s)."
    )
    first_byte_seconds: float = Field(
        default=600.0,
        gt=0,
        description="From sending the request to the whole answer when it is not a stream, or to the "
        "first bytes of a stream (600 s, the providers' own SDK default: a long completion is not cut).",
    )
    stream_idle_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Longest silence inside a stream once it has begun (300 s); a stream that stalls "
        "longer is ended with an error event (it is not retried: the client has bytes already).",
    )


class Upstream(ConfigModel):
    """A model provider. Provider-specific fields are set only for their provider."""

    name: str = Field(min_length=1)
    provider: Provider
    api_key_env: EnvName | None = Field(
        None, description="Environment variable holding the API key; None: the pod's workload identity."
    )
    models: list[str] = Field(min_length=1)
    priority: int = Field(default=0, ge=0)
    endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="Base URL of the provider's API, with or without a trailing /v1 (openai: "
        "https://api.openai.com/v1, anthropic: https://api.anthropic.com); azure-openai: the resource URL.",
    )
    region: str | None = None
    project: str | None = None
    location: str | None = None
    azure_api_version: str | None = Field(
        default=None,
        description="azure-openai only: a dated version (2024-10-21) selects the deployment URLs "
        "(/openai/deployments/<model>/...?api-version=...); v1 or none selects the /openai/v1 API.",
    )
    timeouts: Timeouts = Field(default_factory=Timeouts, exclude_if=lambda v: v == Timeouts())


class ModelMapping(ConfigModel):
    """Requests for model ``from`` are sent as model ``to`` to ``upstream``."""

    from_: str = Field(alias="from")
    to: str
    upstream: str


class Routing(ConfigModel):
    """Which upstreams serve a model, and when a failing one is set aside."""

    default_model: str | None = None
    model_map: list[ModelMapping] = Field(default_factory=list)
    failures_before_cooldown: int = Field(
        default=3,
        ge=1,
        exclude_if=lambda v: v == 3,
        description="Consecutive failures (connection errors, timeouts, 429, 5xx) after which an "
        "upstream is skipped for cooldownSeconds (3).",
    )
    cooldown_seconds: float = Field(
        default=30.0,
        ge=0,
        exclude_if=lambda v: v == 30.0,
        description="How long a failing upstream is skipped while another serves the model (30 s); "
        "when every upstream of a model is cooling down they are tried anyway, in order.",
    )


class RateLimit(ConfigModel):
    """A request budget per scope. Exact across replicas with a ``store``; without one, approximate:
    each replica enforces ``requestsPerMinute / replicas`` on its own."""

    requests_per_minute: int = Field(ge=1)
    scope: Literal["global", "perClient", "perModel"] = "global"
    replicas: int | None = Field(
        default=None,
        ge=1,
        description="Replicas sharing the budget when there is no store (the operator sets "
        "spec.replicas); each enforces its share. None: 1.",
    )


class Store(ConfigModel):
    """A Redis-protocol store shared by every replica, for exact rate limits and a shared cache."""

    url: str = Field(pattern=r"^rediss?://", description="redis://host:port/db, or rediss:// for TLS.")
    password_env: EnvName | None = Field(
        default=None, description="Environment variable holding the store's password."
    )


class Limits(ConfigModel):
    """Bounds on what one request may cost the gateway."""

    max_request_bytes: int = Field(
        default=16 * MiB,
        ge=1024,
        description="Largest request body accepted; larger gets 413 in the client API's shape (16 MiB).",
    )
    grace_seconds: float = Field(
        default=25.0,
        ge=0,
        description="On SIGTERM, how long requests in flight (streams too) may run on before they are "
        "cut (25 s, inside the pod's default 30 s grace period).",
    )


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
    store: Store | None = Field(
        default=None, description="Shared store for rate limits and the cache; None: each replica alone."
    )
    limits: Limits = Field(default_factory=Limits, exclude_if=lambda v: v == Limits())

    @model_validator(mode="after")
    def _consistent(self) -> LLMGatewayConfig:
        names = [u.name for u in self.upstreams]
        require_unique(names, "upstreams: duplicate name(s)")
        for i, upstream in enumerate(self.upstreams):
            _check_provider_fields(i, upstream)
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


def _check_provider_fields(i: int, u: Upstream) -> None:
    if u.provider in NEEDS_ENDPOINT and u.endpoint is None:
        raise ValueError(f"upstreams[{i}].endpoint: provider {u.provider} needs the base URL of its API")
    if u.provider in NEEDS_API_KEY and u.api_key_env is None:
        raise ValueError(
            f"upstreams[{i}].apiKeyEnv: provider {u.provider} needs the variable that holds its API key"
        )
    for field, provider in _PROVIDER_FIELDS.items():
        if getattr(u, field) is not None and u.provider != provider:
            raise ValueError(
                f"upstreams[{i}].{_camel(field)}: only for provider {provider}, not {u.provider}"
            )


def _camel(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(part.title() for part in rest)


def load_llm_gateway_config(text: str, *, source: str = "<config>") -> LLMGatewayConfig:
    """Parse an LLM gateway config; ``ConfigError`` names every offending field."""
    return load(LLMGatewayConfig, text, source=source)


def load_llm_gateway_config_file(path: str | Path) -> LLMGatewayConfig:
    return load_file(LLMGatewayConfig, path)
