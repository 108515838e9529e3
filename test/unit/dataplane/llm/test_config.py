"""The LLM gateway's config file: what loads, and how a bad one is reported."""

from __future__ import annotations

import pytest

from agentkube.dataplane.llm.config import ConfigError, dump, load_llm_gateway_config

GOOD = """
apiVersion: agentkube.io/v1alpha1
kind: LLMGatewayConfig
name: platform/shared-gateway
listen: {port: 8080}
upstreams:
  - name: anthropic
    provider: anthropic
    apiKeyEnv: AGENTKUBE_UPSTREAM_ANTHROPIC_APIKEY
    models: [claude-opus-4-7, claude-sonnet-4-6]
    priority: 1
routing:
  defaultModel: opus
  modelMap:
    - {from: opus, to: claude-opus-4-7, upstream: anthropic}
rateLimit: {requestsPerMinute: 600, scope: perClient}
auth:
  mode: apikey
  clients:
    - {id: team-a, keyEnv: AGENTKUBE_CLIENT_team-a}
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_llm_gateway_config(text)
    return e.value.errors


def test_loads_with_defaults_for_what_is_omitted() -> None:
    config = load_llm_gateway_config(GOOD)
    assert config.upstreams[0].api_key_env == "AGENTKUBE_UPSTREAM_ANTHROPIC_APIKEY"
    assert config.routing.model_map[0].from_ == "opus"
    assert (config.caching.enabled, config.caching.ttl_seconds) == (False, 300)
    assert config.guardrails.pii_redaction is False
    assert config.served_models == ["claude-opus-4-7", "claude-sonnet-4-6", "opus"]


def test_dump_round_trips_with_from_as_the_wire_name() -> None:
    config = load_llm_gateway_config(GOOD)
    text = dump(config)
    assert "from: opus" in text
    assert load_llm_gateway_config(text) == config


def test_cross_field_rules_name_the_field() -> None:
    assert errors_of(GOOD.replace("upstream: anthropic}", "upstream: openai}")) == [
        "routing.modelMap[0].upstream: no upstream named 'openai'"
    ]
    assert errors_of(GOOD.replace("defaultModel: opus", "defaultModel: gpt-5")) == [
        "routing.defaultModel: 'gpt-5' is served by no upstream and no alias"
    ]
    open_gateway = GOOD.replace("mode: apikey", "mode: none").replace(
        "  clients:\n    - {id: team-a, keyEnv: AGENTKUBE_CLIENT_team-a}\n", ""
    )
    assert errors_of(open_gateway) == ["rateLimit.scope: perClient needs auth.mode apikey"]


def test_field_errors_carry_their_path() -> None:
    bad = GOOD.replace("provider: anthropic", "provider: acme").replace(
        "requestsPerMinute: 600", "requestsPerMinute: 0"
    )
    assert errors_of(bad) == [
        "upstreams[0].provider: Input should be 'openai', 'anthropic', 'bedrock', 'vertex', 'azure-openai', "
        "'ollama' or 'vllm'",
        "rateLimit.requestsPerMinute: Input should be greater than or equal to 1",
    ]


def test_a_key_value_in_place_of_an_env_name_is_refused() -> None:
    bad = GOOD.replace("apiKeyEnv: AGENTKUBE_UPSTREAM_ANTHROPIC_APIKEY", "apiKeyEnv: 'sk-ant api key'")
    assert errors_of(bad)[0].startswith("upstreams[0].apiKeyEnv: String should match pattern")


def test_fields_added_later_default_and_stay_out_of_the_rendered_text() -> None:
    config = load_llm_gateway_config(GOOD)
    timeouts = config.upstreams[0].timeouts
    assert (timeouts.connect_seconds, timeouts.first_byte_seconds, timeouts.stream_idle_seconds) == (
        10,
        600,
        300,
    )
    assert (config.routing.failures_before_cooldown, config.routing.cooldown_seconds) == (3, 30)
    assert config.limits.max_request_bytes == 16 * 1024 * 1024
    assert config.store is None and config.rate_limit is not None and config.rate_limit.replicas is None
    text = dump(config)
    for key in ("timeouts", "limits", "cooldownSeconds", "failuresBeforeCooldown", "store", "replicas"):
        assert key not in text


def test_fields_added_later_round_trip_when_set() -> None:
    text = GOOD.replace(
        "    priority: 1\n",
        "    priority: 1\n    timeouts: {connectSeconds: 2, firstByteSeconds: 30, streamIdleSeconds: 60}\n",
    ).replace("scope: perClient}", "scope: perClient, replicas: 3}")
    text += (
        "store: {url: 'redis://redis.platform:6379/0', passwordEnv: REDIS_PASSWORD}\n"
        "limits: {maxRequestBytes: 4096, graceSeconds: 5}\n"
    )
    config = load_llm_gateway_config(text)
    assert config.upstreams[0].timeouts.first_byte_seconds == 30
    assert config.rate_limit is not None and config.rate_limit.replicas == 3
    assert config.store is not None and config.store.password_env == "REDIS_PASSWORD"
    assert config.limits.max_request_bytes == 4096
    assert load_llm_gateway_config(dump(config)) == config


def test_provider_rules_name_the_upstream_field() -> None:
    azure = GOOD.replace("provider: anthropic", "provider: azure-openai")
    assert errors_of(azure) == ["upstreams[0].endpoint: provider azure-openai needs the base URL of its API"]
    keyless = GOOD.replace("    apiKeyEnv: AGENTKUBE_UPSTREAM_ANTHROPIC_APIKEY\n", "")
    assert errors_of(keyless) == [
        "upstreams[0].apiKeyEnv: provider anthropic needs the variable that holds its API key"
    ]
    versioned = GOOD.replace("    priority: 1\n", "    priority: 1\n    azureApiVersion: '2024-10-21'\n")
    assert errors_of(versioned) == [
        "upstreams[0].azureApiVersion: only for provider azure-openai, not anthropic"
    ]
    local = GOOD.replace("provider: anthropic", "provider: ollama").replace(
        "    apiKeyEnv: AGENTKUBE_UPSTREAM_ANTHROPIC_APIKEY\n", "    endpoint: http://ollama:11434\n"
    )
    assert load_llm_gateway_config(local).upstreams[0].api_key_env is None


def test_a_store_url_must_be_redis() -> None:
    assert errors_of(GOOD + "store: {url: 'http://redis:6379'}\n")[0].startswith(
        "store.url: String should match pattern"
    )
