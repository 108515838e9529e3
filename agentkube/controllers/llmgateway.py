"""The LLMGateway controller: an LLMGateway becomes an LLM gateway (ConfigMap, Deployment, Service, PDB).

Desired state is built by pure functions of the typed spec (``gateway_config``, ``container_env``,
``workload``, ``served_models``); ``plan`` checks the referenced Secrets through the cache; ``setup``
wires the controller: the LLMGateway itself (spec changes only), its children, and Secrets, each
enqueueing the gateways that reference it (index ``INDEX_SECRETS``).

Secrets referenced: each upstream's ``credentialsRef`` (one key), and with ``auth.mode: apikey`` the
client-key Secret (``auth.secretRef``, by default ``<gateway name>-api-keys``) whose every key is a
client id and its value that client's API key. Environment variables carrying them:
``AGENTKUBE_UPSTREAM_<NAME>_APIKEY`` (``<NAME>``: the upstream name upper-cased, ``-`` as ``_``) and
``AGENTKUBE_CLIENT_<key>`` (the Secret key as is: key characters are all valid in variable names).
A client added to that Secret changes the config (a new client id) and so rolls the pods.

Who may call: unless ``OperatorOptions.network_policies`` is off, the gateway's NetworkPolicy admits
its own namespace and the namespaces a ReferenceGrant of it names for ``agentkube.io/LLMGateway``
(the seed's shared gateway in ``platform`` needs one per team namespace that calls it), on ``http``;
``metrics`` is open to any scraper.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from agentkube.api.llmgateway import LLM_GATEWAY_KIND, LLMGatewaySpec, LlmUpstream
from agentkube.controllers import OperatorOptions
from agentkube.controllers.grants import ReferenceGrants, granted_namespaces
from agentkube.controllers.kinds import LLM_GATEWAY
from agentkube.controllers.secrets import SecretReferences
from agentkube.controllers.workload import Plan, Workload, WorkloadReconciler, metrics_port
from agentkube.dataplane.configfile import dump
from agentkube.dataplane.llm.config import (
    Caching,
    Client,
    ClientAuth,
    Guardrails,
    Listen,
    LLMGatewayConfig,
    ModelMapping,
    RateLimit,
    Routing,
    Store,
    Upstream,
)
from agentkube.runtime.reconcile import Request

__all__ = [
    "INDEX_SECRETS",
    "PROGRAM",
    "STORE_PASSWORD_ENV",
    "api_keys_secret",
    "container_env",
    "gateway_config",
    "index_secrets",
    "plan",
    "served_models",
    "setup",
    "workload",
]

PROGRAM = "llm-gateway"
INDEX_SECRETS = "agentkube.io/llmgateway-secrets"


# ------------------------------------------------------------------------------------ desired state


def api_key_env(upstream: LlmUpstream) -> str:
    """The variable holding an upstream's provider API key."""
    return "AGENTKUBE_UPSTREAM_" + upstream.name.upper().replace("-", "_") + "_APIKEY"


STORE_PASSWORD_ENV = "AGENTKUBE_STORE_PASSWORD"
"""The variable holding the shared store's password (from ``spec.store.passwordSecretRef``)."""


def client_key_env(client_id: str) -> str:
    """The variable holding the API key of client ``client_id`` (a key of the client-key Secret)."""
    return f"AGENTKUBE_CLIENT_{client_id}"


def api_keys_secret(name: str, spec: LLMGatewaySpec) -> str | None:
    """The client-key Secret of gateway ``name``, or None when clients do not authenticate."""
    if spec.auth is None or spec.auth.mode != "apikey":
        return None
    return spec.auth.secret_ref.name if spec.auth.secret_ref is not None else f"{name}-api-keys"


def served_models(spec: LLMGatewaySpec) -> list[str]:
    """Model names clients may request: every upstream's models, then every modelMap alias, each once."""
    seen: dict[str, None] = {}
    for u in spec.upstreams:
        seen.update(dict.fromkeys(u.models))
    if spec.routing is not None:
        seen.update(dict.fromkeys(m.from_ for m in spec.routing.model_map))
    return list(seen)


