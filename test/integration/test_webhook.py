"""The real kube-apiserver calls our webhook server on loopback: validation, mutation, conversion,
and certificate rotation it notices without a restart of either side."""

from __future__ import annotations

import copy
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agentkube.runtime import GVK, ApiError, Client
from agentkube.runtime.webhook import Admission, AdmissionRequest, WebhookServer
from agentkube.testing import (
    ControlPlane,
    WebhookCA,
    crd_conversion,
    mutating_webhook_configuration,
    validating_webhook_configuration,
    webhook_configuration,
)
from agentkube.testing.webhooks import rule
from test.integration.runtime_helpers import configmap, eventually, installed_crd

pytestmark = pytest.mark.integration

MUTATED = "webhook.agentkube.io/mutated"
_names = itertools.count()


async def validate(request: AdmissionRequest) -> Admission:
    obj = request.object or {}
    if "forbidden" in (obj.get("data") or {}):
        return Admission.deny("data.forbidden: this key is not allowed; remove it")
    return Admission.allow()


async def mutate(request: AdmissionRequest) -> dict[str, Any]:
    obj = copy.deepcopy(request.object or {})
    obj["metadata"].setdefault("labels", {})[MUTATED] = "yes"
    return obj


async def convert(obj: dict[str, Any], desired: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    spec = obj.get("spec") or {}
    if desired.endswith("/v2"):
        out["spec"] = {"replicas": spec.get("size")}
    else:
        out["spec"] = {"size": spec.get("replicas")}
    out["apiVersion"] = desired
    return out


@pytest.fixture
async def server(
    tmp_path: Path, webhook_ca: WebhookCA
) -> AsyncIterator[tuple[WebhookServer, WebhookCA, Path]]:
    ca = webhook_ca
    certs = tmp_path / "certs"
    ca.issue(certs)
    # Rotation is checked by hand (reload_certificates) so the test decides when it happens.
    srv = WebhookServer(cert_dir=certs, host="127.0.0.1", port=0, poll_interval=3600)
    srv.validating("/validate", validate)
    srv.mutating("/mutate", mutate)
    srv.conversion("/convert", convert)
    async with srv:
        yield srv, ca, certs


async def create_outcome(client: Client, namespace: str, data: dict[str, str]) -> dict[str, Any] | ApiError:
    name = f"probe-{next(_names)}"
    try:
        return await client.create(configmap(name, namespace, data))
    except ApiError as err:
        return err


async def test_the_api_server_calls_validating_and_mutating_webhooks(
    client: Client,
    namespace: str,
    control_plane: ControlPlane,
    server: tuple[WebhookServer, WebhookCA, Path],
) -> None:
    srv, ca, _ = server
    base = f"https://127.0.0.1:{srv.port}"
    rules = [rule("", "v1", "configmaps")]
    validating = validating_webhook_configuration(
        f"validate-{namespace}.agentkube.io", f"{base}/validate", ca.bundle, rules=rules, namespace=namespace
    )
    mutating = mutating_webhook_configuration(
        f"mutate-{namespace}.agentkube.io", f"{base}/mutate", ca.bundle, rules=rules, namespace=namespace
    )
    with webhook_configuration(control_plane, validating), webhook_configuration(control_plane, mutating):

        async def denied() -> ApiError | None:
            outcome = await create_outcome(client, namespace, {"forbidden": "1"})
            return outcome if isinstance(outcome, ApiError) else None

        err = await eventually(denied, "the API server asks the validating webhook")
        assert err.status == 403
        assert "data.forbidden: this key is not allowed; remove it" in str(err)

        async def mutated() -> bool:
            outcome = await create_outcome(client, namespace, {"ok": "1"})
            assert not isinstance(outcome, ApiError), outcome
            return (outcome["metadata"].get("labels") or {}).get(MUTATED) == "yes"

        await eventually(mutated, "the API server applies the mutating webhook's patch")


async def test_a_rotated_certificate_is_what_the_api_server_sees_next(
    client: Client,
    namespace: str,
    control_plane: ControlPlane,
    server: tuple[WebhookServer, WebhookCA, Path],
) -> None:
    srv, ca, certs = server
    config = validating_webhook_configuration(
        f"rotate-{namespace}.agentkube.io",
        f"https://127.0.0.1:{srv.port}/validate",
        ca.bundle,
        rules=[rule("", "v1", "configmaps")],
        namespace=namespace,
    )
    with webhook_configuration(control_plane, config):

        async def denied_by_webhook() -> bool:
            outcome = await create_outcome(client, namespace, {"forbidden": "1"})
            return isinstance(outcome, ApiError) and "this key is not allowed" in str(outcome)

        await eventually(denied_by_webhook, "the webhook is called")
        # Rotate to a certificate of a CA the API server does not trust: with failurePolicy Fail,
        # writes fail as soon as the server presents it, which shows the API server got it.
        WebhookCA().issue(certs)
        assert srv.reload_certificates()

        async def untrusted() -> ApiError | None:
            outcome = await create_outcome(client, namespace, {"ok": "1"})
            if isinstance(outcome, ApiError) and "failed calling webhook" in str(outcome):
                return outcome
            return None

        err = await eventually(untrusted, "the API server meets the rotated certificate")
        assert "x509" in str(err) or "certificate" in str(err)
        # Rotate again, to one of the trusted CA: writes go through the webhook again.
        ca.issue(certs)
        assert srv.reload_certificates()

        async def allowed_again() -> bool:
            return not isinstance(await create_outcome(client, namespace, {"ok": "1"}), ApiError)

        await eventually(allowed_again, "the API server trusts the certificate rotated back")
        assert await denied_by_webhook()


async def test_the_api_server_converts_a_crd_through_the_conversion_webhook(
    client: Client,
    namespace: str,
    control_plane: ControlPlane,
    server: tuple[WebhookServer, WebhookCA, Path],
    tmp_path: Path,
) -> None:
    srv, ca, _ = server
    n = next(_names)
    group, plural, kind = "webhook.agentkube.io", f"widgets{n}", f"Widget{n}"
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "scope": "Namespaced",
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": schema},
                {"name": "v2", "served": True, "storage": False, "schema": schema},
            ],
            "conversion": crd_conversion(f"https://127.0.0.1:{srv.port}/convert", ca.bundle),
        },
    }
    v1, v2 = GVK(group, "v1", kind), GVK(group, "v2", kind)
    async with installed_crd(control_plane, crd, tmp_path):
        meta = {"name": "w1", "namespace": namespace}
        await client.create(
            {"apiVersion": f"{group}/v1", "kind": kind, "metadata": meta, "spec": {"size": 3}}
        )
        as_v2 = await eventually(lambda: client.get(v2, "w1", namespace), "read as v2", ignoring=(ApiError,))
        assert as_v2["apiVersion"] == f"{group}/v2"
        assert as_v2["spec"] == {"replicas": 3}
        # Written as v2, stored as v1 (converted on the way in), read back as v1.
        meta2 = {"name": "w2", "namespace": namespace}
        await client.create(
            {"apiVersion": f"{group}/v2", "kind": kind, "metadata": meta2, "spec": {"replicas": 5}}
        )
        assert (await client.get(v1, "w2", namespace))["spec"] == {"size": 5}
        # A list needs every object converted.
        items, _ = await client.list(v2, namespace)
        assert sorted((i["metadata"]["name"], i["spec"]["replicas"]) for i in items) == [("w1", 3), ("w2", 5)]
