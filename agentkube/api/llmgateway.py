"""LLMGateway (agentkube.io/v1alpha1): a gateway in front of model providers.

It terminates model traffic, routes each request to an upstream that serves the model, and applies
rate limits, guardrails and caching, so credentials and policy live in one place.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from agentkube.api.kind import SERVICE_NAME_RULE, Kind
from agentkube.api.meta import DnsLabel, HttpUrl, ObjectName, SecretKeyRef, SecretRef
from agentkube.api.model import ApiModel, ListMap, ListSet, Rule, belongs_to, cel_list
from agentkube.api.pod import WORKLOAD_COLUMNS, WorkloadSpec, WorkloadStatus

__all__ = [
    "API_KEYS_SECRET_SUFFIX",
    "LLM_GATEWAY_KIND",
    "Caching",
    "ClientAuth",
    "Guardrails",
    "LLMGatewaySpec",
    "LLMGatewayStatus",
    "LlmUpstream",
    "ModelMapping",
    "Provider",
    "RateLimit",
    "Routing",
    "Store",
    "parse_llm_gateway",
]

Provider = Literal["openai", "anthropic", "bedrock", "vertex", "azure-openai", "ollama", "vllm"]
NEEDS_ENDPOINT: tuple[Provider, ...] = ("azure-openai", "ollama", "vllm")
NEEDS_CREDENTIALS: tuple[Provider, ...] = ("openai", "anthropic", "azure-openai")
# The Secret of client keys when auth.secretRef is omitted is named after the gateway with this suffix.
API_KEYS_SECRET_SUFFIX = "-api-keys"
ModelName = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]*$")
]


class LlmUpstream(ApiModel):
    """A model provider the gateway forwards to."""

    name: DnsLabel = Field(description="Name of the upstream, unique within the gateway.")
    provider: Provider = Field(
        description="The provider's API: openai, anthropic, bedrock, vertex, azure-openai, ollama or vllm."
    )
    credentials_ref: SecretKeyRef | None = Field(
        None,
        description="Secret key holding the provider API key; required for openai, anthropic and "
        "azure-openai. For bedrock and vertex, omit it to use the pod's workload identity.",
    )
    models: Annotated[list[ModelName], ListSet()] = Field(
        min_length=1, max_length=128, description="Models this upstream serves, e.g. claude-sonnet-4-6."
    )
    priority: int = Field(
        0,
        ge=0,
        le=1000,
        description="Among upstreams serving a requested model, lower is preferred; the next one is "
        "tried when it fails. Equal priorities keep list order. Defaults to 0.",
    )
    endpoint: HttpUrl | None = Field(
        None,
        description="Base URL of the provider API; required for azure-openai (the resource URL), ollama "
        "and vllm. For the others it overrides the provider's public URL, e.g. to go through a proxy.",
    )
    region: str | None = Field(
        None,
        max_length=32,
        pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]+$",
        description="AWS region, e.g. us-east-1; required for provider bedrock only.",
    )
    project: str | None = Field(
        None,
        min_length=6,
        max_length=30,
        pattern=r"^[a-z][-a-z0-9]*[a-z0-9]$",
        description="Google Cloud project ID; required for provider vertex only.",
    )
    location: str | None = Field(
        None,
        max_length=32,
        pattern=r"^[a-z]+(-[a-z]+[0-9]*)*$",
        description="Google Cloud location, e.g. us-central1 or global; required for provider vertex only.",
    )
    api_version: str | None = Field(
        None,
        max_length=32,
        pattern=r"^[A-Za-z0-9.-]+$",
        description="Azure OpenAI API version sent as api-version, e.g. 2024-10-21; required for "
        "provider azure-openai only.",
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=f"!(self.provider in {cel_list(NEEDS_ENDPOINT)}) || has(self.endpoint)",
            holds=lambda u: u.provider not in NEEDS_ENDPOINT or u.endpoint is not None,
            field=".endpoint",
            reason="FieldValueRequired",
            message="providers azure-openai, ollama and vllm need an endpoint",
        ),
        Rule(
            cel=f"!(self.provider in {cel_list(NEEDS_CREDENTIALS)}) || has(self.credentialsRef)",
            holds=lambda u: u.provider not in NEEDS_CREDENTIALS or u.credentials_ref is not None,
            field=".credentialsRef",
            reason="FieldValueRequired",
            message="providers openai, anthropic and azure-openai need a credentialsRef",
        ),
        *belongs_to("provider", "bedrock", "region"),
        *belongs_to("provider", "vertex", "project"),
        *belongs_to("provider", "vertex", "location"),
        *belongs_to("provider", "azure-openai", "api_version"),
    )


class ModelMapping(ApiModel):
    """An alias clients may request, and the model and upstream it stands for."""

    from_: ModelName = Field(alias="from", description="Model name clients request, e.g. opus.")
    to: ModelName = Field(description="Model name sent to the upstream, e.g. claude-opus-4-7.")
    upstream: DnsLabel = Field(description="Name of the upstream in spec.upstreams that serves the request.")


class Routing(ApiModel):
    """How a request's model picks an upstream."""

    default_model: ModelName | None = Field(
        None,
        description="Model used when a request names none; must be served by an upstream or be the "
        "from of a modelMap entry.",
    )
    model_map: Annotated[list[ModelMapping], ListMap("from")] = Field(
        default_factory=list,
        max_length=128,
        description="Aliases, each sent as model to, on upstream; one entry per from. Requests for "
        "other models go to the upstreams that list them.",
    )


