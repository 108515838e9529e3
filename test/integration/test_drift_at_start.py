"""Drift while nobody watched: a child edited while the operator was down is put back at the next
start, and an untouched world gets no write at that start (only one dry-run apply per child)."""

from __future__ import annotations

from collections import Counter

import pytest

from agentkube.controllers.kinds import CONFIG_MAP, DEPLOYMENT, MCP
from agentkube.runtime.client import Client
from agentkube.testing.controlplane import ControlPlane
from test.integration.operator_harness import (
    HTTP_UPSTREAM,
    IMAGE,
    RunningOperator,
    condition,
    eventually,
    mcp_object,
    running_operator,
    secret_object,
)

pytestmark = pytest.mark.integration


async def converge(control_plane: ControlPlane, client: Client, namespace: str) -> None:
    await client.apply(secret_object(namespace, "pat", {"token": "t"}), field_manager="test")
    await client.apply(mcp_object(namespace, "one", [HTTP_UPSTREAM]), field_manager="test")

    async def accepted() -> bool:
        obj = await client.get(MCP, "one", namespace)
        c = condition(obj, "Accepted") or {}
        return c.get("status") == "True" and c.get("observedGeneration") == obj["metadata"]["generation"]

    async with running_operator(str(control_plane.kubeconfig), namespace=namespace) as op:
        await eventually(accepted, "the MCP is Accepted")
        await eventually(lambda: client.get(DEPLOYMENT, "one", namespace), "the Deployment exists")
        await settle(op)


async def settle(op: RunningOperator) -> None:
    await eventually(op.idle, "the controllers are idle")
    await op.flush_events()


def reconciles() -> float:
    return RunningOperator.reconciles(None)  # type: ignore[arg-type]  # reads the process's counters


def image_of(deployment: dict) -> str:
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


async def test_child_edited_while_the_operator_was_down_is_put_back_at_start(
    control_plane: ControlPlane, client: Client, namespace: str
) -> None:
    await converge(control_plane, client, namespace)
    config = (await client.get(CONFIG_MAP, "one-config", namespace))["data"]["config.yaml"]
    # Edits by hand (kubectl edit / set image: update requests of another field manager).
    deployment = await client.get(DEPLOYMENT, "one", namespace)
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
    await client.replace(deployment)
    cm = await client.get(CONFIG_MAP, "one-config", namespace)
    cm["data"]["config.yaml"] = "tampered: true\n"
    cm["data"]["extra"] = "added by hand"
    await client.replace(cm)

    async with running_operator(str(control_plane.kubeconfig), namespace=namespace) as op:

        async def put_back() -> bool:
            d = await client.get(DEPLOYMENT, "one", namespace)
            c = await client.get(CONFIG_MAP, "one-config", namespace)
            return image_of(d) == IMAGE and c["data"]["config.yaml"] == config

        await eventually(put_back, "the Deployment's image and the ConfigMap's key are put back")
        await settle(op)
        writes = Counter((w.verb, w.kind) for w in op.client.writes if w.subresource is None)
        assert writes[("apply", "Deployment")] == 1
        assert writes[("apply", "ConfigMap")] == 1
        # Only what drifted is written again.
        assert writes[("apply", "Service")] == 0


async def test_untouched_world_gets_no_write_at_start(
    control_plane: ControlPlane, client: Client, namespace: str
) -> None:
    await converge(control_plane, client, namespace)
    before = reconciles()
    async with running_operator(str(control_plane.kubeconfig), namespace=namespace) as op:
        await eventually(lambda: op.reconciles() >= before + 1, "the MCP was reconciled")
        await settle(op)
        assert op.client.writes == []
        # The check costs at most one request per child (a dry-run apply), and only at the start.
        checks = Counter(w.kind for w in op.client.dry_runs)
        assert all(n == 1 for n in checks.values()), checks
        checked = len(op.client.dry_runs)
        op.requeue_everything()
        await eventually(lambda: op.reconciles() >= before + 2, "the MCP was reconciled again")
        await settle(op)
        assert op.client.writes == []
        assert len(op.client.dry_runs) == checked