def gateway_config(
    name: str, namespace: str, spec: LLMGatewaySpec, client_ids: Sequence[str]
) -> LLMGatewayConfig:
    """The gateway's config file. ``client_ids``: the keys of the client-key Secret (apikey mode)."""
    upstreams = [
        Upstream(
            name=u.name,
            provider=u.provider,
            api_key_env=api_key_env(u) if u.credentials_ref is not None else None,
            models=list(u.models),
            priority=u.priority,
            endpoint=u.endpoint,
            region=u.region,
            project=u.project,
            location=u.location,
            azure_api_version=u.api_version,
        )
        for u in spec.upstreams
    ]
    routing = Routing()
    if spec.routing is not None:
        routing = Routing(
            default_model=spec.routing.default_model,
            model_map=[
                ModelMapping.model_validate({"from": m.from_, "to": m.to, "upstream": m.upstream})
                for m in spec.routing.model_map
            ],
        )
    auth = ClientAuth()
    if api_keys_secret(name, spec) is not None:
        auth = ClientAuth(
            mode="apikey", clients=[Client(id=c, key_env=client_key_env(c)) for c in client_ids]
        )
    rate_limit = None
    if spec.rate_limit is not None:
        rate_limit = RateLimit(
            requests_per_minute=spec.rate_limit.requests_per_minute,
            scope=spec.rate_limit.scope,
            # Without a store each replica enforces its share; with one the budget is exact anyway.
            # Autoscaled (replicas unset), the count moves: each replica enforces the whole budget.
            replicas=spec.replicas if spec.replicas is not None and spec.replicas > 1 else None,
        )
    store = None
    if spec.store is not None:
        password = STORE_PASSWORD_ENV if spec.store.password_secret_ref is not None else None
        store = Store(url=spec.store.url, password_env=password)
    guardrails = Guardrails()
    if spec.guardrails is not None:
        guardrails = Guardrails(
            pii_redaction=spec.guardrails.pii_redaction, input_filters=list(spec.guardrails.input_filters)
        )
    caching = Caching()
    if spec.caching is not None:
        caching = Caching(
            enabled=spec.caching.enabled,
            ttl_seconds=spec.caching.ttl_seconds,
            max_entries=spec.caching.max_entries,
        )
    return LLMGatewayConfig(
        name=f"{namespace}/{name}",
        listen=Listen(port=spec.port),
        metrics=Listen(port=metrics_port(spec.port)),
        upstreams=upstreams,
        routing=routing,
        rate_limit=rate_limit,
        guardrails=guardrails,
        caching=caching,
        auth=auth,
        store=store,
    )


