"""The webhook server on loopback TLS with a real HTTP client: reviews in and out, rotation, health."""

from __future__ import annotations

import asyncio
import base64
import copy
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from cryptography import x509

from agentkube.runtime import metrics
from agentkube.runtime.webhook import Admission, AdmissionRequest, WebhookServer, json_patch
from agentkube.testing import eventually
from agentkube.testing.webhooks import WebhookCA, serial_of


def review(obj: dict[str, Any] | None, *, operation: str = "CREATE", uid: str = "u-1") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "name": "cm",
            "namespace": "ns",
            "operation": operation,
            "userInfo": {"username": "alice"},
            "object": obj,
            "oldObject": None,
            "dryRun": False,
        },
    }


def cm(data: dict[str, str], **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "cm", "namespace": "ns"}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


async def validate(request: AdmissionRequest) -> Admission:
    assert request.object is not None
    if "forbidden" in request.object.get("data", {}):
        return Admission.deny("data.forbidden: not allowed here; remove the key", warnings=["checked"])
    return Admission.allow(warnings=["checked"])


async def mutate(request: AdmissionRequest) -> Admission | dict[str, Any]:
    assert request.object is not None
    obj = copy.deepcopy(request.object)
    obj["metadata"].setdefault("labels", {})["mutated.example.com/by"] = "webhook"
    obj["data"].pop("drop", None)
    return obj


async def broken(request: AdmissionRequest) -> Admission:
    raise KeyError("spec")