class RateLimit(ApiModel):
    """A request budget enforced by the gateway (HTTP 429 with Retry-After beyond it)."""

    requests_per_minute: int = Field(
        ge=1, le=1_000_000, description="Requests allowed per minute in each scope."
    )
    scope: Literal["global", "perClient", "perModel"] = Field(
        "global",
        description="What shares a budget: global (all requests), perClient (each API key of spec.auth; "
        "needs auth mode apikey) or perModel (each requested model). Defaults to global.",
    )


class Guardrails(ApiModel):
    """Checks applied to requests and responses."""

    pii_redaction: bool = Field(
        False,
        description="Redact personal data (such as email addresses, phone and card numbers) from prompts "
        "before they reach a provider. Defaults to false.",
    )
    input_filters: Annotated[list[Literal["prompt-injection"]], ListSet()] = Field(
        default_factory=list,
        max_length=8,
        description="Filters that reject a request (HTTP 400) before it reaches a provider: "
        "prompt-injection rejects prompts that try to override the system instructions.",
    )


class Caching(ApiModel):
    """A cache of responses, keyed by the whole request (model, messages and parameters)."""

    enabled: bool = Field(False, description="Whether responses are cached. Defaults to false.")
    ttl_seconds: int = Field(300, ge=1, le=86400, description="How long an entry lives. Defaults to 300.")
    max_entries: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Entries kept per pod without spec.store (the least recently used go first); with "
        "a store, every pod shares its entries and ttlSeconds alone bounds them. Defaults to 1000.",
    )


class Store(ApiModel):
    """A Redis-protocol store every replica of the gateway shares (Redis, Valkey, a managed service)."""

    url: Annotated[
        str, StringConstraints(max_length=2048, pattern=r"^rediss?://[^\s/@]+(:[0-9]+)?(/[0-9]+)?$")
    ] = Field(
        description="redis://host:port/db (rediss:// for TLS), e.g. "
        "redis://redis.platform.svc.cluster.local:6379/0; no credentials in the URL: use "
        "passwordSecretRef.",
    )
    password_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret key holding the store's password. None: the store needs none."
    )


class ClientAuth(ApiModel):
    """How clients authenticate to the gateway."""

    mode: Literal["none", "apikey"] = Field(
        "none",
        description="none accepts every request; apikey requires a key listed in the Secret of secretRef, "
        "sent as 'Authorization: Bearer <key>' or 'x-api-key: <key>'. Defaults to none.",
    )
    secret_ref: SecretRef | None = Field(
        None,
        description="Secret whose keys are client ids and values their API keys; mode apikey only. "
        f"Defaults to the Secret named <gateway name>{API_KEYS_SECRET_SUFFIX}.",
    )

    def secret_name(self, gateway: str) -> str:
        """Name of the Secret holding the client keys of the LLMGateway named ``gateway``."""
        return self.secret_ref.name if self.secret_ref else f"{gateway}{API_KEYS_SECRET_SUFFIX}"

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.mode == 'apikey' || !has(self.secretRef)",
            holds=lambda a: a.mode == "apikey" or a.secret_ref is None,
            field=".secretRef",
            reason="FieldValueForbidden",
            message="secretRef is only for mode apikey",
        ),
    )


def _map_upstreams_exist(spec: LLMGatewaySpec) -> bool:
    names = {u.name for u in spec.upstreams}
    return spec.routing is None or all(m.upstream in names for m in spec.routing.model_map)


def _unknown_map_upstream(spec: LLMGatewaySpec) -> str:
    """The first modelMap entry whose upstream is not in spec.upstreams, by its from and that name: the
    text of the rule's messageExpression (``_UNKNOWN_MAP_UPSTREAM``)."""
    names = {u.name for u in spec.upstreams}
    entries = spec.routing.model_map if spec.routing else []
    entry = next((m for m in entries if m.upstream not in names), None)
    if entry is None:  # the rule holds, so this is never asked
        return "every modelMap entry's upstream must name an upstream in spec.upstreams"
    return f'modelMap entry "{entry.from_}" names upstream "{entry.upstream}", not one of spec.upstreams'


# The index of the first entry with an unknown upstream, then that entry read through the index: CEL
# estimates the size of what a comprehension returns as unbounded, and a string built from it exceeds
# any cost budget, while an element read by index keeps its schema's maxLength. transformList (CEL's
# two-variable comprehensions) needs Kubernetes 1.33 or later.
_FIRST_UNKNOWN = (
    "self.routing.modelMap[self.routing.modelMap.transformList(i, m, "
    "!self.upstreams.exists(u, u.name == m.upstream), i)[0]]"
)
_UNKNOWN_MAP_UPSTREAM = (
    f"'modelMap entry \"' + {_FIRST_UNKNOWN}.from + '\" names upstream \"' + {_FIRST_UNKNOWN}.upstream"
    " + '\", not one of spec.upstreams'"
)


