"""Who may call, against a real API server: the NetworkPolicy of each MCP, LLMGateway and ToolServer, in
full, following the ReferenceGrants that name it; and ``network_policies`` off deletes them all.

(The API server stores NetworkPolicies; whether a CNI enforces them is the cluster's. What is pinned
here is what agentkube asks for.)
"""

from __future__ import annotations

import types
from typing import Any

import pytest

from agentkube.controllers import OperatorOptions, llmgateway, mcp
from agentkube.controllers.kinds import MCP, NETWORK_POLICY
from agentkube.testing import ControlPlane
from test.integration.operator_harness import (
    RunningOperator,
    World,
    eventually,
    mcp_object,
    running_operator,
    secret_object,
)
from test.integration.test_tenancy import REFERENCE_GRANT, reference_grant
from test.integration.test_toolgateway_controller import tool_gateway, tool_gateway_class, unique
from test.integration.test_toolserver_controller import tool_server

pytestmark = pytest.mark.integration


def from_namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def policy_spec(
    app: str, instance: str, port: str, callers: list[str], open_ports: list[str]
) -> dict[str, Any]:
    ingress: list[dict[str, Any]] = [
        {
            "from": [{"podSelector": {}}, *(from_namespace(n) for n in callers)],
            "ports": [{"protocol": "TCP", "port": port}],
        }
    ]
    if open_ports:
        ingress.append({"ports": [{"protocol": "TCP", "port": p} for p in open_ports]})
    return {
        "podSelector": {
            "matchLabels": {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": instance}
        },
        "policyTypes": ["Ingress"],
        "ingress": ingress,
    }


async def policy_is(world: World, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any] | None:
    found = await world.get(NETWORK_POLICY, name, namespace)
    return found if found is not None and found["spec"] == spec else None


def with_options(module: types.ModuleType, **options: Any) -> types.SimpleNamespace:
    """A controller module whose ``setup`` gets the harness's options with ``options`` changed."""

    def setup(manager: Any, given: OperatorOptions) -> None:
        module.setup(manager, OperatorOptions(**{**given.__dict__, **options}))

    return types.SimpleNamespace(setup=setup, __name__=module.__name__)


async def test_mcp_and_llm_gateway_policies_admit_their_namespace_and_granted_ones_and_go_when_turned_off(
    control_plane: ControlPlane, world: World, namespace: str
) -> None:
    caller = unique("it-caller")
    await world.namespace(caller)
    await world.apply(mcp_object(namespace, "tools", [{"name": "x", "kind": "http", "endpoint": "http://x"}]))
    await world.apply(secret_object(namespace, "anthropic-key", {"api-key": "k"}))
    await world.apply(
        {
            "apiVersion": "agentkube.io/v1alpha1",
            "kind": "LLMGateway",
            "metadata": {"name": "models", "namespace": namespace},
            "spec": {
                "upstreams": [
                    {
                        "name": "anthropic",
                        "provider": "anthropic",
                        "credentialsRef": {"name": "anthropic-key", "key": "api-key"},
                        "models": ["claude-sonnet-4-6"],
                    }
                ]
            },
        }
    )
    kubeconfig = str(control_plane.kubeconfig)
    controllers: list[Any] = [mcp, llmgateway]
    async with running_operator(kubeconfig, namespace=namespace, controllers=controllers):
        mcp_alone = policy_spec("mcp-proxy", "tools", "http", [], ["metrics"])
        await eventually(lambda: policy_is(world, "tools", namespace, mcp_alone), "the MCP's policy")
        gateway_alone = policy_spec("llm-gateway", "models", "http", [], ["metrics"])
        await eventually(lambda: policy_is(world, "models", namespace, gateway_alone), "the gateway's policy")
        policy = await world.get(NETWORK_POLICY, "tools", namespace)
        assert policy is not None and policy["metadata"]["ownerReferences"][0]["kind"] == "MCP"
        # One field manager per controller: the MCP controller's writes are its own, the gateway's
        # theirs (the client's reads keep managedFields; the cache drops them).
        for gvk, name, manager in (
            (NETWORK_POLICY, "tools", "agentkube-mcp"),
            (NETWORK_POLICY, "models", "agentkube-llmgateway"),
            (MCP, "tools", "agentkube-mcp"),
        ):
            live = await world.client.get(gvk, name, namespace)
            managers = {
                f["manager"] for f in live["metadata"]["managedFields"] if f["manager"] != "agentkube-test"
            }
            assert managers == {manager}, (gvk.kind, name, managers)

        # A grant to the MCP by name, and one to every LLMGateway of the namespace, let the caller in.
        await world.apply(reference_grant(namespace, "mcp-callers", caller, to_name="tools"))
        await world.apply(
            reference_grant(namespace, "llm-callers", caller, from_kind="MCP", to_kind="LLMGateway")
        )
        granted = policy_spec("mcp-proxy", "tools", "http", [caller], ["metrics"])
        await eventually(lambda: policy_is(world, "tools", namespace, granted), "the MCP admits the caller")
        gateway_granted = policy_spec("llm-gateway", "models", "http", [caller], ["metrics"])
        await eventually(
            lambda: policy_is(world, "models", namespace, gateway_granted), "the gateway admits the caller"
        )
        # Revoked: the caller is out again.
        await world.delete(REFERENCE_GRANT, "mcp-callers", namespace)
        await eventually(lambda: policy_is(world, "tools", namespace, mcp_alone), "the caller is out again")

    off: list[Any] = [with_options(m, network_policies=False) for m in controllers]
    async with running_operator(kubeconfig, namespace=namespace, controllers=off):
        for name in ("tools", "models"):
            await eventually(lambda n=name: _gone(world, n, namespace), f"the policy of {name} is deleted")


async def test_tool_server_policy_admits_its_namespace_and_its_gateways(
    tool_operator: RunningOperator, world: World, namespace: str
) -> None:
    cls = unique("it-netpol")
    await world.apply(tool_gateway_class(cls))
    home = unique("it-tools")
    await world.namespace(home)
    await world.apply(tool_gateway("hub", namespace, cls))
    await world.apply(tool_server("search", home, "hub", namespace))
    routed = policy_spec("tool-server", "search", "mcp", [namespace], [])
    await eventually(lambda: policy_is(world, "search", home, routed), "the server admits its gateway")
    # Detached from the gateway: its own namespace only.
    await world.apply(tool_server("search", home))
    alone = policy_spec("tool-server", "search", "mcp", [], [])
    await eventually(lambda: policy_is(world, "search", home, alone), "only its namespace")


async def _gone(world: World, name: str, namespace: str) -> bool:
    return await world.get(NETWORK_POLICY, name, namespace) is None
