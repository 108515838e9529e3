"""Integration-tier set-up: the agentgateway kinds, and the operator with the tool-gateway controllers.

- ``agentgateway_stand_in`` (session, autouse): serves agentgateway.dev with our stand-in CRDs
  (``agentgateway_crds``) when ``hack/fetch-crds.sh`` could not fetch the real ones.
- ``running_tool_operator(kubeconfig)``: a manager in this process with the ToolGatewayClass,
  ToolGateway and ToolServer controllers, on a ``RecordingClient`` (writes and RBAC denials noted).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agentkube.controllers import OperatorOptions, toolgateway, toolgatewayclass, toolserver
from agentkube.runtime.manager import LeaderElectionLost, Manager, ManagerOptions
from agentkube.testing import ControlPlane, cached_crd_dirs
from test.integration.agentgateway_crds import has_real_agentgateway_crds, write_agentgateway_crds
from test.integration.operator_harness import DEADLINE, IMAGE, RecordingClient, RunningOperator


@pytest.fixture(scope="session", autouse=True)
def agentgateway_stand_in(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path | None]:
    """The stand-in agentgateway CRDs, installed on the session's control plane unless the real ones
    are. Yields the YAML file, or None when the real CRDs are in the cache.

    Asks for the control plane only when a test of the session uses it, so a session of tests that
    need none starts none.
    """
    if has_real_agentgateway_crds(cached_crd_dirs()):
        yield None
        return
    path = write_agentgateway_crds(tmp_path_factory.mktemp("agentgateway-crds"))
    if any("control_plane" in item.fixturenames for item in request.session.items):
        plane: ControlPlane = request.getfixturevalue("control_plane")
        plane.install_crds([path])
    yield path


@contextlib.asynccontextmanager
async def running_tool_operator(kubeconfig: str, **options: Any) -> AsyncIterator[RunningOperator]:
    """The manager with the ToolGatewayClass, ToolGateway and ToolServer controllers, all namespaces."""
    client = await RecordingClient.from_kubeconfig(kubeconfig)
    assert isinstance(client, RecordingClient)
    client._note()
    manager = Manager(
        client,
        ManagerOptions(
            metrics_bind_address="0",
            health_probe_bind_address="0",
            install_signal_handlers=False,
            graceful_shutdown_timeout=10.0,
        ),
    )
    operator_options = OperatorOptions(dataplane_image=IMAGE, **options)
    for module in (toolgatewayclass, toolgateway, toolserver):
        module.setup(manager, operator_options)
    task = asyncio.create_task(manager.run())
    try:
        yield RunningOperator(client, manager, task, None)
    finally:
        manager.stop()
        with contextlib.suppress(LeaderElectionLost):
            await asyncio.wait_for(task, DEADLINE)
        await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def tool_operator(control_plane: ControlPlane) -> AsyncIterator[RunningOperator]:
    """``running_tool_operator`` on the session's control plane, as the admin."""
    assert control_plane.kubeconfig is not None
    async with running_tool_operator(str(control_plane.kubeconfig)) as operator:
        yield operator
