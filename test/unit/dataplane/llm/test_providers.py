"""Providers: how each one is addressed for each API, and what it is sent besides the body."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from agentkube.dataplane.llm.apis import CHAT, EMBEDDINGS, MESSAGES, RESPONSES
from agentkube.dataplane.llm.config import Provider as ProviderName
from agentkube.dataplane.llm.config import Upstream
from agentkube.dataplane.llm.providers import PROVIDERS, Provider, ProviderError, build

ENV = {"KEY": "sk-provider"}


def provider(**fields: Any) -> Provider:
    config = Upstream.model_validate({"name": "u", "models": ["m"], "apiKeyEnv": "KEY", **fields})
    return build(config, ENV)


async def test_openai_bearer_and_paths_with_or_without_v1() -> None:
    for endpoint in (None, "https://proxy.example/v1", "https://proxy.example/v1/"):
        p = provider(provider="openai", endpoint=endpoint)
        out = await p.prepare(CHAT, "m", b"{}", {})
        base = endpoint.rstrip("/") if endpoint else "https://api.openai.com/v1"
        assert out.url == f"{base}/chat/completions"
        assert out.headers["Authorization"] == "Bearer sk-provider"
        assert out.body == b"{}"
    p = provider(provider="openai")
    assert (await p.prepare(RESPONSES, "m", b"", {})).url.endswith("/v1/responses")
    assert (await p.prepare(EMBEDDINGS, "m", b"", {})).url.endswith("/v1/embeddings")
    assert [p.api_for(a, "m") for a in (CHAT, RESPONSES, EMBEDDINGS, MESSAGES)] == [
        CHAT,
        RESPONSES,
        EMBEDDINGS,
        CHAT,
    ]


async def test_anthropic_key_version_and_betas() -> None:
    p = provider(provider="anthropic")
    out = await p.prepare(
        MESSAGES, "m", b"{}", {"anthropic-version": "2024-01-01", "anthropic-beta": "b1,b2"}
    )
    assert out.url == "https://api.anthropic.com/v1/messages"
    assert out.headers["x-api-key"] == "sk-provider" and "Authorization" not in out.headers
    assert (out.headers["anthropic-version"], out.headers["anthropic-beta"]) == ("2024-01-01", "b1,b2")
    plain = await p.prepare(MESSAGES, "m", b"{}", {}, count_tokens=True)
    assert plain.url == "https://api.anthropic.com/v1/messages/count_tokens"
    assert plain.headers["anthropic-version"] == "2023-06-01" and "anthropic-beta" not in plain.headers
    assert [p.api_for(a, "m") for a in (CHAT, RESPONSES, EMBEDDINGS, MESSAGES)] == [
        MESSAGES,
        MESSAGES,
        None,
        MESSAGES,
    ]
    assert p.counts_tokens
    with pytest.raises(ProviderError):
        await p.prepare(CHAT, "m", b"{}", {})


async def test_azure_deployment_urls_with_a_dated_version() -> None:
    p = provider(
        provider="azure-openai", endpoint="https://res.openai.azure.com/", azureApiVersion="2024-10-21"
    )
    chat = await p.prepare(CHAT, "gpt 4o", b"{}", {})
    assert (
        chat.url
        == "https://res.openai.azure.com/openai/deployments/gpt%204o/chat/completions?api-version=2024-10-21"
    )
    assert chat.headers["api-key"] == "sk-provider" and "Authorization" not in chat.headers
    assert (await p.prepare(EMBEDDINGS, "e", b"", {})).url.endswith(
        "/openai/deployments/e/embeddings?api-version=2024-10-21"
    )
    assert (await p.prepare(RESPONSES, "r", b"", {})).url == (
        "https://res.openai.azure.com/openai/responses?api-version=2024-10-21"
    )


@pytest.mark.parametrize(
    ("endpoint", "version"),
    [
        ("https://res.openai.azure.com", None),
        ("https://res.openai.azure.com", "v1"),
        ("https://res.openai.azure.com/openai/v1", None),
    ],
)
async def test_azure_v1_api(endpoint: str, version: str | None) -> None:
    p = provider(provider="azure-openai", endpoint=endpoint, azureApiVersion=version)
    out = await p.prepare(CHAT, "dep", b"{}", {})
    assert out.url == "https://res.openai.azure.com/openai/v1/chat/completions"


async def test_compatible_servers_speak_messages_until_they_refuse() -> None:
    for kind in ("ollama", "vllm"):
        p = provider(provider=kind, endpoint="http://local:11434", apiKeyEnv=None)
        assert p.api_for(MESSAGES, "m") == MESSAGES
        out = await p.prepare(MESSAGES, "m", b"{}", {"anthropic-version": "2023-06-01"})
        assert out.url == "http://local:11434/v1/messages" and "Authorization" not in out.headers
        assert out.headers["anthropic-version"] == "2023-06-01"
        assert (await p.prepare(CHAT, "m", b"{}", {})).url == "http://local:11434/v1/chat/completions"
        p.refuse(MESSAGES)
        assert p.api_for(MESSAGES, "m") == CHAT
        p.refuse(CHAT)  # the API it translates into is never given up
        assert p.api_for(CHAT, "m") == CHAT
    keyed = provider(provider="vllm", endpoint="http://vllm:8000/v1")
    assert (await keyed.prepare(CHAT, "m", b"", {})).headers["Authorization"] == "Bearer sk-provider"


def test_a_named_but_unset_key_is_refused_naming_the_variable() -> None:
    config = Upstream.model_validate(
        {"name": "u", "provider": "openai", "models": ["m"], "apiKeyEnv": "NOPE"}
    )
    with pytest.raises(ProviderError) as e:
        build(config, {})
    assert str(e.value).startswith("upstreams[u].apiKeyEnv: NOPE is not set")


def test_every_provider_the_config_allows_has_a_module() -> None:
    assert set(PROVIDERS) == set(get_args(ProviderName))


def test_egress_is_worked_out_once_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", ".svc.cluster.local")
    assert provider(provider="openai").egress == {"proxy": "http://proxy.internal:3128"}
    local = provider(provider="vllm", endpoint="http://vllm.ml.svc.cluster.local:8000")
    assert local.egress == {}
