"""The LLMGateway controller's pure part: what a gateway becomes, and which Secrets it needs."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from agentkube.api import parse_llm_gateway
from agentkube.controllers import llmgateway
from agentkube.controllers.children import standard_labels
from agentkube.controllers.workload import CONFIG_HASH_ANNOTATION, desired_children
from agentkube.dataplane.llm.config import ConfigError, dump, load_llm_gateway_config
from test.unit.controllers.conftest import World, secret, seed

IMAGE = "ghcr.io/agentkube/agentkube:test"


def with_secrets(world: World) -> World:
    world.add(secret("platform", "anthropic-key", {"api-key": "sk-ant-SECRET"}))
    world.add(secret("platform", "shared-gateway-api-keys", {"team-a": "key-a", "team-b": "key-b"}))
    return world


def children_of(world: World, obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    plan = llmgateway.plan(world.cache, IMAGE, obj, parse_llm_gateway(obj))
    assert not plan.problems, plan.problems
    assert plan.workload is not None
    return {c["kind"]: c for c in desired_children(plan.workload)}


def test_seed_gateway_runs_llm_gateway_with_every_key_from_its_secret(world: World) -> None:
    obj = seed("LLMGateway")
    children = children_of(with_secrets(world), obj)
    assert sorted(children) == ["ConfigMap", "Deployment", "Service"]
    for child in children.values():
        assert child["metadata"]["labels"] == standard_labels("llm-gateway", "shared-gateway")
        assert child["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    (container,) = children["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "llm-gateway"
    assert container["args"] == ["llm-gateway", "--config", "/etc/agentkube/config.yaml"]
    assert container["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
    ]
    assert container["readinessProbe"] == {"httpGet": {"path": "/readyz", "port": "http"}}
    assert container["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": "http"}}
    assert children["Service"]["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
    ]
    assert container["env"] == [
        {
            "name": "AGENTKUBE_UPSTREAM_ANTHROPIC_APIKEY",
            "valueFrom": {"secretKeyRef": {"name": "anthropic-key", "key": "api-key"}},
        },
        {
            "name": "AGENTKUBE_CLIENT_team-a",
            "valueFrom": {"secretKeyRef": {"name": "shared-gateway-api-keys", "key": "team-a"}},
        },
        {
            "name": "AGENTKUBE_CLIENT_team-b",
            "valueFrom": {"secretKeyRef": {"name": "shared-gateway-api-keys", "key": "team-b"}},
        },
    ]
    text = children["ConfigMap"]["data"]["config.yaml"]
    for value in ("sk-ant-SECRET", "key-a", "key-b"):
        assert value not in str(children)
    config = load_llm_gateway_config(text)
    assert (config.listen.port, config.metrics.port) == (8080, 9090)
    assert "metrics:\n  port: 9090\n" in text
    assert config.upstreams[0].api_key_env == "AGENTKUBE_UPSTREAM_ANTHROPIC_APIKEY"
    assert config.upstreams[0].models == ["claude-opus-4-7", "claude-sonnet-4-6", "claude-haiku-4-5"]
    assert config.routing.default_model == "claude-opus-4-7"
    assert [(m.from_, m.to) for m in config.routing.model_map] == [
        ("opus", "claude-opus-4-7"),
        ("sonnet", "claude-sonnet-4-6"),
    ]
    assert config.rate_limit is not None
    assert (config.rate_limit.requests_per_minute, config.rate_limit.scope) == (600, "perClient")
    assert config.guardrails.pii_redaction is True
    assert config.guardrails.input_filters == ["prompt-injection"]
    assert config.auth.mode == "apikey"
    assert [(c.id, c.key_env) for c in config.auth.clients] == [
        ("team-a", "AGENTKUBE_CLIENT_team-a"),
        ("team-b", "AGENTKUBE_CLIENT_team-b"),
    ]


def test_served_models_are_upstream_models_then_aliases() -> None:
    spec = parse_llm_gateway(seed("LLMGateway"))
    assert llmgateway.served_models(spec) == [
        "claude-opus-4-7",
        "claude-sonnet-4-6",
        "claude-haiku-4-5",
        "opus",
        "sonnet",
    ]


def test_missing_credentials_and_client_key_secret_are_both_reported(world: World) -> None:
    obj = seed("LLMGateway")
    plan = llmgateway.plan(world.cache, IMAGE, obj, parse_llm_gateway(obj))
    assert plan.workload is None
    assert [(p.reason, p.message) for p in plan.problems] == [
        (
            "SecretNotFound",
            "LLMGateway platform/shared-gateway: spec.upstreams[0].credentialsRef: "
            'Secret "anthropic-key" not found in namespace "platform"; create it with key "api-key"',
        ),
        (
            "SecretNotFound",
            'LLMGateway platform/shared-gateway: spec.auth: Secret "shared-gateway-api-keys" not found in '
            'namespace "platform"; create it with one key per client',
        ),
    ]
    # Status still lists what the gateway serves: that depends on the spec alone.
    assert plan.status == {
        "models": ["claude-opus-4-7", "claude-sonnet-4-6", "claude-haiku-4-5", "opus", "sonnet"]
    }


def test_missing_credentials_key_is_secret_key_not_found(world: World) -> None:
    with_secrets(world)
    world.add(secret("platform", "anthropic-key", {"wrong": "x"}))
    obj = seed("LLMGateway")
    plan = llmgateway.plan(world.cache, IMAGE, obj, parse_llm_gateway(obj))
    assert [(p.reason, p.message) for p in plan.problems] == [
        (
            "SecretKeyNotFound",
            "LLMGateway platform/shared-gateway: spec.upstreams[0].credentialsRef: "
            'Secret "anthropic-key" has no key "api-key"',
        )
    ]


def test_explicit_client_key_secret_replaces_the_default(world: World) -> None:
    with_secrets(world)
    world.add(secret("platform", "clients", {"ci": "k"}))
    obj = seed("LLMGateway")
    obj["spec"]["auth"] = {"mode": "apikey", "secretRef": {"name": "clients"}}
    assert list(llmgateway.index_secrets(obj)) == ["platform/anthropic-key", "platform/clients"]
    env = children_of(world, obj)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[-1] == {
        "name": "AGENTKUBE_CLIENT_ci",
        "valueFrom": {"secretKeyRef": {"name": "clients", "key": "ci"}},
    }


def test_open_gateway_needs_no_client_secret(world: World) -> None:
    with_secrets(world)
    obj = seed("LLMGateway")
    obj["spec"]["auth"] = {"mode": "none"}
    obj["spec"]["rateLimit"]["scope"] = "global"
    assert list(llmgateway.index_secrets(obj)) == ["platform/anthropic-key"]
    config = load_llm_gateway_config(children_of(world, obj)["ConfigMap"]["data"]["config.yaml"])
    assert (config.auth.mode, config.auth.clients) == ("none", [])


def test_new_client_key_or_rotated_provider_key_rolls_the_pods(world: World) -> None:
    with_secrets(world)
    obj = seed("LLMGateway")

    def pod_hash() -> str:
        template = children_of(world, obj)["Deployment"]["spec"]["template"]
        return str(template["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])

    before = pod_hash()
    world.add(secret("platform", "anthropic-key", {"api-key": "sk-ant-ROTATED"}))
    rotated = pod_hash()
    assert rotated != before
    world.add(secret("platform", "shared-gateway-api-keys", {"team-a": "key-a", "team-b": "key-b", "c": "k"}))
    assert pod_hash() not in (before, rotated)


def test_workload_identity_providers_get_no_key_variable(world: World) -> None:
    obj = copy.deepcopy(seed("LLMGateway"))
    obj["spec"] = {
        "upstreams": [{"name": "aws", "provider": "bedrock", "region": "us-east-1", "models": ["claude"]}],
    }
    children = children_of(world, obj)
    assert "env" not in children["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    config = load_llm_gateway_config(children["ConfigMap"]["data"]["config.yaml"])
    assert (config.upstreams[0].api_key_env, config.upstreams[0].region) == (None, "us-east-1")


def test_gateway_on_9090_serves_metrics_beside_it_and_the_config_refuses_one_port_for_both(
    world: World,
) -> None:
    with_secrets(world)
    obj = seed("LLMGateway")
    obj["spec"]["port"] = 9090
    children = children_of(world, obj)
    config = load_llm_gateway_config(children["ConfigMap"]["data"]["config.yaml"])
    assert (config.listen.port, config.metrics.port) == (9090, 9091)
    assert children["Service"]["spec"]["ports"][1] == {
        "name": "metrics",
        "port": 9091,
        "targetPort": "metrics",
        "protocol": "TCP",
    }
    same = dump(config).replace("port: 9091", "port: 9090")
    with pytest.raises(ConfigError, match=re.escape("metrics.port: 9090 is listen.port too")):
        load_llm_gateway_config(same)


def test_a_shared_store_gets_its_password_from_a_secret_and_replicas_share_the_budget(world: World) -> None:
    with_secrets(world)
    obj = copy.deepcopy(seed("LLMGateway"))
    obj["spec"]["replicas"] = 3
    obj["spec"]["store"] = {
        "url": "redis://redis.platform.svc.cluster.local:6379/0",
        "passwordSecretRef": {"name": "redis", "key": "password"},
    }
    assert "platform/redis" in llmgateway.index_secrets(obj)
    plan = llmgateway.plan(world.cache, IMAGE, obj, parse_llm_gateway(obj))
    assert [(p.reason, p.message) for p in plan.problems] == [
        (
            "SecretNotFound",
            "LLMGateway platform/shared-gateway: spec.store.passwordSecretRef: "
            'Secret "redis" not found in namespace "platform"; create it with key "password"',
        )
    ]
    world.add(secret("platform", "redis", {"password": "s3cret-store"}))
    children = children_of(world, obj)
    text = children["ConfigMap"]["data"]["config.yaml"]
    assert "s3cret-store" not in text
    config = load_llm_gateway_config(text)
    assert config.store is not None
    assert (config.store.url, config.store.password_env) == (
        "redis://redis.platform.svc.cluster.local:6379/0",
        llmgateway.STORE_PASSWORD_ENV,
    )
    assert config.rate_limit is not None and config.rate_limit.replicas == 3
    env = children["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {
        "name": llmgateway.STORE_PASSWORD_ENV,
        "valueFrom": {"secretKeyRef": {"name": "redis", "key": "password"}},
    } in env


def test_one_replica_and_no_store_render_as_before(world: World) -> None:
    with_secrets(world)
    text = children_of(world, seed("LLMGateway"))["ConfigMap"]["data"]["config.yaml"]
    assert "store" not in text and "replicas" not in text  # the config hash of existing gateways holds
