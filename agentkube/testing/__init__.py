"""A real control plane for tests: etcd + kube-apiserver, usable by anyone testing a controller.

    from agentkube.testing import ControlPlane

    with ControlPlane(crd_paths=["config/crd/bases"]) as cp:
        ...  # cp.kubeconfig, cp.request(...), cp.restart_apiserver()

``eventually(check, what)`` polls a check until it holds, with a deadline: the way to wait for a
controller.

With pytest the plugin in ``agentkube.testing.pytest_plugin`` (loaded automatically once agentkube is
installed) provides the fixtures ``control_plane``, ``namespace`` and ``client``.
"""

from agentkube.testing.controlplane import (
    AGENTGATEWAY_CRDS_ENV,
    ASSETS_ENV,
    ControlPlane,
    ControlPlaneError,
    HTTPError,
    cached_crd_dirs,
    find_assets,
)
from agentkube.testing.polling import eventually

__all__ = [
    "AGENTGATEWAY_CRDS_ENV",
    "ASSETS_ENV",
    "ControlPlane",
    "ControlPlaneError",
    "HTTPError",
    "cached_crd_dirs",
    "eventually",
    "find_assets",
]
