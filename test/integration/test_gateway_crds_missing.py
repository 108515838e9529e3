"""A cluster without the Gateway API or agentgateway CRDs: the operator keeps running, ToolGateways and
their ToolServers say which CRD is missing, and both are taken up once the CRDs are installed, with
no restart. Runs on a control plane of its own, so the session's keeps its CRDs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from agentkube.controllers.gatewayapi import multiplex_name, server_route_name
from agentkube.controllers.kinds import (
    AGENTGATEWAY_PARAMETERS,
    DEPLOYMENT,
    GATEWAY,
    HTTP_ROUTE,
    TOOL_GATEWAY,
    TOOL_SERVER,
)
from agentkube.runtime.client import Client
from agentkube.testing import ControlPlane, cached_crd_dirs
from test.integration.agentgateway_crds import write_agentgateway_crds
from test.integration.operator_harness import (
    TOOL_CONTROLLERS,
    RunningOperator,
    World,
    eventually,
    running_operator,
)
from test.integration.test_toolgateway_controller import (
    tool_gateway,
    tool_gateway_class,
    wait_condition,
)
from test.integration.test_toolserver_controller import tool_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def gateway_api_crds() -> Path:
    for directory in cached_crd_dirs():
        if directory.name.startswith("gateway-api@"):
            return directory
    pytest.skip("the Gateway API CRDs are not in the cache; run hack/fetch-crds.sh")


@pytest.fixture(scope="module")
def bare_plane() -> Iterator[ControlPlane]:
    """A control plane with agentkube's CRDs only."""
    with ControlPlane(crd_paths=[ROOT / "config" / "crd" / "bases"]) as plane:
        yield plane


@pytest_asyncio.fixture(loop_scope="session")
async def bare(bare_plane: ControlPlane) -> AsyncIterator[tuple[RunningOperator, World]]:
    assert bare_plane.kubeconfig is not None
    async with running_operator(str(bare_plane.kubeconfig), controllers=TOOL_CONTROLLERS) as operator:
        admin = await Client.from_kubeconfig(str(bare_plane.kubeconfig))
        try:
            yield operator, World(admin)
        finally:
            await admin.close()


async def test_missing_crds_are_reported_and_taken_up_when_installed_without_restart(
    bare: tuple[RunningOperator, World], bare_plane: ControlPlane, tmp_path: Path
) -> None:
    gateway_api = gateway_api_crds()
    operator, world = bare
    await world.namespace("tools")
    await world.apply(tool_gateway_class("agentgateway"))
    await world.apply(tool_gateway("gw", "tools", "agentgateway"))
    await world.apply(tool_server("search", "tools", "gw"))

    no_gateway_api = await wait_condition(
        world, TOOL_GATEWAY, "gw", "tools", "Accepted", status="False", reason="GatewayAPINotInstalled"
    )
    for crd in (
        "gateways.gateway.networking.k8s.io",
        "httproutes.gateway.networking.k8s.io",
        "agentgatewayparameters.agentgateway.dev",
        "agentgatewaybackends.agentgateway.dev",
    ):
        assert f"CustomResourceDefinition {crd} is not installed" in no_gateway_api["message"]
    await wait_condition(
        world, TOOL_SERVER, "search", "tools", "Accepted", status="False", reason="GatewayAPINotInstalled"
    )
    # Everything that needs no Gateway API goes on: the server's workload runs, the manager lives.
    assert await world.get(DEPLOYMENT, "search", "tools") is not None
    assert not operator.task.done()

    bare_plane.install_crds([gateway_api])
    no_agentgateway = await wait_condition(
        world, TOOL_GATEWAY, "gw", "tools", "Accepted", status="False", reason="AgentgatewayNotInstalled"
    )
    assert "agentgatewayparameters.agentgateway.dev is not installed" in no_agentgateway["message"]
    assert "gateway.networking.k8s.io" not in no_agentgateway["message"]
    assert await world.get(GATEWAY, "gw", "tools") is None

    bare_plane.install_crds([write_agentgateway_crds(tmp_path)])
    await wait_condition(world, TOOL_GATEWAY, "gw", "tools", "Accepted", status="True")
    await wait_condition(world, TOOL_SERVER, "search", "tools", "Accepted", status="True")
    assert await world.get(GATEWAY, "gw", "tools") is not None
    assert await world.get(AGENTGATEWAY_PARAMETERS, "gw", "tools") is not None
    await eventually(
        lambda: world.get(HTTP_ROUTE, server_route_name("gw", "tools", "search"), "tools"),
        "the server's route",
    )
    await eventually(
        lambda: world.get(HTTP_ROUTE, multiplex_name("gw", None), "tools"), "the multiplex route exists"
    )
    assert not operator.task.done()
    assert operator.client.denied == []
