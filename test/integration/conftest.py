"""Integration-tier set-up: the agentgateway kinds, the operator with the tool-gateway controllers, a world.

- ``agentgateway_stand_in`` (session, autouse): serves agentgateway.dev with our stand-in CRDs
  (``agentgateway_crds``) when ``hack/fetch-crds.sh`` could not fetch the real ones.
- ``operator``: ``operator_harness.running_operator`` with the MCP and LLMGateway controllers,
  watching the test's ``namespace``.
- ``tool_operator``: ``operator_harness.running_operator`` with the ToolGatewayClass, ToolGateway and
  ToolServer controllers, all namespaces, on the session's control plane.
- ``world``: an ``operator_harness.World`` on the admin client; what a test applied is deleted after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from agentkube.runtime.client import Client
from agentkube.testing import ControlPlane, cached_crd_dirs
from test.integration.agentgateway_crds import has_real_agentgateway_crds, write_agentgateway_crds
from test.integration.operator_harness import TOOL_CONTROLLERS, RunningOperator, World, running_operator


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


@pytest.fixture
async def operator(control_plane: ControlPlane, namespace: str) -> AsyncIterator[RunningOperator]:
    """The MCP and LLMGateway controllers on the session's control plane, watching ``namespace``."""
    async with running_operator(str(control_plane.kubeconfig), namespace=namespace) as op:
        yield op


@pytest_asyncio.fixture(loop_scope="session")
async def tool_operator(control_plane: ControlPlane) -> AsyncIterator[RunningOperator]:
    """The tool-gateway controllers on the session's control plane, as the admin."""
    assert control_plane.kubeconfig is not None
    async with running_operator(str(control_plane.kubeconfig), controllers=TOOL_CONTROLLERS) as operator:
        yield operator


@pytest_asyncio.fixture(loop_scope="session")
async def world(client: Client) -> AsyncIterator[World]:
    w = World(client)
    try:
        yield w
    finally:
        await w.cleanup()
