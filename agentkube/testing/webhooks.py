"""What a test needs to have the real kube-apiserver call a webhook server on loopback.

    ca = WebhookCA()
    cert, key = ca.issue(tmp_path / "certs")               # tls.crt / tls.key for 127.0.0.1
    server = WebhookServer(cert_file=cert, key_file=key, host="127.0.0.1", port=0)
    ...
    config = validating_webhook_configuration(
        "widgets.example.com", f"https://127.0.0.1:{server.port}/validate", ca.bundle,
        rules=[rule("example.com", "v1", "widgets")], namespace=namespace,
    )
    with webhook_configuration(control_plane, config):
        ...  # creates of widgets in `namespace` now go through the webhook

What a caller may rely on:

- ``WebhookCA`` is a fresh CA of its own (ECDSA P-256, valid 7 days); ``bundle`` is its certificate
  base64-encoded, ready for a ``caBundle`` field. ``issue(directory)`` writes a serving certificate for
  ``127.0.0.1`` and ``localhost`` as ``tls.crt`` and ``tls.key`` (cert-manager's names); issuing again
  into the same directory replaces both the way a Secret volume does (new files swapped in by rename),
  which is what certificate rotation looks like to a server watching the files. ``serial_of(pem)``
  reads a certificate's serial number, to tell which one a server presents.
- ``validating_webhook_configuration`` / ``mutating_webhook_configuration`` build the
  admissionregistration.k8s.io/v1 object with one webhook calling ``url`` with ``caBundle``,
  ``admissionReviewVersions: [v1]``, ``sideEffects: None``, ``failurePolicy: Fail`` and, given
  ``namespace``, a namespace selector so only that namespace's requests reach it (the control plane is
  shared by a whole test session). ``crd_conversion(url, bundle)`` is a CRD's ``spec.conversion``.
- ``webhook_configuration(control_plane, obj)`` creates the object for the block and deletes it after.
  The API server starts calling a new configuration within about a second, not at once: poll for the
  effect (``eventually``), do not assume it. Its two requests are synchronous; in an async test they
  hold the event loop for a few milliseconds, which is harmless because the API server does not send
  webhook configurations themselves to admission webhooks.
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509

from agentkube.testing.controlplane import ControlPlane
from agentkube.testing.pki import CertificateAuthority

__all__ = [
    "WebhookCA",
    "crd_conversion",
    "mutating_webhook_configuration",
    "rule",
    "serial_of",
    "validating_webhook_configuration",
    "webhook_configuration",
]


def serial_of(pem: bytes) -> int:
    """The serial number of a PEM certificate."""
    return x509.load_pem_x509_certificate(pem).serial_number


class WebhookCA:
    """A CA that signs webhook serving certificates; see the module docstring."""

    def __init__(self, common_name: str = "agentkube-webhook-ca") -> None:
        self._authority = CertificateAuthority(common_name)
        self.pem = self._authority.ca.cert
        self.bundle = base64.b64encode(self.pem).decode()

    def write_ca(self, path: Path) -> Path:
        """Write the CA certificate (for a client that should trust the server)."""
        path.write_bytes(self.pem)
        return path

    def issue(self, directory: Path, hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> tuple[Path, Path]:
        """Write ``tls.crt`` and ``tls.key`` for ``hosts`` into ``directory``; their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        issued = self._authority.server(list(hosts))
        cert_path, key_path = directory / "tls.crt", directory / "tls.key"
        # Write both beside the target, then rename each into place: a reader never sees a torn
        # file (a Secret volume swaps a symlink for the same reason).
        for path, data in ((key_path, issued.key), (cert_path, issued.cert)):
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(data)
            tmp.chmod(0o600)
            os.replace(tmp, path)
        return cert_path, key_path


def rule(
    group: str,
    version: str,
    resource: str,
    operations: Sequence[str] = ("CREATE", "UPDATE"),
    scope: str = "*",
) -> dict[str, Any]:
    """One ``rules`` entry: which requests the webhook sees."""
    return {
        "apiGroups": [group],
        "apiVersions": [version],
        "resources": [resource],
        "operations": list(operations),
        "scope": scope,
    }


def _webhook(
    name: str,
    url: str,
    bundle: str,
    rules: Sequence[dict[str, Any]],
    namespace: str | None,
    failure_policy: str,
    timeout_seconds: int,
) -> dict[str, Any]:
    webhook: dict[str, Any] = {
        "name": name,
        "clientConfig": {"url": url, "caBundle": bundle},
        "rules": list(rules),
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": failure_policy,
        "timeoutSeconds": timeout_seconds,
    }
    if namespace is not None:
        webhook["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    return webhook


def validating_webhook_configuration(
    name: str,
    url: str,
    bundle: str,
    *,
    rules: Sequence[dict[str, Any]],
    namespace: str | None = None,
    failure_policy: str = "Fail",
    timeout_seconds: int = 10,
) -> dict[str, Any]:
    """A ValidatingWebhookConfiguration ``name`` with one webhook (also named ``name``, which must
    be a domain-like name such as ``widgets.example.com``) calling ``url``."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [_webhook(name, url, bundle, rules, namespace, failure_policy, timeout_seconds)],
    }


def mutating_webhook_configuration(
    name: str,
    url: str,
    bundle: str,
    *,
    rules: Sequence[dict[str, Any]],
    namespace: str | None = None,
    failure_policy: str = "Fail",
    timeout_seconds: int = 10,
) -> dict[str, Any]:
    """A MutatingWebhookConfiguration ``name`` with one webhook calling ``url``."""
    webhook = _webhook(name, url, bundle, rules, namespace, failure_policy, timeout_seconds)
    webhook["reinvocationPolicy"] = "Never"
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [webhook],
    }


def crd_conversion(url: str, bundle: str) -> dict[str, Any]:
    """A CRD's ``spec.conversion`` sending ConversionReview v1 to ``url``."""
    return {
        "strategy": "Webhook",
        "webhook": {
            "clientConfig": {"url": url, "caBundle": bundle},
            "conversionReviewVersions": ["v1"],
        },
    }


_PLURALS = {
    "ValidatingWebhookConfiguration": "validatingwebhookconfigurations",
    "MutatingWebhookConfiguration": "mutatingwebhookconfigurations",
}


@contextlib.contextmanager
def webhook_configuration(control_plane: ControlPlane, obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Create the (Validating|Mutating)WebhookConfiguration ``obj`` for the block; delete it after."""
    plural = _PLURALS.get(str(obj.get("kind")))
    if plural is None:
        raise ValueError(f"not a webhook configuration: kind {obj.get('kind')!r}")
    base = f"/apis/admissionregistration.k8s.io/v1/{plural}"
    created = control_plane.request("POST", base, obj)
    try:
        yield created
    finally:
        control_plane.request("DELETE", f"{base}/{obj['metadata']['name']}")