def container_env(name: str, spec: LLMGatewaySpec, client_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The gateway container's environment: every provider key and client key, from their Secrets."""
    env: list[dict[str, Any]] = []
    for u in spec.upstreams:
        if u.credentials_ref is not None:
            ref = u.credentials_ref
            env.append(
                {"name": api_key_env(u), "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
            )
    if spec.store is not None and spec.store.password_secret_ref is not None:
        ref = spec.store.password_secret_ref
        env.append(
            {"name": STORE_PASSWORD_ENV, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        )
    keys_secret = api_keys_secret(name, spec)
    if keys_secret is not None:
        for client in client_ids:
            env.append(
                {
                    "name": client_key_env(client),
                    "valueFrom": {"secretKeyRef": {"name": keys_secret, "key": client}},
                }
            )
    return env


def workload(
    obj: Mapping[str, Any],
    spec: LLMGatewaySpec,
    image: str,
    client_ids: Sequence[str],
    secret_digests: Mapping[str, str],
) -> Workload:
    """The gateway to run for LLMGateway ``obj``, its Secrets resolved."""
    meta = obj["metadata"]
    config = gateway_config(meta["name"], meta["namespace"], spec, client_ids)
    return Workload(
        owner=obj,
        spec=spec,
        program=PROGRAM,
        image=image,
        config=dump(config),
        secret_digests=dict(secret_digests),
        env=container_env(meta["name"], spec, client_ids),
        service_account_name=spec.service_account_name,
    )


# ----------------------------------------------------------------------------------- references


def index_secrets(obj: dict[str, Any]) -> Iterable[str]:
    """Index of LLMGateways by the Secrets they reference: ``<namespace>/<name>``."""
    meta = obj["metadata"]
    namespace = meta.get("namespace") or ""
    raw = obj.get("spec")
    spec: dict[str, Any] = raw if isinstance(raw, dict) else {}
    names: set[str] = set()
    upstreams = spec.get("upstreams")
    for u in upstreams if isinstance(upstreams, list) else ():
        ref = u.get("credentialsRef") if isinstance(u, dict) else None
        if isinstance(ref, dict) and isinstance(ref.get("name"), str):
            names.add(ref["name"])
    store = spec.get("store")
    ref = store.get("passwordSecretRef") if isinstance(store, dict) else None
    if isinstance(ref, dict) and isinstance(ref.get("name"), str):
        names.add(ref["name"])
    auth = spec.get("auth")
    if isinstance(auth, dict) and auth.get("mode") == "apikey":
        ref = auth.get("secretRef")
        if isinstance(ref, dict) and isinstance(ref.get("name"), str):
            names.add(ref["name"])
        else:
            names.add(f"{meta['name']}-api-keys")
    return sorted(f"{namespace}/{name}" for name in names)


def plan(
    cache: Any,
    image: str,
    obj: dict[str, Any],
    spec: LLMGatewaySpec,
    *,
    grants: Callable[[str], Sequence[Mapping[str, Any]]] | None = None,
) -> Plan:
    """Check the Secrets of LLMGateway ``obj`` through the cache; its workload, or what is missing.

    grants: the ReferenceGrants of a namespace (``ReferenceGrants.in_namespace``). Given, the workload
    carries a NetworkPolicy admitting the gateway's namespace and every namespace a ReferenceGrant of
    it lets refer to this LLMGateway (any ``from`` kind); None: no NetworkPolicy.
    """
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    secrets = SecretReferences(cache, f"LLMGateway {namespace}/{name}", namespace)
    for i, u in enumerate(spec.upstreams):
        if u.credentials_ref is not None:
            secrets.key(f"spec.upstreams[{i}].credentialsRef", u.credentials_ref.name, u.credentials_ref.key)
    if spec.store is not None and spec.store.password_secret_ref is not None:
        ref = spec.store.password_secret_ref
        secrets.key("spec.store.passwordSecretRef", ref.name, ref.key)
    client_ids: list[str] = []
    keys_secret = api_keys_secret(name, spec)
    if keys_secret is not None:
        field = (
            "spec.auth.secretRef"
            if spec.auth is not None and spec.auth.secret_ref is not None
            else "spec.auth"
        )
        client_ids = secrets.keys(field, keys_secret) or []
    status = {"models": served_models(spec)}
    if secrets.problems:
        return Plan(problems=secrets.problems, status=status)
    w = workload(obj, spec, image, client_ids, secrets.digests)
    if grants is not None:
        to = (LLM_GATEWAY.group, LLM_GATEWAY.kind)
        w = dataclasses.replace(w, callers=granted_namespaces(grants(namespace), to=to, to_name=name))
    return Plan(workload=w, status=status)


# ---------------------------------------------------------------------------------------- wiring


def setup(manager: Any, options: OperatorOptions) -> None:
    """Register the LLMGateway controller with ``manager``."""
    cache = manager.cache
    cache.add_indexer(LLM_GATEWAY, INDEX_SECRETS, index_secrets)
    grants = ReferenceGrants(manager)
    reconciler = WorkloadReconciler(
        manager,
        name="llmgateway",
        kind=LLM_GATEWAY_KIND,
        plan=functools.partial(
            plan,
            cache,
            options.dataplane_image,
            grants=grants.in_namespace if options.network_policies else None,
        ),
        status_fields=("models",),
        digest_key=options.digest_key,
    )

    def of_namespace(obj: dict[str, Any]) -> list[Request]:
        # A grant (or its CRD appearing) changes whom the gateways of a namespace admit.
        namespace = (obj.get("metadata") or {}).get("namespace")
        return [Request.of(g) for g in cache.list(LLM_GATEWAY, namespace or None)]

    builder = reconciler.controller(manager, secrets_index=INDEX_SECRETS)
    controller = grants.register(builder, lambda: of_namespace({})).complete(reconciler)
    grants.bind(controller, of_namespace)
