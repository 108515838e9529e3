"""Tenancy against a real API server: no namespace reaches another team's tools, credentials or routes
without its consent.

The attacks, each as a test: a ToolServer from a namespace the gateway does not admit joins no
backend; an HTTPRoute of another namespace cannot attach to a ToolGateway's Gateway; an MCP that
names another namespace's MCP without a ReferenceGrant is refused and learns nothing of it; with a
grant it resolves, and revoking the grant takes the upstream away again.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import yaml

from agentkube.controllers.gatewayapi import multiplex_name, server_route_name
from agentkube.controllers.kinds import (
    AGENTGATEWAY_BACKEND,
    CONFIG_MAP,
    DEPLOYMENT,
    GATEWAY,
    HTTP_ROUTE,
    MCP,
    NAMESPACE,
    SECRET,
    TOOL_SERVER,
)
from agentkube.runtime.gvk import GVK
from agentkube.testing import ControlPlane
from test.integration.operator_harness import (
    WORKLOAD_CONTROLLERS,
    RunningOperator,
    World,
    condition,
    eventually,
    mcp_object,
    running_operator,
    secret_object,
)
from test.integration.test_toolgateway_controller import tool_gateway, tool_gateway_class, unique
from test.integration.test_toolserver_controller import tool_server

pytestmark = pytest.mark.integration

REFERENCE_GRANT = GVK("gateway.networking.k8s.io", "v1beta1", "ReferenceGrant")


@pytest_asyncio.fixture(loop_scope="session")
async def our_class(world: World) -> str:
    name = unique("it-tenancy")
    await world.apply(tool_gateway_class(name))
    return name


@pytest_asyncio.fixture(loop_scope="session")
async def teams(world: World, control_plane: ControlPlane) -> AsyncIterator[list[str]]:
    """Two more namespaces, one per team."""
    names = [f"it-team-{secrets.token_hex(3)}" for _ in range(2)]
    for name in names:
        await world.namespace(name)
    yield names
    for name in names:
        control_plane.delete_namespace(name)


@pytest_asyncio.fixture(loop_scope="session")
async def mcp_operator(control_plane: ControlPlane) -> AsyncIterator[RunningOperator]:
    """The MCP and LLMGateway controllers, every namespace watched."""
    async with running_operator(str(control_plane.kubeconfig), controllers=WORKLOAD_CONTROLLERS) as op:
        yield op


def _group(kind: str) -> str:
    return "agentkube.io" if kind in ("MCP", "LLMGateway") else "runtime.agentic-layer.ai"


def reference_grant(
    namespace: str,
    name: str,
    from_namespace: str,
    *,
    from_kind: str = "MCP",
    to_kind: str = "MCP",
    to_name: str | None = None,
) -> dict[str, Any]:
    """A ReferenceGrant in ``namespace`` letting ``from_kind`` objects of ``from_namespace`` refer to
    its ``to_kind`` objects (all, or the one named ``to_name``)."""
    to: dict[str, Any] = {"group": _group(to_kind), "kind": to_kind}
    if to_name is not None:
        to["name"] = to_name
    return {
        "apiVersion": REFERENCE_GRANT.api_version,
        "kind": "ReferenceGrant",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "from": [{"group": _group(from_kind), "kind": from_kind, "namespace": from_namespace}],
            "to": [to],
        },
    }


async def targets(world: World, name: str, namespace: str) -> list[str] | None:
    backend = await world.get(AGENTGATEWAY_BACKEND, name, namespace)
    if backend is None:
        return None
    return sorted(t["static"]["host"] for t in backend["spec"]["mcp"]["targets"])


# ------------------------------------------------------------------------------ tool gateways


async def test_tool_server_from_a_namespace_the_gateway_does_not_admit_is_in_no_backend(
    tool_operator: RunningOperator, world: World, namespace: str, teams: list[str], our_class: str
) -> None:
    mine, intruder = teams
    await world.apply(
        tool_gateway("hub", namespace, our_class, allowedToolServers={"namespaces": {"from": "Same"}})
    )
    await world.apply(tool_server("local", namespace, "hub"))
    await world.apply(tool_server("evil", intruder, "hub", namespace))
    await world.apply(tool_server("fine", mine, "hub", namespace))
    local = f"local.{namespace}.svc.cluster.local"
    await eventually(
        lambda: _equals(targets(world, multiplex_name("hub", None), namespace), [local]),
        "only the local server is routed",
    )
    refused = await eventually(
        lambda: _condition(world, TOOL_SERVER, "evil", intruder, "Accepted", "False"), "the intruder is told"
    )
    assert refused["reason"] == "NotAdmittedByToolGateway"
    assert f"ToolGateway {namespace}/hub" in refused["message"]
    assert "spec.allowedToolServers" in refused["message"]
    # No per-server route for it either, in any namespace.
    assert await world.get(HTTP_ROUTE, "evil", intruder) is None
    routes, _ = await world.client.list(HTTP_ROUTE, namespace)
    assert not [r for r in routes if "evil" in r["metadata"]["name"]]
    obj = await world.get(TOOL_SERVER, "evil", intruder)
    assert obj is not None and obj["status"]["gatewayUrl"] == ""

    # A ReferenceGrant in the gateway's namespace lets one namespace in, the selector aside.
    await world.apply(
        reference_grant(
            namespace, "let-mine-in", mine, from_kind="ToolServer", to_kind="ToolGateway", to_name="hub"
        )
    )
    fine = f"fine.{mine}.svc.cluster.local"
    await eventually(
        lambda: _equals(targets(world, multiplex_name("hub", None), namespace), sorted([local, fine])),
        "the granted one joins",
    )
    await eventually(
        lambda: _condition(world, TOOL_SERVER, "fine", mine, "Accepted", "True"), "it is accepted"
    )
    assert await targets(world, multiplex_name("hub", None), namespace) == sorted([local, fine])


async def test_gateway_selector_admits_a_namespace_once_it_is_labelled(
    tool_operator: RunningOperator, world: World, namespace: str, teams: list[str], our_class: str
) -> None:
    mine, _ = teams
    selector = {"matchLabels": {"agentkube.io/tool-gateway": "hub"}}
    await world.apply(
        tool_gateway(
            "hub",
            namespace,
            our_class,
            allowedToolServers={"namespaces": {"from": "Selector", "selector": selector}},
        )
    )
    await world.apply(tool_server("search", mine, "hub", namespace))
    refused = await eventually(
        lambda: _condition(world, TOOL_SERVER, "search", mine, "Accepted", "False"), "not admitted yet"
    )
    assert refused["reason"] == "NotAdmittedByToolGateway"
    assert await targets(world, multiplex_name("hub", None), namespace) is None
    await world.client.patch(NAMESPACE, mine, None, {"metadata": {"labels": selector["matchLabels"]}})
    search = f"search.{mine}.svc.cluster.local"
    await eventually(
        lambda: _equals(targets(world, multiplex_name("hub", None), namespace), [search]), "admitted"
    )
    await eventually(
        lambda: _condition(world, TOOL_SERVER, "search", mine, "Accepted", "True"), "and told so"
    )


async def test_route_of_another_namespace_cannot_attach_to_the_gateway(
    tool_operator: RunningOperator, world: World, namespace: str, teams: list[str], our_class: str
) -> None:
    _, intruder = teams
    await world.apply(tool_gateway("hub", namespace, our_class))
    await world.apply(tool_server("local", intruder, "hub", namespace))
    gateway = await eventually(lambda: world.get(GATEWAY, "hub", namespace), "the Gateway exists")
    # The Gateway takes routes from its own namespace only: a route elsewhere that names it (an Exact
    # /mcp shadowing the multiplex) is not allowed to attach, whatever the Gateway's controller.
    assert gateway["spec"]["listeners"][0]["allowedRoutes"] == {"namespaces": {"from": "Same"}}
    # The per-server route of a server in another namespace lives in the gateway's namespace, owned
    # by the ToolGateway; the server's namespace holds none.
    route_name = server_route_name("hub", intruder, "local")
    route = await eventually(lambda: world.get(HTTP_ROUTE, route_name, namespace), "the server's route")
    assert route["metadata"]["ownerReferences"][0]["kind"] == "ToolGateway"
    assert route["spec"]["parentRefs"][0]["name"] == "hub"
    assert route["spec"]["rules"][0]["matches"] == [
        {"path": {"type": "PathPrefix", "value": f"/{intruder}/local/mcp"}}
    ]
    await eventually(
        lambda: _condition(world, TOOL_SERVER, "local", intruder, "Accepted", "True"), "accepted"
    )
    assert await world.get(HTTP_ROUTE, "local", intruder) is None
    assert await world.get(AGENTGATEWAY_BACKEND, "local", intruder) is None
    # The server goes: its route goes with it.
    await world.delete(TOOL_SERVER, "local", intruder)
    await eventually(lambda: _gone(world, HTTP_ROUTE, route_name, namespace), "its route is pruned")


# ------------------------------------------------------------------------------ MCP references


async def test_cross_namespace_mcp_ref_without_a_grant_is_refused_and_reveals_nothing(
    mcp_operator: RunningOperator, world: World, teams: list[str]
) -> None:
    owner, borrower = teams
    await world.apply(secret_object(owner, "pat", {"token": "team-a-secret"}))
    upstream = {
        "name": "github",
        "kind": "http",
        "endpoint": "https://mcp.github.com",
        "auth": {"mode": "bearer", "secretRef": {"name": "pat", "key": "token"}},
    }
    await world.apply(mcp_object(owner, "github-tools", [upstream], port=8181))

    def borrowing(name: str, target: str) -> dict[str, Any]:
        ref = {"name": "theirs", "kind": "mcpRef", "mcpRef": {"namespace": owner, "name": target}}
        return mcp_object(borrower, name, [ref])

    await world.apply(borrowing("existing", "github-tools"))
    await world.apply(borrowing("missing", "no-such-mcp"))
    existing = await eventually(
        lambda: _condition(world, MCP, "existing", borrower, "Accepted", "False"), "the borrower is refused"
    )
    missing = await eventually(
        lambda: _condition(world, MCP, "missing", borrower, "Accepted", "False"), "the other one too"
    )
    assert existing["reason"] == missing["reason"] == "RefNotPermitted"
    # Whether the target exists, and on which port, is not for the borrower to learn.
    assert existing["message"].replace("existing", "X").replace("github-tools", "Y") == missing[
        "message"
    ].replace("missing", "X").replace("no-such-mcp", "Y")
    assert "8181" not in existing["message"]
    for name in ("existing", "missing"):
        obj = await world.get(MCP, name, borrower)
        assert obj is not None and "8181" not in yaml.safe_dump(obj["status"])
        assert await world.get(DEPLOYMENT, name, borrower) is None


async def test_cross_namespace_mcp_ref_resolves_with_a_grant_and_revoking_it_removes_the_upstream(
    mcp_operator: RunningOperator, world: World, teams: list[str]
) -> None:
    owner, borrower = teams
    await world.apply(mcp_object(owner, "shared", [{"name": "up", "kind": "http", "endpoint": "http://up"}]))
    local = {"name": "local", "kind": "http", "endpoint": "http://local"}
    ref = {"name": "theirs", "kind": "mcpRef", "mcpRef": {"namespace": owner, "name": "shared"}}
    await world.apply(mcp_object(borrower, "agent-tools", [local, ref]))
    await eventually(lambda: _condition(world, MCP, "agent-tools", borrower, "Accepted", "False"), "refused")
    shared_url = f"http://shared.{owner}.svc.cluster.local:8080"

    async def config() -> str:
        cm = await world.get(CONFIG_MAP, "agent-tools-config", borrower)
        return str((cm or {}).get("data", {}).get("config.yaml", ""))

    # Refused, the proxy still serves what it may: the local upstream, not theirs.
    await eventually(lambda: _contains(config(), "http://local"), "the proxy runs with the local upstream")
    assert shared_url not in await config()

    await world.apply(reference_grant(owner, "let-borrower-in", borrower, to_name="shared"))
    await eventually(
        lambda: _condition(world, MCP, "agent-tools", borrower, "Accepted", "True"), "accepted with a grant"
    )
    await eventually(lambda: _contains(config(), shared_url), "the upstream is configured")

    await world.delete(REFERENCE_GRANT, "let-borrower-in", owner)
    refused = await eventually(
        lambda: _condition(world, MCP, "agent-tools", borrower, "Accepted", "False"), "refused once revoked"
    )
    assert refused["reason"] == "RefNotPermitted"

    async def upstream_gone() -> bool:
        text = await config()
        return "http://local" in text and shared_url not in text

    await eventually(upstream_gone, "the revoked upstream is removed from the proxy")


async def test_revoking_a_grant_while_another_problem_holds_the_config_back_stops_the_proxy(
    mcp_operator: RunningOperator, world: World, teams: list[str]
) -> None:
    owner, borrower = teams
    await world.apply(mcp_object(owner, "shared", [{"name": "up", "kind": "http", "endpoint": "http://up"}]))
    await world.apply(reference_grant(owner, "let-borrower-in", borrower, to_name="shared"))
    await world.apply(secret_object(borrower, "local-pat", {"token": "t"}))
    local = {
        "name": "local",
        "kind": "http",
        "endpoint": "http://local",
        "auth": {"mode": "bearer", "secretRef": {"name": "local-pat", "key": "token"}},
    }
    ref = {"name": "theirs", "kind": "mcpRef", "mcpRef": {"namespace": owner, "name": "shared"}}
    await world.apply(mcp_object(borrower, "agent-tools", [local, ref]))
    await eventually(lambda: world.get(DEPLOYMENT, "agent-tools", borrower), "the proxy runs with both")
    # Another problem first (the last good config stays), then the grant goes.
    await world.delete(SECRET, "local-pat", borrower)
    await eventually(lambda: _condition(world, MCP, "agent-tools", borrower, "Accepted", "False"), "broken")
    assert await world.get(DEPLOYMENT, "agent-tools", borrower) is not None, (
        "a missing Secret alone stops nothing"
    )
    await world.delete(REFERENCE_GRANT, "let-borrower-in", owner)
    await eventually(
        lambda: _gone(world, DEPLOYMENT, "agent-tools", borrower),
        "no proxy forwards through the revoked grant",
    )
    assert await world.get(CONFIG_MAP, "agent-tools-config", borrower) is None


# ------------------------------------------------------------------------------------ helpers


async def _equals(value: Any, expected: Any) -> bool:
    return await value == expected


async def _contains(value: Any, part: str) -> bool:
    return part in await value


async def _gone(world: World, gvk: GVK, name: str, namespace: str) -> bool:
    return await world.get(gvk, name, namespace) is None


async def _condition(
    world: World, gvk: GVK, name: str, namespace: str, ctype: str, status: str
) -> dict[str, Any] | None:
    found = condition(await world.get(gvk, name, namespace), ctype)
    return found if found is not None and found["status"] == status else None
