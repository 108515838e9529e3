"""pytest fixtures over ``ControlPlane``: one control plane per session, one namespace per test.

Fixtures:
- ``agentkube_crd_paths`` (session): CRD files or directories to install. Default: none; override it
  in your ``conftest.py``.
- ``control_plane`` (session): the started ``ControlPlane``.
- ``control_plane_with_controllers`` (session, opt-in): a second ``ControlPlane`` that also runs
  kube-controller-manager, for the tests that need garbage collection, namespace deletion,
  Deployments -> ReplicaSets -> Pods, EndpointSlices or PodDisruptionBudget status.
- ``namespace`` (function): the name of a namespace made for this test alone, deleted after it.
- ``client`` (function, async): an ``agentkube.runtime.client.Client`` for the control plane.
- ``webhook_ca`` (function): a fresh ``agentkube.testing.webhooks.WebhookCA``: issue a serving
  certificate for 127.0.0.1 with it, and give its ``bundle`` to a webhook configuration.

Starting the control plane is lazy: a session whose tests use none of these starts nothing.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from agentkube.testing.controlplane import ControlPlane
from agentkube.testing.webhooks import WebhookCA

if TYPE_CHECKING:
    from agentkube.runtime.client import Client

__all__ = [
    "agentkube_crd_paths",
    "client",
    "control_plane",
    "control_plane_with_controllers",
    "namespace",
    "webhook_ca",
]

TEST_NAMESPACE_LABEL = "agentkube.io/test"


@pytest.fixture(scope="session")
def agentkube_crd_paths() -> list[Path]:
    return []


@pytest.fixture(scope="session")
def control_plane(agentkube_crd_paths: list[Path]) -> Iterator[ControlPlane]:
    with ControlPlane(crd_paths=agentkube_crd_paths) as plane:
        yield plane


@pytest.fixture(scope="session")
def control_plane_with_controllers(agentkube_crd_paths: list[Path]) -> Iterator[ControlPlane]:
    """A control plane of its own that also runs kube-controller-manager (``DEFAULT_CONTROLLERS``), with
    the session's CRDs installed before it starts so the garbage collector knows their kinds.

    A fixture rather than a marker on ``control_plane``, so that asking for it is the only way to get
    it: the session's ``control_plane`` stays an API server alone, where tests write Deployment status
    themselves and no deployment controller overwrites it. The second control plane starts only in a
    session with a test that asks for it (as long as ``control_plane`` takes, plus about 0.3 s for
    kube-controller-manager). There is no scheduler and no node, so Pods stay Pending. Make namespaces
    on it yourself (``namespace`` belongs to ``control_plane``); deleting one now completes (in about
    5 s: the namespace controller waits that long by design before it empties one).
    """
    with ControlPlane(crd_paths=agentkube_crd_paths, controller_manager=True) as plane:
        yield plane


def _namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:48].strip("-")
    return f"{slug or 't'}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    name = _namespace_name(request.node.name)
    control_plane.create_namespace(name, labels={TEST_NAMESPACE_LABEL: "true"})
    yield name
    control_plane.delete_namespace(name)


@pytest.fixture
def webhook_ca() -> WebhookCA:
    return WebhookCA()


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the async fixture needs pytest-asyncio
    pass
else:

    @pytest_asyncio.fixture(loop_scope="session")
    async def client(control_plane: ControlPlane) -> AsyncIterator[Client]:
        from agentkube.runtime.client import Client

        assert control_plane.kubeconfig is not None
        c = await Client.from_kubeconfig(str(control_plane.kubeconfig))
        try:
            yield c
        finally:
            await c.close()
