"""The MCP proxy's config file: what loads, and how a bad one is reported."""

from __future__ import annotations

import pytest

from agentkube.dataplane.mcp.config import (
    ConfigError,
    HttpUpstream,
    MCPProxyConfig,
    StdioUpstream,
    dump,
    load_mcp_proxy_config,
    load_mcp_proxy_config_file,
)

GOOD = """
apiVersion: agentkube.io/v1alpha1
kind: MCPProxyConfig
name: team-a/github-tools
listen: {port: 8080}
upstreams:
  - kind: http
    name: github
    url: https://mcp.github.com
    auth: {mode: bearer, secretEnv: AGENTKUBE_UPSTREAM_GITHUB_SECRET}
    tools: {mode: allow, allow: [create_issue]}
  - kind: http
    name: backend
    url: http://backend.team-a.svc.cluster.local:8080
    mcpRef: team-a/backend
  - kind: stdio
    name: files
    command: npx
    args: [-y, server-filesystem]
    env:
      - {name: MODE, value: ro}
      - {name: TOKEN, valueFromEnv: AGENTKUBE_UPSTREAM_FILES_ENV1}
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_mcp_proxy_config(text, source="config.yaml")
    assert str(e.value).startswith("config.yaml: ")
    return e.value.errors


def test_loads_every_kind_of_upstream() -> None:
    config = load_mcp_proxy_config(GOOD)
    http, ref, stdio = config.upstreams
    assert (
        isinstance(http, HttpUpstream) and isinstance(ref, HttpUpstream) and isinstance(stdio, StdioUpstream)
    )
    assert http.auth is not None and http.auth.secret_env == "AGENTKUBE_UPSTREAM_GITHUB_SECRET"
    assert ref.mcp_ref == "team-a/backend"
    assert [(v.name, v.value, v.value_from_env) for v in stdio.env] == [
        ("MODE", "ro", None),
        ("TOKEN", None, "AGENTKUBE_UPSTREAM_FILES_ENV1"),
    ]


def test_dump_then_load_gives_the_same_config_and_the_same_text() -> None:
    config = load_mcp_proxy_config(GOOD)
    text = dump(config)
    assert load_mcp_proxy_config(text) == config
    assert dump(load_mcp_proxy_config(text)) == text


def test_loads_from_a_file(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "config.yaml"
    path.write_text(GOOD)
    assert isinstance(load_mcp_proxy_config_file(path), MCPProxyConfig)


def test_errors_name_the_field_path() -> None:
    bad = GOOD.replace("url: https://mcp.github.com", "url: ftp://x").replace("port: 8080", "port: 0")
    assert errors_of(bad) == [
        "listen.port: Input should be greater than or equal to 1",
        "upstreams[0].url: String should match pattern '^https?://'",
    ]


def test_missing_secret_env_and_unknown_field_are_named() -> None:
    bad = GOOD.replace(
        "auth: {mode: bearer, secretEnv: AGENTKUBE_UPSTREAM_GITHUB_SECRET}", "auth: {mode: bearer}"
    )
    bad = bad.replace("command: npx", "command: npx\n    comand: typo")
    assert errors_of(bad) == [
        "upstreams[0].auth.secretEnv: Field required",
        "upstreams[2].comand: Extra inputs are not permitted",
    ]


def test_another_version_or_kind_is_refused_by_name() -> None:
    assert errors_of(GOOD.replace("agentkube.io/v1alpha1", "agentkube.io/v9")) == [
        "apiVersion: 'agentkube.io/v9' is not supported; this program reads 'agentkube.io/v1alpha1'"
    ]
    assert errors_of(GOOD.replace("MCPProxyConfig", "LLMGatewayConfig"))[0].startswith("kind: ")


def test_duplicates_and_half_set_sources_are_refused() -> None:
    dup = GOOD.replace("name: backend", "name: github")
    assert errors_of(dup) == ["upstreams: duplicate name(s) github"]
    both = GOOD.replace("{name: MODE, value: ro}", "{name: MODE, value: ro, valueFromEnv: X}")
    assert errors_of(both) == ["upstreams[2].env[0]: exactly one of value or valueFromEnv is required"]


def test_not_yaml_or_not_a_mapping_is_an_error_not_a_crash() -> None:
    assert errors_of("a: [")[0].startswith("not valid YAML")
    assert errors_of("- 1") == ["the config must be a mapping with apiVersion and kind"]
