"""ToolServer controller against a real API server: its workload, its status, and the routes of its
ToolGateway (per server and multiplex, all in the gateway's namespace) following servers that come,
move, re-point and go."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from agentkube.controllers.gatewayapi import multiplex_name, server_route_name
from agentkube.controllers.kinds import (
    AGENTGATEWAY_BACKEND,
    DEPLOYMENT,
    HTTP_ROUTE,
    SERVICE,
    TOOL_GATEWAY,
    TOOL_SERVER,
)
from agentkube.testing import ControlPlane
from test.integration.operator_harness import RunningOperator, World, condition, eventually, set_available
from test.integration.test_toolgateway_controller import (
    status_condition,
    tool_gateway,
    tool_gateway_class,
    unique,
    wait_condition,
)

pytestmark = pytest.mark.integration


def tool_server(
    name: str,
    namespace: str,
    gateway: str | None = None,
    gateway_namespace: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"image": f"{name}:1", "port": 8000, **spec}
    if gateway is not None:
        body["toolGatewayRef"] = {"name": gateway}
        if gateway_namespace is not None:
            body["toolGatewayRef"]["namespace"] = gateway_namespace
    return {
        "apiVersion": TOOL_SERVER.api_version,
        "kind": "ToolServer",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


@pytest_asyncio.fixture(loop_scope="session")
async def our_class(world: World) -> str:
    name = unique("it-servers")
    await world.apply(tool_gateway_class(name))
    return name


@pytest_asyncio.fixture(loop_scope="session")
async def namespaces(world: World, control_plane: ControlPlane) -> AsyncIterator[list[str]]:
    """Three more namespaces for servers to live and move in."""
    names = [f"it-ts-{secrets.token_hex(3)}" for _ in range(3)]
    for name in names:
        await world.namespace(name)
    yield names
    for name in names:
        control_plane.delete_namespace(name)


async def targets(world: World, name: str, namespace: str) -> list[str] | None:
    backend = await world.get(AGENTGATEWAY_BACKEND, name, namespace)
    if backend is None:
        return None
    return [t["name"] for t in backend["spec"]["mcp"]["targets"]]


async def multiplex(world: World, gateway: str, namespace: str) -> dict[str, list[str]] | None:
    """Path prefix -> target names of every multiplex route of a ToolGateway (``/mcp``,
    ``/<ns>/mcp``; the per-server ones have a segment more); None while a route lacks its backend
    (the controller writes them one after the other)."""
    routes, _ = await world.client.list(HTTP_ROUTE, namespace)
    backends, _ = await world.client.list(AGENTGATEWAY_BACKEND, namespace)

    def multiplexed(route: dict[str, Any]) -> bool:
        rule = route["spec"]["rules"][0]
        of_gateway = route["spec"]["parentRefs"][0]["name"] == gateway
        return of_gateway and rule["matches"][0]["path"]["value"].count("/") <= 2

    mine = [r for r in routes if multiplexed(r)]
    have = {b["metadata"]["name"] for b in backends}
    if any(r["spec"]["rules"][0]["backendRefs"][0]["name"] not in have for r in mine):
        return None
    found: dict[str, list[str]] = {}
    for route in mine:
        rule = route["spec"]["rules"][0]
        backend = rule["backendRefs"][0]["name"]
        # Targets are ordered by namespace and name; the test's namespaces are random, so compare sets.
        found[rule["matches"][0]["path"]["value"]] = sorted(await targets(world, backend, namespace) or [])
    return found


async def wait_multiplex(world: World, gateway: str, namespace: str, expected: dict[str, list[str]]) -> None:
    async def check() -> bool:
        return await multiplex(world, gateway, namespace) == {k: sorted(v) for k, v in expected.items()}

    await eventually(check, f"the multiplex routes of {namespace}/{gateway} are {expected}")


async def test_server_without_gateway_runs_without_routes_and_reports_availability(
    tool_operator: RunningOperator, world: World, namespace: str
) -> None:
    await world.apply(
        tool_server(
            "solo",
            namespace,
            transportType="sse",
            replicas=2,
            command=["serve"],
            envFrom=[{"secretRef": {"name": "solo-env"}}],
            resources={"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}},
        )
    )
    deployment = await eventually(lambda: world.get(DEPLOYMENT, "solo", namespace), "the Deployment exists")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] == 2
    assert container["command"] == ["serve"]
    assert container["envFrom"] == [{"secretRef": {"name": "solo-env"}}]
    assert container["resources"] == {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}
    assert deployment["metadata"]["labels"]["runtime.agentic-layer.ai/transport"] == "sse"
    available = await wait_condition(world, TOOL_SERVER, "solo", namespace, "Available", status="Unknown")
    assert available["reason"] == "DeploymentStatusUnknown"
    # Children are applied together and status after all of them: by now the Service exists too.
    assert await world.get(SERVICE, "solo", namespace) is not None
    obj = await world.get(TOOL_SERVER, "solo", namespace)
    assert obj is not None
    # transportType sse: the path defaults to /sse.
    assert obj["status"]["url"] == f"http://solo.{namespace}.svc.cluster.local:8000/sse"
    assert obj["status"]["gatewayUrl"] == ""
    assert await world.get(HTTP_ROUTE, "solo", namespace) is None
    await set_available(world.client, namespace, "solo", True, replicas=2)
    await wait_condition(world, TOOL_SERVER, "solo", namespace, "Ready", status="True", reason="Ready")
    await set_available(world.client, namespace, "solo", False, replicas=2)
    await wait_condition(
        world, TOOL_SERVER, "solo", namespace, "Ready", status="False", reason="DeploymentUnavailable"
    )


async def test_missing_gateway_is_reported_and_the_server_recovers_when_it_appears(
    tool_operator: RunningOperator, world: World, namespace: str, our_class: str
) -> None:
    await world.apply(tool_server("weather", namespace, "later", transportType="sse"))
    missing = await wait_condition(
        world, TOOL_SERVER, "weather", namespace, "Accepted", status="False", reason="ToolGatewayNotFound"
    )
    assert f"ToolGateway {namespace}/later not found" in missing["message"]
    # The workload runs meanwhile.
    assert await world.get(DEPLOYMENT, "weather", namespace) is not None
    assert await world.get(HTTP_ROUTE, "weather", namespace) is None

    await world.apply(tool_gateway("later", namespace, our_class))
    await wait_condition(world, TOOL_SERVER, "weather", namespace, "Accepted", status="True")
    obj = await world.get(TOOL_SERVER, "weather", namespace)
    assert obj is not None
    assert (
        obj["status"]["gatewayUrl"] == f"http://later.{namespace}.svc.cluster.local/{namespace}/weather/mcp"
    )
    # The server is Accepted once the gateway exists; the gateway's own reconcile writes the routes.
    backend = await eventually(
        lambda: world.get(AGENTGATEWAY_BACKEND, server_route_name("later", namespace, "weather"), namespace),
        "the gateway's backend for the server",
    )
    assert backend["spec"]["mcp"]["targets"] == [
        {
            "name": "weather",
            "static": {
                "host": f"weather.{namespace}.svc.cluster.local",
                "port": 8000,
                "path": "/sse",
                "protocol": "SSE",
            },
        }
    ]
    route = await eventually(
        lambda: world.get(HTTP_ROUTE, server_route_name("later", namespace, "weather"), namespace),
        "the server's route",
    )
    assert route["spec"]["rules"][0]["matches"] == [
        {"path": {"type": "PathPrefix", "value": f"/{namespace}/weather/mcp"}}
    ]
    await wait_multiplex(
        world,
        "later",
        namespace,
        {"/mcp": [f"{namespace}-weather"], f"/{namespace}/mcp": ["weather"]},
    )

    # The gateway goes: the server says so again (its routes were the gateway's children, which the
    # garbage collector removes with it; there is none here).
    await world.delete(TOOL_GATEWAY, "later", namespace)
    await wait_condition(
        world, TOOL_SERVER, "weather", namespace, "Accepted", status="False", reason="ToolGatewayNotFound"
    )


async def _gone(world: World, gvk: Any, name: str, namespace: str) -> bool:
    return await world.get(gvk, name, namespace) is None


async def test_multiplex_routes_follow_servers_added_moved_repointed_and_deleted(
    tool_operator: RunningOperator, world: World, namespace: str, namespaces: list[str], our_class: str
) -> None:
    a, b, c = namespaces
    await world.apply(tool_gateway("hub", namespace, our_class))
    await world.apply(tool_gateway("other", namespace, our_class))
    await wait_condition(world, TOOL_GATEWAY, "hub", namespace, "Accepted", status="True")
    await wait_multiplex(world, "hub", namespace, {})  # no servers: no backend can exist

    # Added.
    await world.apply(tool_server("search", a, "hub", namespace))
    await world.apply(tool_server("weather", b, "hub", namespace))
    await world.apply(tool_server("maps", b, "hub", namespace))
    await wait_multiplex(
        world,
        "hub",
        namespace,
        {
            "/mcp": [f"{a}-search", f"{b}-maps", f"{b}-weather"],
            f"/{a}/mcp": ["search"],
            f"/{b}/mcp": ["maps", "weather"],
        },
    )
    routed = await wait_condition(world, TOOL_GATEWAY, "hub", namespace, "ToolServersRouted", status="True")
    assert routed["message"] == "3 ToolServers (2 namespaces) are routed at /mcp."

    # Moved: search leaves a (deleted there, created in c). a's routes go, c's come; names stay stable.
    await world.delete(TOOL_SERVER, "search", a)
    await world.apply(tool_server("search", c, "hub", namespace))
    await wait_multiplex(
        world,
        "hub",
        namespace,
        {
            "/mcp": [f"{b}-maps", f"{b}-weather", f"{c}-search"],
            f"/{b}/mcp": ["maps", "weather"],
            f"/{c}/mcp": ["search"],
        },
    )

    # Re-pointed: weather moves to the other gateway; both gateways follow.
    await world.apply(tool_server("weather", b, "other", namespace))
    await wait_multiplex(
        world,
        "hub",
        namespace,
        {"/mcp": [f"{b}-maps", f"{c}-search"], f"/{b}/mcp": ["maps"], f"/{c}/mcp": ["search"]},
    )
    await wait_multiplex(world, "other", namespace, {"/mcp": [f"{b}-weather"], f"/{b}/mcp": ["weather"]})
    route = await world.get(HTTP_ROUTE, server_route_name("other", b, "weather"), namespace)
    assert route is not None and route["spec"]["parentRefs"][0]["name"] == "other"
    await eventually(
        lambda: _gone(world, HTTP_ROUTE, server_route_name("hub", b, "weather"), namespace),
        "its route on hub is deleted",
    )

    # Detached: maps drops its toolGatewayRef; its own route goes, and it leaves the multiplex.
    await world.apply(tool_server("maps", b))
    await wait_multiplex(world, "hub", namespace, {"/mcp": [f"{c}-search"], f"/{c}/mcp": ["search"]})
    maps = server_route_name("hub", b, "maps")
    await eventually(
        lambda: _gone(world, HTTP_ROUTE, maps, namespace), "the detached server's route is deleted"
    )
    await eventually(lambda: _gone(world, AGENTGATEWAY_BACKEND, maps, namespace), "its backend too")

    # Deleted: the last servers go, and with them every multiplex backend and route.
    await world.delete(TOOL_SERVER, "search", c)
    await world.delete(TOOL_SERVER, "weather", b)
    await wait_multiplex(world, "hub", namespace, {})
    await wait_multiplex(world, "other", namespace, {})
    routed = await wait_condition(world, TOOL_GATEWAY, "hub", namespace, "ToolServersRouted", status="True")
    assert routed["message"] == "0 ToolServers (0 namespaces) are routed at /mcp."


async def test_gateway_of_another_controller_gets_no_routes_from_us(
    tool_operator: RunningOperator, world: World, namespace: str
) -> None:
    theirs = unique("it-theirs")
    await world.apply(tool_gateway_class(theirs, controller="example.com/other-controller"))
    await world.apply(tool_gateway("theirs", namespace, theirs))
    await world.apply(tool_server("tools", namespace, "theirs"))
    accepted = await wait_condition(world, TOOL_SERVER, "tools", namespace, "Accepted", status="True")
    assert accepted["reason"] == "Accepted"
    assert await world.get(DEPLOYMENT, "tools", namespace) is not None
    await eventually(tool_operator.idle, "the controllers are idle")
    assert await world.get(HTTP_ROUTE, "tools", namespace) is None
    obj = await world.get(TOOL_SERVER, "tools", namespace)
    assert obj is not None and obj["status"]["gatewayUrl"] == ""


async def test_more_servers_than_a_backend_takes_are_named_in_a_condition(
    tool_operator: RunningOperator, world: World, namespace: str, our_class: str
) -> None:
    await world.apply(tool_gateway("big", namespace, our_class))
    for i in range(33):
        await world.apply(tool_server(f"s{i:02d}", namespace, "big"))
    crowded = await wait_condition(
        world,
        TOOL_GATEWAY,
        "big",
        namespace,
        "ToolServersRouted",
        status="False",
        reason="TooManyToolServers",
    )
    assert crowded["message"].endswith(f"{namespace}/s32")
    assert len(await targets(world, multiplex_name("big", None), namespace) or []) == 32
    assert condition(await world.get(TOOL_GATEWAY, "big", namespace), "Accepted") is not None
    assert (await status_condition(world, TOOL_GATEWAY, "big", namespace, "Accepted"))["status"] == "True"