async def convert(obj: dict[str, Any], desired: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    if desired.endswith("/v2"):
        out["spec"] = {"replicas": obj["spec"]["size"]}
    elif desired.endswith("/v1"):
        out["spec"] = {"size": obj["spec"]["replicas"]}
    if obj["metadata"]["name"] == "bad":
        raise ValueError("spec.size: not a number")
    out["apiVersion"] = desired
    return out


class Served:
    def __init__(self, server: WebhookServer, ca: WebhookCA, certs: Path, session: aiohttp.ClientSession):
        self.server, self.ca, self.certs, self.session = server, ca, certs, session

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.server.port}"

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.session.post(self.base + path, data=orjson.dumps(body)) as resp:
            raw = await resp.read()
            try:
                return resp.status, orjson.loads(raw)
            except orjson.JSONDecodeError:
                return resp.status, raw.decode()

    async def presented_serial(self) -> int:
        """The serial of the certificate a new connection is shown (not verified: it may be any)."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        _, writer = await asyncio.open_connection("127.0.0.1", self.server.port, ssl=ctx)
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            return x509.load_der_x509_certificate(der).serial_number
        finally:
            writer.close()
            await writer.wait_closed()

    async def presented_serial_is(self, serial: int) -> bool:
        return await self.presented_serial() == serial


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    ca = WebhookCA()
    certs = tmp_path / "certs"
    ca.issue(certs)
    server = WebhookServer(cert_dir=certs, host="127.0.0.1", port=0, poll_interval=0.05)
    server.validating("/validate", validate)
    server.mutating("/mutate", mutate)
    server.validating("/broken", broken)
    server.conversion("/convert", convert)
    async with server:
        ssl_ctx = ssl.create_default_context(cadata=ca.pem.decode())
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx, force_close=True)) as s:
            yield Served(server, ca, certs, s)


# -- pure ----------------------------------------------------------------------------------------


def test_json_patch_adds_removes_replaces_and_escapes_pointers() -> None:
    before = {"a": 1, "b": {"c": [1, 2], "d": "x"}, "gone": True, "k/~": 1}
    after = {"a": 1, "b": {"c": [1, 2, 3], "e": None}, "new": {"x": 1}, "k/~": 2}
    assert json_patch(before, after) == [
        {"op": "remove", "path": "/gone"},
        {"op": "remove", "path": "/b/d"},
        {"op": "replace", "path": "/b/c", "value": [1, 2, 3]},
        {"op": "add", "path": "/b/e", "value": None},
        {"op": "add", "path": "/new", "value": {"x": 1}},
        {"op": "replace", "path": "/k~1~0", "value": 2},
    ]
    assert json_patch(before, copy.deepcopy(before)) == []
    assert json_patch({"a": 1}, {"a": True}) == [{"op": "replace", "path": "/a", "value": True}]


def test_paths_are_checked() -> None:
    server = WebhookServer(cert_dir="/nonexistent")
    with pytest.raises(ValueError, match="must start with '/'"):
        server.validating("validate", validate)
    server.validating("/v", validate)
    with pytest.raises(ValueError, match="already registered"):
        server.mutating("/v", mutate)
    with pytest.raises(ValueError, match="both cert_file and key_file"):
        WebhookServer(cert_file="/x.crt")


async def test_the_server_refuses_to_start_without_a_certificate(tmp_path: Path) -> None:
    server = WebhookServer(cert_dir=tmp_path, host="127.0.0.1", port=0)
    with pytest.raises(FileNotFoundError, match=r"tls\.crt"):
        await server.start()
    assert server.ready_check() == "webhook server not started"


# -- served --------------------------------------------------------------------------------------


async def test_validating_allows_and_denies_echoing_the_uid(served: Served) -> None:
    status, body = await served.post("/validate", review(cm({"ok": "1"}), uid="abc"))
    assert status == 200
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    assert body["response"] == {"uid": "abc", "allowed": True, "warnings": ["checked"]}
    status, body = await served.post("/validate", review(cm({"forbidden": "1"}), uid="def"))
    assert body["response"]["uid"] == "def"
    assert body["response"]["allowed"] is False
    assert body["response"]["status"] == {
        "code": 403,
        "message": "data.forbidden: not allowed here; remove the key",
        "reason": "Forbidden",
    }


async def test_mutating_sends_the_json_patch_to_the_returned_object(served: Served) -> None:
    status, body = await served.post("/mutate", review(cm({"keep": "1", "drop": "2"})))
    assert status == 200
    response = body["response"]
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    ops = orjson.loads(base64.b64decode(response["patch"]))
    assert ops == [
        {"op": "add", "path": "/metadata/labels", "value": {"mutated.example.com/by": "webhook"}},
        {"op": "remove", "path": "/data/drop"},
    ]
    # Nothing to change: no patch at all.
    status, body = await served.post(
        "/mutate", review(cm({"keep": "1"}, **{"mutated.example.com/by": "webhook"}))
    )
    assert "patch" not in body["response"] and body["response"]["allowed"] is True


async def test_a_handler_that_raises_denies_with_500(served: Served) -> None:
    status, body = await served.post("/broken", review(cm({})))
    assert status == 200
    assert body["response"]["allowed"] is False
    assert body["response"]["status"]["code"] == 500
    assert "KeyError" in body["response"]["status"]["message"]
    sample = metrics.REGISTRY.get_sample_value(
        "controller_runtime_webhook_requests_total", {"webhook": "/broken", "code": "200"}
    )
    assert sample is not None and sample >= 1


async def test_reviews_of_another_version_are_refused_saying_what_to_set(served: Served) -> None:
    wrong = review(cm({}))
    wrong["apiVersion"] = "admission.k8s.io/v1beta1"
    status, body = await served.post("/validate", wrong)
    assert status == 400 and "admissionReviewVersions" in body
    status, body = await served.post("/convert", wrong)
    assert status == 400 and "conversionReviewVersions" in body
    status, body = await served.post("/validate", [1, 2])
    assert status == 400


def conversion_review(*objects: dict[str, Any], desired: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {"uid": "conv-1", "desiredAPIVersion": desired, "objects": list(objects)},
    }


def widget(name: str, version: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"example.com/{version}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }


async def test_conversion_converts_each_object_in_order_and_passes_through_the_desired_version(
    served: Served,
) -> None:
    objects = [widget("a", "v1", {"size": 3}), widget("b", "v2", {"replicas": 4})]
    status, body = await served.post("/convert", conversion_review(*objects, desired="example.com/v2"))
    assert status == 200
    response = body["response"]
    assert response["uid"] == "conv-1" and response["result"] == {"status": "Success"}
    assert response["convertedObjects"] == [widget("a", "v2", {"replicas": 3}), objects[1]]


async def test_a_failed_conversion_fails_the_review_naming_the_object(served: Served) -> None:
    objects = [widget("a", "v1", {"size": 3}), widget("bad", "v1", {"size": 1})]
    _, body = await served.post("/convert", conversion_review(*objects, desired="example.com/v2"))
    result = body["response"]["result"]
    assert result["status"] == "Failure"
    assert "Widget bad" in result["message"] and "spec.size: not a number" in result["message"]
    assert body["response"]["convertedObjects"] == []


async def test_healthz_answers_on_the_tls_port(served: Served) -> None:
    async with served.session.get(served.base + "/healthz") as resp:
        assert resp.status == 200 and await resp.text() == "ok\n"
    assert served.server.ready_check() is None


async def test_rotated_certificate_files_are_served_without_a_restart(served: Served) -> None:
    first = serial_of((served.certs / "tls.crt").read_bytes())
    assert await served.presented_serial() == first
    served.ca.issue(served.certs)
    second = serial_of((served.certs / "tls.crt").read_bytes())
    assert second != first
    # The watcher polls every 50 ms here: new connections get the new certificate.
    await eventually(lambda: served.presented_serial_is(second), "the rotated certificate is served", 10)


async def test_a_kept_alive_connection_is_closed_after_its_next_answer_once_rotated(served: Served) -> None:
    ssl_ctx = ssl.create_default_context(cadata=served.ca.pem.decode())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx)) as keepalive:
        body = orjson.dumps(review(cm({"ok": "1"})))
        async with keepalive.post(served.base + "/validate", data=body) as resp:
            assert resp.status == 200 and resp.headers.get("Connection", "").lower() != "close"
        served.ca.issue(served.certs)
        assert served.server.reload_certificates()
        async with keepalive.post(served.base + "/validate", data=body) as resp:
            assert resp.status == 200 and resp.headers.get("Connection", "").lower() == "close"
        async with keepalive.post(served.base + "/validate", data=body) as resp:
            # A new connection, made with the new certificate: kept alive again.
            assert resp.status == 200 and resp.headers.get("Connection", "").lower() != "close"


async def test_a_pair_that_does_not_load_keeps_the_current_one(served: Served, tmp_path: Path) -> None:
    first = await served.presented_serial()
    other = tmp_path / "other"
    WebhookCA().issue(other)
    # A half-finished rotation: the new certificate beside the old key.
    (served.certs / "tls.crt").write_bytes((other / "tls.crt").read_bytes())
    assert served.server.reload_certificates() is False
    assert await served.presented_serial() == first
    status, _ = await served.post("/validate", review(cm({"ok": "1"})))
    assert status == 200
    # The rotation completes: the key arrives and the pair loads on the next poll.
    (served.certs / "tls.key").write_bytes((other / "tls.key").read_bytes())
    second = serial_of((other / "tls.crt").read_bytes())
    await eventually(lambda: served.presented_serial_is(second), "the completed pair is served", 10)
