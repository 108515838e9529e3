"""Why a proxy cannot start, from its Pods to the MCP's and the LLMGateway's Available and Ready.

There is no kubelet in this tier: the tests play it, creating the Deployment's Pods and writing
their status as a kubelet does (a container waiting with ``CreateContainerConfigError``, a
``CrashLoopBackOff`` whose last termination carries the program's log tail), and play
kube-controller-manager for the Deployment's status (``set_available``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentkube.controllers.kinds import DEPLOYMENT, LLM_GATEWAY, MCP, POD
from agentkube.controllers.pods import POD_SELECTOR, pod_summary
from agentkube.runtime.client import Client
from agentkube.runtime.errors import AlreadyExists
from agentkube.runtime.gvk import GVK, ObjectKey
from test.integration.operator_harness import (
    HTTP_UPSTREAM,
    IMAGE,
    RunningOperator,
    condition,
    eventually,
    get_or_none,
    mcp_object,
    secret_object,
    set_available,
)

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "samples" / "agentkube_v1alpha1_llmgateway.yaml"

CONFIG_ERROR = "agentkube mcp-proxy: config.yaml: upstreams[0].url: 'mcp.github.com' is not an http(s) URL"

RUNNING = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}


def container_status(
    program: str,
    state: dict[str, Any],
    last: dict[str, Any] | None = None,
    *,
    ready: bool = False,
    restarts: int = 0,
) -> dict[str, Any]:
    return {
        "name": program,
        "image": IMAGE,
        "imageID": "",
        "ready": ready,
        "started": ready,
        "restartCount": restarts,
        "state": state,
        "lastState": last or {},
    }


def config_error(restarts: int, started: str) -> dict[str, Any]:
    """A container crash-looping on its config, as the kubelet shows it at restart ``restarts``."""
    terminated = {
        "exitCode": 1,
        "reason": "Error",
        "message": CONFIG_ERROR + "\n",
        "startedAt": started,
        "finishedAt": started,
        "containerID": f"local://{restarts}",
    }
    return container_status(
        "mcp-proxy",
        {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {10 * restarts}s restarting failed",
            }
        },
        {"terminated": terminated},
        restarts=restarts,
    )


class Kubelet:
    """Plays the kubelet for one Deployment's pods: creates them and writes their status."""

    def __init__(self, client: Client, namespace: str, owner: str, program: str) -> None:
        self.client, self.namespace, self.owner, self.program = client, namespace, owner, program

    async def pod(self, suffix: str) -> str:
        """A Pod as the Deployment's ReplicaSet makes it (its template's labels), bound to a node."""
        # The ServiceAccount admission plugin wants the namespace's default account, which
        # kube-controller-manager would make.
        with contextlib.suppress(AlreadyExists):
            await self.client.create(
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": "default", "namespace": self.namespace},
                }
            )
        deployment = await self.client.get(DEPLOYMENT, self.owner, self.namespace)
        template = deployment["spec"]["template"]
        name = f"{self.owner}-7d9f-{suffix}"
        await self.client.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "labels": {**template["metadata"]["labels"], "pod-template-hash": "7d9f"},
                },
                "spec": {**template["spec"], "nodeName": "node-1"},
            }
        )
        return name

    async def report(self, name: str, *containers: dict[str, Any], phase: str = "Running") -> str:
        """Write the pod's status; returns the resourceVersion it produced."""
        ready = all(c["ready"] for c in containers)
        status = {
            "phase": phase,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Ready", "status": "True" if ready else "False"},
            ],
            "containerStatuses": list(containers),
        }
        patched = await self.client.patch(POD, name, self.namespace, {"status": status}, subresource="status")
        return str(patched["metadata"]["resourceVersion"])


