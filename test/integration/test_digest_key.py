"""Keyed digests: the pod template's hash over Secret values is keyed by the operator's own Secret
``agentkube-digest-key``, made once on the first start and reused by every later one."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac

import pytest

from agentkube.controllers.kinds import CONFIG_MAP, DEPLOYMENT, MCP, SECRET
from agentkube.controllers.secrets import DIGEST_KEY_SECRET, load_digest_key
from agentkube.controllers.workload import CONFIG_HASH_ANNOTATION, config_hash
from agentkube.runtime.client import Client
from agentkube.testing.controlplane import ControlPlane
from test.integration.operator_harness import (
    HTTP_UPSTREAM,
    RunningOperator,
    condition,
    eventually,
    mcp_object,
    running_operator,
    secret_object,
)

pytestmark = pytest.mark.integration


async def values(client: Client, namespace: str) -> dict[str, bytes]:
    """``<secret>/<key>`` -> value of what the proxy reads."""
    found = {}
    for name in ("pat", "one-session"):
        for key, encoded in (await client.get(SECRET, name, namespace))["data"].items():
            found[f"{name}/{key}"] = base64.b64decode(encoded)
    return found


async def template_hash(client: Client, namespace: str) -> str:
    deployment = await client.get(DEPLOYMENT, "one", namespace)
    return str(deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])


async def test_the_key_is_made_once_reused_across_restarts_and_no_template_has_an_unkeyed_digest(
    control_plane: ControlPlane, client: Client, namespace: str
) -> None:
    await client.apply(secret_object(namespace, "pat", {"token": "t"}), field_manager="test")
    await client.apply(mcp_object(namespace, "one", [HTTP_UPSTREAM]), field_manager="test")

    async def accepted() -> bool:
        obj = await client.get(MCP, "one", namespace)
        return (condition(obj, "Accepted") or {}).get("status") == "True"

    async with running_operator(str(control_plane.kubeconfig), namespace=namespace):
        await eventually(accepted, "the MCP is Accepted")
        await eventually(lambda: template_hash(client, namespace), "the Deployment carries its hash")
    made = await client.get(SECRET, DIGEST_KEY_SECRET, namespace)
    key = base64.b64decode(made["data"]["key"])
    assert len(key) == 32
    first = await template_hash(client, namespace)

    config = (await client.get(CONFIG_MAP, "one-config", namespace))["data"]["config.yaml"]
    secret_values = await values(client, namespace)
    unkeyed = {ref: "sha256:" + hashlib.sha256(v).hexdigest() for ref, v in secret_values.items()}
    keyed = {
        ref: "hmac-sha256:" + hmac.new(key, v, hashlib.sha256).hexdigest() for ref, v in secret_values.items()
    }
    assert first != config_hash(config, unkeyed)
    assert first == config_hash(config, keyed)  # recomputable only with the key

    before = RunningOperator.reconciles(None)  # type: ignore[arg-type]  # the process's counters
    async with running_operator(str(control_plane.kubeconfig), namespace=namespace) as op:
        await eventually(lambda: op.reconciles() > before and op.idle(), "the MCP was reconciled again")
        assert (await client.get(SECRET, DIGEST_KEY_SECRET, namespace))["metadata"]["uid"] == made[
            "metadata"
        ]["uid"]
        assert await template_hash(client, namespace) == first  # same key: the pods do not roll
        assert op.client.writes_of("apply", "Deployment") == []


async def test_operators_starting_at_once_end_with_one_key(client: Client, namespace: str) -> None:
    keys = await asyncio.gather(*(load_digest_key(client, namespace) for _ in range(4)))
    assert len(set(keys)) == 1
    stored = await client.get(SECRET, DIGEST_KEY_SECRET, namespace)
    assert base64.b64decode(stored["data"]["key"]) == keys[0]
