"""The LLMGateway controller against a real kube-apiserver: the seed gateway, its Secrets, its status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agentkube.controllers.kinds import (
    CONFIG_MAP,
    DEPLOYMENT,
    LLM_GATEWAY,
    POD_DISRUPTION_BUDGET,
    SECRET,
    SERVICE,
)
from agentkube.controllers.workload import CONFIG_HASH_ANNOTATION
from agentkube.dataplane.llm.config import load_llm_gateway_config
from agentkube.runtime.client import Client
from test.integration.operator_harness import (
    IMAGE,
    RunningOperator,
    condition,
    eventually,
    get_or_none,
    secret_object,
    set_available,
)

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "samples" / "agentkube_v1alpha1_llmgateway.yaml"
NAME = "shared-gateway"
LABELS = {
    "app.kubernetes.io/name": "llm-gateway",
    "app.kubernetes.io/instance": NAME,
    "app.kubernetes.io/managed-by": "agentkube",
    "app.kubernetes.io/part-of": "agentkube",
}
MODELS = ["claude-opus-4-7", "claude-sonnet-4-6", "claude-haiku-4-5", "opus", "sonnet"]


def seed(namespace: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    obj["metadata"]["namespace"] = namespace
    return obj


async def accepted(client: Client, namespace: str, status: str, reason: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        obj = await client.get(LLM_GATEWAY, NAME, namespace)
        c = condition(obj, "Accepted") or {}
        current = c.get("observedGeneration") == obj["metadata"]["generation"]
        return obj if current and (c.get("status"), c.get("reason")) == (status, reason) else None

    found: dict[str, Any] = await eventually(check, f"the gateway is Accepted={status} ({reason})")
    return found


async def test_seed_gateway_waits_for_its_secrets_then_runs(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    await client.apply(seed(namespace), field_manager="t")
    obj = await accepted(client, namespace, "False", "SecretNotFound")
    message = condition(obj, "Accepted")["message"]  # type: ignore[index]
    assert (
        f'spec.upstreams[0].credentialsRef: Secret "anthropic-key" not found in namespace "{namespace}"'
        in message
    )
    assert f'spec.auth: Secret "shared-gateway-api-keys" not found in namespace "{namespace}"' in message
    # What it serves is known from the spec alone.
    assert obj["status"]["models"] == MODELS
    assert await get_or_none(client, DEPLOYMENT, NAME, namespace) is None

    await client.apply(
        secret_object(namespace, "anthropic-key", {"api-key": "sk-ant-VALUE"}), field_manager="t"
    )
    await client.apply(secret_object(namespace, f"{NAME}-api-keys", {"team-a": "key-a"}), field_manager="t")
    obj = await accepted(client, namespace, "True", "Accepted")
    assert obj["status"]["url"] == f"http://{NAME}.{namespace}.svc.cluster.local:8080"

    deployment = await eventually(lambda: get_or_none(client, DEPLOYMENT, NAME, namespace), "the Deployment")
    config_map = await client.get(CONFIG_MAP, f"{NAME}-config", namespace)
    service = await client.get(SERVICE, NAME, namespace)
    owner = {
        "apiVersion": "agentkube.io/v1alpha1",
        "kind": "LLMGateway",
        "name": NAME,
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    for child in (deployment, config_map, service):
        assert child["metadata"]["labels"] == LABELS
        assert child["metadata"]["ownerReferences"] == [owner]
    assert await get_or_none(client, POD_DISRUPTION_BUDGET, NAME, namespace) is None  # one replica

    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGE
    assert container["args"] == ["llm-gateway", "--config", "/etc/agentkube/config.yaml"]
    assert container["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
    ]
    assert container["env"] == [
        {
            "name": "AGENTKUBE_UPSTREAM_ANTHROPIC_APIKEY",
            "valueFrom": {"secretKeyRef": {"name": "anthropic-key", "key": "api-key"}},
        },
        {
            "name": "AGENTKUBE_CLIENT_team-a",
            "valueFrom": {"secretKeyRef": {"name": f"{NAME}-api-keys", "key": "team-a"}},
        },
    ]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
    ]

    text = config_map["data"]["config.yaml"]
    assert "sk-ant-VALUE" not in text and "key-a" not in text
    config = load_llm_gateway_config(text)
    assert (config.listen.port, config.metrics.port) == (8080, 9090)
    assert config.upstreams[0].api_key_env == "AGENTKUBE_UPSTREAM_ANTHROPIC_APIKEY"
    assert [(c.id, c.key_env) for c in config.auth.clients] == [("team-a", "AGENTKUBE_CLIENT_team-a")]
    assert config.rate_limit is not None and config.rate_limit.scope == "perClient"

    assert obj["status"]["ready"] == "0/1"
    await set_available(client, namespace, NAME, True)

    async def ready() -> bool:
        c = condition(await client.get(LLM_GATEWAY, NAME, namespace), "Ready")
        return c is not None and c["status"] == "True"

    await eventually(ready, "the gateway is Ready")
    assert (await client.get(LLM_GATEWAY, NAME, namespace))["status"]["ready"] == "1/1"


async def test_new_client_key_adds_a_client_and_rolls_the_pods(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    await client.apply(secret_object(namespace, "anthropic-key", {"api-key": "k"}), field_manager="t")
    await client.apply(secret_object(namespace, f"{NAME}-api-keys", {"team-a": "a"}), field_manager="t")
    await client.apply(seed(namespace), field_manager="t")
    deployment = await eventually(lambda: get_or_none(client, DEPLOYMENT, NAME, namespace), "the Deployment")
    before = deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]

    await client.apply(
        secret_object(namespace, f"{NAME}-api-keys", {"team-a": "a", "team-b": "b"}), field_manager="t"
    )

    async def two_clients() -> dict[str, Any] | None:
        d = await client.get(DEPLOYMENT, NAME, namespace)
        env = d["spec"]["template"]["spec"]["containers"][0].get("env") or []
        return d if "AGENTKUBE_CLIENT_team-b" in {e["name"] for e in env} else None

    after = await eventually(two_clients, "team-b's key reaches the pods")
    assert after["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] != before


async def test_deleted_credentials_secret_is_reported_and_the_running_gateway_kept(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    await client.apply(secret_object(namespace, "anthropic-key", {"api-key": "k"}), field_manager="t")
    await client.apply(secret_object(namespace, f"{NAME}-api-keys", {"team-a": "a"}), field_manager="t")
    await client.apply(seed(namespace), field_manager="t")
    await accepted(client, namespace, "True", "Accepted")
    await client.delete(SECRET, "anthropic-key", namespace)
    await accepted(client, namespace, "False", "SecretNotFound")
    assert await get_or_none(client, DEPLOYMENT, NAME, namespace) is not None
