"""Zero writes at rest: once converged, reconciling everything again sends no write request at all.

The operator runs on a client that notes every write it sends (children, status, Events). Objects are
created before it starts, so its first pass sees them all; each child must then be applied once,
each healthy MCP's session-key Secret created once (the one write a child gets that is a create, not
an apply) and each status written once, and any later pass over the unchanged world must write
nothing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from agentkube.controllers.kinds import LLM_GATEWAY, MCP
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
    set_available,
)

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "config" / "samples"


HEALTHY = ("one", "two", "front", "shared-gateway")


async def populate(client: Client, namespace: str) -> None:
    """Healthy MCPs (one with a PDB, one referencing another), the seed gateway, and a broken MCP."""
    gateway = yaml.safe_load((SAMPLES / "agentkube_v1alpha1_llmgateway.yaml").read_text())
    gateway["metadata"]["namespace"] = namespace
    objects = [
        secret_object(namespace, "pat", {"token": "t"}),
        secret_object(namespace, "anthropic-key", {"api-key": "k"}),
        secret_object(namespace, "shared-gateway-api-keys", {"team-a": "a"}),
        mcp_object(namespace, "one", [HTTP_UPSTREAM]),
        mcp_object(namespace, "two", [HTTP_UPSTREAM], replicas=2),
        mcp_object(namespace, "front", [{"name": "one", "kind": "mcpRef", "mcpRef": {"name": "one"}}]),
        mcp_object(
            namespace,
            "broken",
            [{**HTTP_UPSTREAM, "auth": {"mode": "bearer", "secretRef": {"name": "gone", "key": "k"}}}],
        ),
        gateway,
    ]
    for obj in objects:
        await client.apply(obj, field_manager="test")


async def converged(client: Client, namespace: str) -> bool:
    for gvk, names in ((MCP, ("one", "two", "front", "broken")), (LLM_GATEWAY, ("shared-gateway",))):
        for name in names:
            obj = await client.get(gvk, name, namespace)
            accepted = condition(obj, "Accepted")
            if accepted is None or accepted.get("observedGeneration") != obj["metadata"]["generation"]:
                return False
            if (accepted["status"] == "True") != (name in HEALTHY):
                return False
    return True


async def settle(op: RunningOperator) -> None:
    await eventually(op.idle, "the controllers are idle")
    await op.flush_events()


async def reconcile_everything_again(op: RunningOperator) -> None:
    before = op.reconciles()
    added = op.requeue_everything()
    assert added == 5
    await eventually(
        lambda: op.reconciles() >= before + added and op.idle(), "every object was reconciled again"
    )
    await op.flush_events()


async def test_first_pass_writes_each_child_and_status_once(
    control_plane: ControlPlane, client: Client, namespace: str
) -> None:
    await populate(client, namespace)
    async with running_operator(str(control_plane.kubeconfig), namespace=namespace) as op:
        await eventually(lambda: converged(client, namespace), "every object is converged")
        await settle(op)
        applied = Counter((w.kind, w.name, w.subresource) for w in op.client.writes_of("apply"))
        assert all(n == 1 for n in applied.values()), applied
        assert {(k, n) for k, n, sub in applied if sub == "status"} == {
            ("MCP", "one"),
            ("MCP", "two"),
            ("MCP", "front"),
            ("MCP", "broken"),
            ("LLMGateway", "shared-gateway"),
        }
        children = Counter(k for k, _, sub in applied if sub is None)
        assert children == {
            "ConfigMap": 4,
            "Deployment": 4,
            "Service": 4,
            "PodDisruptionBudget": 1,
            "NetworkPolicy": 4,
        }
        # The session keys of the healthy MCPs, not of the broken one (not Accepted: nothing made).
        made = sorted(w.name for w in op.client.writes_of("create", "Secret"))
        assert made == ["front-session", "one-session", "two-session"]
        assert [w for w in op.client.writes if w.kind == "Secret" and w.verb != "create"] == []
        # One Normal event per healthy object (its session key and children together), one Warning
        # for the broken object.
        assert len(op.client.writes_of("create", "Event")) == 4 + 1
        assert op.client.writes_of("delete") == []


async def test_requeue_after_convergence_sends_no_write(
    control_plane: ControlPlane, client: Client, namespace: str
) -> None:
    await populate(client, namespace)
    async with running_operator(str(control_plane.kubeconfig), namespace=namespace) as op:
        await eventually(lambda: converged(client, namespace), "every object is converged")
        for name in ("one", "two", "shared-gateway"):
            await set_available(client, namespace, name, True)

        async def ready() -> bool:
            objs = [await client.get(MCP, n, namespace) for n in ("one", "two")]
            objs.append(await client.get(LLM_GATEWAY, "shared-gateway", namespace))
            return all((condition(o, "Ready") or {}).get("status") == "True" for o in objs)

        await eventually(ready, "the available objects are Ready")
        # ready/desired is written with readyReplicas, and like it is not written again at rest.
        shown = [(await client.get(MCP, n, namespace))["status"]["ready"] for n in ("one", "two")]
        assert shown == ["1/1", "1/2"]  # one pod reported ready of the two "two" asks for
        await settle(op)
        at_rest = len(op.client.writes)

        await reconcile_everything_again(op)
        await reconcile_everything_again(op)
        assert op.client.writes[at_rest:] == []


async def test_resync_after_convergence_sends_no_write(
    control_plane: ControlPlane, client: Client, namespace: str
) -> None:
    await populate(client, namespace)
    async with running_operator(str(control_plane.kubeconfig), namespace=namespace, sync_period=0.5) as op:
        await eventually(lambda: converged(client, namespace), "every object is converged")
        await settle(op)
        at_rest = len(op.client.writes)
        before = op.reconciles()
        # Each resync re-delivers every cached object (children and Secrets map to their owners too).
        await eventually(lambda: op.reconciles() >= before + 3 * 5, "three resyncs were reconciled")
        await settle(op)
        assert op.client.writes[at_rest:] == []