def _default_model_served(spec: LLMGatewaySpec) -> bool:
    if spec.routing is None or spec.routing.default_model is None:
        return True
    model = spec.routing.default_model
    return any(model in u.models for u in spec.upstreams) or any(
        model in (m.from_, m.to) for m in spec.routing.model_map
    )


class LLMGatewaySpec(WorkloadSpec):
    """Desired state of an LLM gateway."""

    upstreams: Annotated[list[LlmUpstream], ListMap("name")] = Field(
        min_length=1,
        max_length=16,
        description="The providers behind the gateway, at least one; merged by name under server-side apply.",
    )
    routing: Routing | None = Field(None, description="Default model and model aliases.")
    rate_limit: RateLimit | None = Field(
        None,
        description="Request budget. Unlimited when omitted. Exact across replicas with spec.store; "
        "without one each replica enforces requestsPerMinute / replicas on its own, which is approximate "
        "(a client whose requests land unevenly may get more or less than the budget).",
    )
    guardrails: Guardrails | None = Field(None, description="Request checks. None when omitted.")
    caching: Caching | None = Field(None, description="Response cache. Off when omitted.")
    auth: ClientAuth | None = Field(
        None, description="Client authentication. Open to every client when omitted."
    )
    store: Store | None = Field(
        None,
        description="Shared store for exact rate limits and a cache shared by every replica. While it "
        "cannot be reached, each replica enforces its own share of the budget (requestsPerMinute / "
        "replicas) and the cache misses; no request fails for it.",
    )
    service_account_name: ObjectName | None = Field(
        None,
        description="ServiceAccount the gateway's pods run as, so a cloud workload identity can bind a "
        "role to it: IRSA (annotate it with eks.amazonaws.com/role-arn), an EKS Pod Identity "
        "association, or GKE workload identity (iam.gke.io/gcp-service-account); used by bedrock and "
        "vertex upstreams without a credentialsRef. The ServiceAccount is the user's: agentkube neither "
        "creates nor checks it, and pods are not created until it exists. No Kubernetes API token is "
        "mounted (the identity webhooks project their own). Defaults to the namespace's default "
        "ServiceAccount.",
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.routing) || !has(self.routing.modelMap) || "
            "self.routing.modelMap.all(m, self.upstreams.exists(u, u.name == m.upstream))",
            holds=_map_upstreams_exist,
            field=".routing.modelMap",
            reason="FieldValueInvalid",
            message="every modelMap entry's upstream must name an upstream in spec.upstreams",
            message_expression=_UNKNOWN_MAP_UPSTREAM,
            explain=_unknown_map_upstream,
        ),
        Rule(
            cel="!has(self.routing) || !has(self.routing.defaultModel) || "
            "self.upstreams.exists(u, self.routing.defaultModel in u.models) || "
            "(has(self.routing.modelMap) && self.routing.modelMap.exists(m, "
            "m.from == self.routing.defaultModel || m.to == self.routing.defaultModel))",
            holds=_default_model_served,
            field=".routing.defaultModel",
            reason="FieldValueInvalid",
            message="defaultModel must be one of an upstream's models or a modelMap entry's from or to",
        ),
        Rule(
            cel="!has(self.rateLimit) || self.rateLimit.scope != 'perClient' || "
            "(has(self.auth) && self.auth.mode == 'apikey')",
            holds=lambda s: (
                s.rate_limit is None
                or s.rate_limit.scope != "perClient"
                or (s.auth is not None and s.auth.mode == "apikey")
            ),
            field=".rateLimit.scope",
            reason="FieldValueInvalid",
            message="scope perClient tells clients apart by API key, so it needs auth mode apikey",
        ),
    )


class LLMGatewayStatus(WorkloadStatus):
    """Observed state of an LLM gateway."""

    models: list[Annotated[str, StringConstraints(max_length=256)]] = Field(
        default_factory=list,
        max_length=512,
        description="Model names clients may request: every upstream's models and every alias.",
    )


LLM_GATEWAY_KIND: Kind[LLMGatewaySpec, LLMGatewayStatus] = Kind(
    group="agentkube.io",
    version="v1alpha1",
    kind="LLMGateway",
    plural="llmgateways",
    namespaced=True,
    spec_model=LLMGatewaySpec,
    status_model=LLMGatewayStatus,
    description="An LLMGateway is a provider gateway: it terminates model traffic, routes it to upstreams "
    "(OpenAI, Anthropic, Bedrock, Vertex, Azure OpenAI, Ollama, vLLM) and applies rate limits, guardrails "
    "and caching. Agents call it instead of a provider, so credentials and policy live in one place. "
    "agentkube runs it as a Deployment plus a Service in the gateway's namespace.",
    short_names=("llmgw",),
    printer_columns=WORKLOAD_COLUMNS,
    rules=(SERVICE_NAME_RULE,),
)

parse_llm_gateway = LLM_GATEWAY_KIND.parse
