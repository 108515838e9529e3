"""HPA: with ``spec.replicas`` unset, whoever scales the Deployment (a HorizontalPodAutoscaler, through
its own field manager) owns ``replicas``; our next apply leaves it as set. With a number, it is ours."""

from __future__ import annotations

from typing import Any

import pytest

from agentkube.controllers.kinds import DEPLOYMENT, LLM_GATEWAY, MCP
from agentkube.runtime.client import Client
from agentkube.runtime.gvk import GVK
from test.integration.operator_harness import (
    HTTP_UPSTREAM,
    RunningOperator,
    condition,
    eventually,
    mcp_object,
    secret_object,
)

pytestmark = pytest.mark.integration

AUTOSCALER = "horizontal-pod-autoscaler-stand-in"


def llm_gateway(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "agentkube.io/v1alpha1",
        "kind": "LLMGateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "upstreams": [
                {
                    "name": "anthropic",
                    "provider": "anthropic",
                    "models": ["claude"],
                    "credentialsRef": {"name": "pat", "key": "token"},
                }
            ],
            **spec,
        },
    }


async def accepted_at(client: Client, gvk: GVK, name: str, namespace: str) -> int:
    """The generation the controller has Accepted, once it has seen the current one."""
    obj = await client.get(gvk, name, namespace)
    c = condition(obj, "Accepted") or {}
    generation = int(obj["metadata"]["generation"])
    return generation if c.get("status") == "True" and c.get("observedGeneration") == generation else 0


async def scale(client: Client, name: str, namespace: str, replicas: int) -> None:
    """What an autoscaler does: set replicas as a field manager of its own."""
    await client.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas},
        },
        field_manager=AUTOSCALER,
        force=True,
    )


async def bump(client: Client, gvk: GVK, name: str, namespace: str, value: str) -> None:
    """A spec change: the controller applies the Deployment again."""
    await client.patch(gvk, name, namespace, {"spec": {"podMetadata": {"annotations": {"bump": value}}}})


@pytest.mark.parametrize("gvk", [MCP, LLM_GATEWAY], ids=["MCP", "LLMGateway"])
async def test_replicas_set_by_an_autoscaler_stay_after_our_next_apply(
    operator: RunningOperator, client: Client, namespace: str, gvk: GVK
) -> None:
    await client.apply(secret_object(namespace, "pat", {"token": "t"}), field_manager="test")
    obj = mcp_object(namespace, "scaled", [HTTP_UPSTREAM]) if gvk == MCP else llm_gateway(namespace, "scaled")
    await client.apply(obj, field_manager="test")
    await eventually(lambda: accepted_at(client, gvk, "scaled", namespace), "it is Accepted")
    deployment = await eventually(lambda: client.get(DEPLOYMENT, "scaled", namespace), "its Deployment")
    assert deployment["spec"]["replicas"] == 1  # the Deployment's own default until someone scales it

    await scale(client, "scaled", namespace, 3)
    await bump(client, gvk, "scaled", namespace, "1")

    async def reapplied() -> bool:
        d = await client.get(DEPLOYMENT, "scaled", namespace)
        annotations = d["spec"]["template"]["metadata"].get("annotations") or {}
        return annotations.get("bump") == "1"

    await eventually(reapplied, "the Deployment was applied again")
    assert (await client.get(DEPLOYMENT, "scaled", namespace))["spec"]["replicas"] == 3


async def test_replicas_given_in_the_spec_are_ours_and_put_back(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    await client.apply(secret_object(namespace, "pat", {"token": "t"}), field_manager="test")
    await client.apply(mcp_object(namespace, "fixed", [HTTP_UPSTREAM], replicas=2), field_manager="test")
    await eventually(lambda: accepted_at(client, MCP, "fixed", namespace), "it is Accepted")
    await eventually(lambda: client.get(DEPLOYMENT, "fixed", namespace), "its Deployment")
    await scale(client, "fixed", namespace, 5)
    await bump(client, MCP, "fixed", namespace, "1")

    async def put_back() -> bool:
        return (await client.get(DEPLOYMENT, "fixed", namespace))["spec"]["replicas"] == 2

    await eventually(put_back, "spec.replicas is put back")