async def condition_with(
    client: Client, gvk: GVK, namespace: str, name: str, ctype: str, check: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        c = condition(await client.get(gvk, name, namespace), ctype)
        return c if c is not None and check(c) else None

    result: dict[str, Any] = await eventually(found, f"{gvk.kind} {name}: {ctype} as expected")
    return result


async def available_and_ready(
    client: Client, gvk: GVK, namespace: str, name: str, status: str, reason: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    def wanted(c: dict[str, Any]) -> bool:
        return (c["status"], c["reason"]) == (status, reason)

    available = await condition_with(client, gvk, namespace, name, "Available", wanted)
    ready = await condition_with(
        client,
        gvk,
        namespace,
        name,
        "Ready",
        lambda c: wanted(c) if status != "True" else c["status"] == "True",
    )
    return available, ready


async def start_mcp(client: Client, namespace: str, name: str = "tools") -> Kubelet:
    await client.apply(secret_object(namespace, "pat", {"token": "t"}), field_manager="test")
    await client.apply(mcp_object(namespace, name, [HTTP_UPSTREAM]), field_manager="test")
    await eventually(lambda: get_or_none(client, DEPLOYMENT, name, namespace), "the Deployment exists")
    await set_available(client, namespace, name, False)
    return Kubelet(client, namespace, name, "mcp-proxy")


def status_writes(op: RunningOperator, kind: str) -> int:
    return sum(1 for w in op.client.writes_of("apply", kind) if w.subresource == "status")


async def test_missing_secret_at_the_pod_makes_the_mcp_not_ready_naming_pod_and_container(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    kubelet = await start_mcp(client, namespace)
    pod = await kubelet.pod("abcde")
    waiting = {
        "waiting": {
            "reason": "CreateContainerConfigError",
            "message": f"couldn't find key token in Secret {namespace}/pat",
        }
    }
    await kubelet.report(pod, container_status("mcp-proxy", waiting), phase="Pending")

    available, ready = await available_and_ready(
        client, MCP, namespace, "tools", "False", "CreateContainerConfigError"
    )
    assert available["message"] == (
        f"Deployment {namespace}/tools is not available: pod {namespace}/{pod}: container mcp-proxy: "
        f"CreateContainerConfigError: couldn't find key token in Secret {namespace}/pat"
    )
    assert ready["message"] == available["message"]
    accepted = condition(await client.get(MCP, "tools", namespace), "Accepted")
    assert accepted is not None and accepted["status"] == "True"


async def test_crash_loop_shows_the_programs_message_and_recovery_clears_it(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    kubelet = await start_mcp(client, namespace)
    pod = await kubelet.pod("fghij")
    await kubelet.report(pod, config_error(1, "2026-01-01T00:00:10Z"))

    available, _ = await available_and_ready(client, MCP, namespace, "tools", "False", "CrashLoopBackOff")
    assert available["message"] == (
        f"Deployment {namespace}/tools is not available: pod {namespace}/{pod}: container mcp-proxy: "
        f"CrashLoopBackOff: exit 1: {CONFIG_ERROR}"
    )

    # The user fixes the config: the container runs, is ready, the Deployment becomes available.
    ok = container_status("mcp-proxy", RUNNING, ready=True, restarts=2)
    await kubelet.report(pod, ok)
    await set_available(client, namespace, "tools", True)
    available, ready = await available_and_ready(
        client, MCP, namespace, "tools", "True", "DeploymentAvailable"
    )
    assert (
        available["message"]
        == f"Deployment {namespace}/tools is available: Deployment has minimum availability."
    )
    assert ready["reason"] == "Ready"


async def test_restarts_that_look_the_same_write_no_status(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    kubelet = await start_mcp(client, namespace)
    pod = await kubelet.pod("klmno")
    await kubelet.report(pod, config_error(1, "2026-01-01T00:00:10Z"))
    await available_and_ready(client, MCP, namespace, "tools", "False", "CrashLoopBackOff")
    await eventually(operator.idle, "the controllers are idle")
    before = status_writes(operator, "MCP")

    # Further restarts: new counts, times, container ids, back-off messages; the same failure.
    pods = operator.manager.cache.informer(POD, label_selector=POD_SELECTOR, transform=pod_summary)
    for restart in range(2, 5):
        version = await kubelet.report(pod, config_error(restart, f"2026-01-01T00:0{restart}:00Z"))

        def seen(version: str = version) -> bool:
            cached = pods.store.get(ObjectKey(namespace, pod))
            return cached is not None and int(cached["metadata"]["resourceVersion"]) >= int(version)

        await eventually(seen, "the cache saw the restart")
        await eventually(operator.idle, "the controllers are idle")
    assert status_writes(operator, "MCP") == before

    # A real change still gets through.
    unready = container_status("mcp-proxy", RUNNING, restarts=5)
    await kubelet.report(pod, unready)
    await available_and_ready(client, MCP, namespace, "tools", "False", "ContainerNotReady")
    assert status_writes(operator, "MCP") == before + 1


async def test_a_failing_pod_of_an_available_mcp_makes_it_not_ready_but_keeps_it_available(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    kubelet = await start_mcp(client, namespace)
    old, new = await kubelet.pod("old00"), await kubelet.pod("new00")
    await kubelet.report(old, container_status("mcp-proxy", RUNNING, ready=True))
    await set_available(client, namespace, "tools", True)
    await available_and_ready(client, MCP, namespace, "tools", "True", "DeploymentAvailable")

    await kubelet.report(new, config_error(1, "2026-01-01T00:00:10Z"))
    available = await condition_with(
        client, MCP, namespace, "tools", "Available", lambda c: f"pod {namespace}/{new}" in c["message"]
    )
    assert (available["status"], available["reason"]) == ("True", "DeploymentAvailable")
    assert f"CrashLoopBackOff: exit 1: {CONFIG_ERROR}" in available["message"]
    # Old pods serve, new ones crash: a rollout stuck on a bad config is not what the spec asks for.
    ready = await condition_with(client, MCP, namespace, "tools", "Ready", lambda c: c["status"] == "False")
    assert ready["reason"] == "CrashLoopBackOff"
    assert ready["message"].startswith(f"Available, but pod {namespace}/{new}: container mcp-proxy:")

    # The pod goes (its ReplicaSet scales down): being deleted (it lingers with a deletionTimestamp
    # until its kubelet confirms), it no longer counts.
    await client.delete(POD, new, namespace)
    await condition_with(
        client,
        MCP,
        namespace,
        "tools",
        "Available",
        lambda c: "pod " not in c["message"] and c["status"] == "True",
    )
    await condition_with(client, MCP, namespace, "tools", "Ready", lambda c: c["reason"] == "Ready")


async def test_llmgateway_reports_its_pods_the_same_way(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    gateway = yaml.safe_load(SAMPLE.read_text())
    gateway["metadata"]["namespace"] = namespace
    name = gateway["metadata"]["name"]
    for obj in (
        secret_object(namespace, "anthropic-key", {"api-key": "k"}),
        secret_object(namespace, f"{name}-api-keys", {"team-a": "a"}),
        gateway,
    ):
        await client.apply(obj, field_manager="test")
    await eventually(lambda: get_or_none(client, DEPLOYMENT, name, namespace), "the Deployment exists")
    await set_available(client, namespace, name, False)
    kubelet = Kubelet(client, namespace, name, "llm-gateway")
    pod = await kubelet.pod("pqrst")
    waiting = {
        "waiting": {"reason": "CreateContainerConfigError", "message": 'secret "anthropic-key" not found'}
    }
    await kubelet.report(pod, container_status("llm-gateway", waiting), phase="Pending")

    available, ready = await available_and_ready(
        client, LLM_GATEWAY, namespace, name, "False", "CreateContainerConfigError"
    )
    assert (
        f'pod {namespace}/{pod}: container llm-gateway: CreateContainerConfigError: secret "anthropic-key"'
        in (available["message"])
    )
    assert ready["message"] == available["message"]

    await kubelet.report(pod, container_status("llm-gateway", RUNNING, ready=True))
    await set_available(client, namespace, name, True)
    await available_and_ready(client, LLM_GATEWAY, namespace, name, "True", "DeploymentAvailable")
