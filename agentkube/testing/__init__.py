"""A real control plane for tests: etcd + kube-apiserver, usable by anyone testing a controller.

    from agentkube.testing import ControlPlane

    with ControlPlane(crd_paths=["config/crd/bases"]) as cp:
        ...  # cp.kubeconfig, cp.request(...), cp.restart_apiserver()

``eventually(check, what)`` polls a check until it holds, with a deadline: the way to wait for a
controller.

``WebhookCA`` and the ``*_webhook_configuration`` builders (``agentkube.testing.webhooks``) have the
real API server call a webhook server on loopback: a serving certificate for 127.0.0.1, and webhook
configurations (or a CRD's ``spec.conversion``) carrying its CA as ``caBundle``.

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
from agentkube.testing.webhooks import (
    WebhookCA,
    crd_conversion,
    mutating_webhook_configuration,
    rule,
    validating_webhook_configuration,
    webhook_configuration,
)

__all__ = [
    "AGENTGATEWAY_CRDS_ENV",
    "ASSETS_ENV",
    "ControlPlane",
    "ControlPlaneError",
    "HTTPError",
    "WebhookCA",
    "cached_crd_dirs",
    "crd_conversion",
    "eventually",
    "find_assets",
    "mutating_webhook_configuration",
    "rule",
    "validating_webhook_configuration",
    "webhook_configuration",
]
