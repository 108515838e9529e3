"""Our CRDs on a real API server: the seeds and samples apply unchanged, invalid manifests are refused.

Manifests go through ``kubectl apply --server-side``, as users send them. The CRDs are those in
config/crd/bases, installed for the session by test/conftest.py.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentkube.api import kind_of
from agentkube.api.crd import crd
from agentkube.testing import ControlPlane, HTTPError

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "config" / "samples"
SEEDS = sorted(SAMPLES.glob("*_v1alpha1_*.yaml"))
FEATURES = sorted(p for p in SAMPLES.glob("*.yaml") if p not in SEEDS and p.name != "kustomization.yaml")
INVALID = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))
KUBECTL = Path(sys.executable).with_name("kubectl")


def kubectl(plane: ControlPlane, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBECTL), f"--kubeconfig={plane.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def ensure_namespace(plane: ControlPlane, name: str) -> None:
    with contextlib.suppress(HTTPError):  # 409: it exists already
        plane.create_namespace(name)


def exists(plane: ControlPlane, obj: dict[str, Any]) -> bool:
    try:
        read_back(plane, obj, obj["metadata"].get("namespace"))
    except HTTPError as e:
        if e.status == 404:
            return False
        raise
    return True


def read_back(plane: ControlPlane, obj: dict[str, Any], namespace: str | None) -> dict[str, Any]:
    kind = kind_of(obj)
    assert kind is not None
    ns = f"/namespaces/{namespace}" if kind.namespaced else ""
    return plane.request("GET", f"/apis/{kind.api_version}{ns}/{kind.plural}/{obj['metadata']['name']}")


def with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """``value`` as the API server stores it: the CRD schema's defaults filled in, recursively."""
    if isinstance(value, dict) and "properties" in schema:
        out = dict(value)
        for name, sub in schema["properties"].items():
            if name not in out and "default" in sub:
                out[name] = sub["default"]
            if name in out:
                out[name] = with_defaults(sub, out[name])
        return out
    if isinstance(value, list) and "items" in schema:
        return [with_defaults(schema["items"], item) for item in value]
    return value


def spec_schema(obj: dict[str, Any]) -> dict[str, Any]:
    kind = kind_of(obj)
    assert kind is not None
    schema: dict[str, Any] = crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.stem)
def test_seed_manifest_applies_unchanged_and_reads_back_with_defaults(
    control_plane: ControlPlane, path: Path
) -> None:
    # The seeds name their namespaces (the cluster-scoped ToolGatewayClass too; the API server ignores it).
    for doc in docs(path):
        if namespace := doc["metadata"].get("namespace"):
            ensure_namespace(control_plane, namespace)
    ours = [doc for doc in docs(path) if kind_of(doc) is not None]
    # The seeds' names are fixed and other tests may use them too: remove only what this test created.
    created = [doc for doc in ours if not exists(control_plane, doc)]
    try:
        applied = kubectl(control_plane, "apply", "--server-side", "-f", str(path))
        assert applied.returncode == 0, applied.stderr
        for doc in ours:
            live = read_back(control_plane, doc, doc["metadata"].get("namespace"))
            assert live["spec"] == with_defaults(spec_schema(doc), doc["spec"])
            assert live["metadata"].get("annotations", {}) == doc["metadata"].get("annotations", {})
    finally:
        for doc in created:
            kubectl(
                control_plane,
                "delete",
                "--ignore-not-found",
                "--wait=false",
                "-f",
                "-",
                stdin=yaml.safe_dump(doc),
            )


def test_seed_gateway_reads_back_with_the_documented_defaults(
    control_plane: ControlPlane, namespace: str
) -> None:
    # The seed's spec in a namespace of this test, so no other test's gateway can answer instead.
    (gateway,) = docs(SAMPLES / "agentkube_v1alpha1_llmgateway.yaml")
    gateway["metadata"]["namespace"] = namespace
    assert (
        kubectl(control_plane, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(gateway)).returncode
        == 0
    )
    live = read_back(control_plane, gateway, namespace)["spec"]
    assert (live["port"], live["upstreams"][0]["priority"]) == (8080, 1)
    assert "replicas" not in live  # unset: the Deployment's, for an autoscaler to own
    assert live["rateLimit"] == {"requestsPerMinute": 600, "scope": "perClient"}
    assert "caching" not in live


@pytest.mark.parametrize("path", FEATURES, ids=lambda p: p.stem)
def test_feature_sample_applies_and_reads_back_with_defaults(
    control_plane: ControlPlane, namespace: str, path: Path
) -> None:
    applied = kubectl(control_plane, "apply", "--server-side", "-n", namespace, "-f", str(path))
    assert applied.returncode == 0, applied.stderr
    for doc in docs(path):
        if kind_of(doc) is not None:
            live = read_back(control_plane, doc, namespace)
            assert live["spec"] == with_defaults(spec_schema(doc), doc["spec"])


def expected_fields(path: Path) -> list[str]:
    line = next(li for li in path.read_text().splitlines() if li.startswith("# expect: "))
    return [alt.strip() for alt in line.removeprefix("# expect: ").split(" | ")]


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_manifest_is_rejected_naming_the_field(
    control_plane: ControlPlane, namespace: str, path: Path
) -> None:
    result = kubectl(control_plane, "apply", "--server-side", "-n", namespace, "-f", str(path))
    assert result.returncode != 0, f"{path.name} was accepted"
    assert any(field in result.stderr for field in expected_fields(path)), result.stderr


def test_tool_gateway_class_controller_cannot_change(control_plane: ControlPlane) -> None:
    klass = {
        "apiVersion": "runtime.agentic-layer.ai/v1alpha1",
        "kind": "ToolGatewayClass",
        "metadata": {"name": "immutable-controller-test"},
        "spec": {"controller": "example.com/first"},
    }
    try:
        assert (
            kubectl(
                control_plane, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(klass)
            ).returncode
            == 0
        )
        klass["spec"]["controller"] = "example.com/second"
        changed = kubectl(control_plane, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(klass))
        assert changed.returncode != 0
        assert "spec.controller" in changed.stderr and "immutable" in changed.stderr
    finally:
        kubectl(
            control_plane, "delete", "--ignore-not-found", "toolgatewayclass", "immutable-controller-test"
        )


def test_status_is_a_subresource_that_spec_writes_cannot_touch(
    control_plane: ControlPlane, namespace: str
) -> None:
    server = {
        "apiVersion": "runtime.agentic-layer.ai/v1alpha1",
        "kind": "ToolServer",
        "metadata": {"name": "status-test", "namespace": namespace},
        "spec": {"image": "img:1", "port": 8000},
        "status": {"url": "http://ignored"},
    }
    created = control_plane.request(
        "POST", f"/apis/runtime.agentic-layer.ai/v1alpha1/namespaces/{namespace}/toolservers", server
    )
    assert "status" not in created or "url" not in created["status"]
    patched = control_plane.request(
        "PATCH",
        f"/apis/runtime.agentic-layer.ai/v1alpha1/namespaces/{namespace}/toolservers/status-test/status",
        {
            "status": {
                "url": "http://status-test.ns.svc:8000/mcp",
                "gatewayUrl": "http://gw/ns/status-test/mcp",
            }
        },
        content_type="application/merge-patch+json",
    )
    assert patched["status"]["url"] == "http://status-test.ns.svc:8000/mcp"
    assert patched["metadata"]["generation"] == created["metadata"]["generation"]


def test_kubectl_get_shows_printer_columns_by_short_name_and_category(
    control_plane: ControlPlane, namespace: str
) -> None:
    sample = SAMPLES / "toolserver_sse.yaml"
    assert (
        kubectl(control_plane, "apply", "--server-side", "-n", namespace, "-f", str(sample)).returncode == 0
    )
    table = kubectl(control_plane, "get", "ts", "-n", namespace)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()[:2]
    assert header.split() == ["NAME", "IMAGE", "PORT", "READY", "URL", "AGE"]
    assert row.split()[:3] == ["legacy-sse-server", "ghcr.io/example/legacy-mcp:1.2.0", "3001"]
    everything = kubectl(control_plane, "get", "agentkube", "-n", namespace, "-o", "name")
    assert everything.stdout.split() == ["toolserver.runtime.agentic-layer.ai/legacy-sse-server"]
    for short in ("llmgw", "tgw", "tgc", "ts"):
        assert kubectl(control_plane, "get", short, "-n", namespace).returncode == 0, short


def test_model_map_rejection_names_the_entry_and_the_unknown_upstream(
    control_plane: ControlPlane, namespace: str
) -> None:
    (gateway,) = docs(SAMPLES / "agentkube_v1alpha1_llmgateway.yaml")
    gateway["metadata"]["namespace"] = namespace
    gateway["spec"]["routing"]["modelMap"].append(
        {"from": "haiku", "to": "claude-haiku-4-5", "upstream": "anthropik"}
    )
    result = kubectl(control_plane, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(gateway))
    assert result.returncode != 0, "a modelMap entry naming an unknown upstream was accepted"
    # The API server's messageExpression, the same text parse gives (test/unit/api/test_models.py).
    assert (
        'spec.routing.modelMap: Invalid value: "object": modelMap entry "haiku" names upstream "anthropik", '
        "not one of spec.upstreams" in result.stderr
    ), result.stderr


def table(plane: ControlPlane, *args: str) -> list[dict[str, str]]:
    """``kubectl get`` as a user reads it: a row per object, cells by column header (an empty cell is
    blank, so the columns are cut where the header puts them)."""
    result = kubectl(plane, "get", *args)
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    names = header.split()
    starts = [header.index(f" {n}") + 1 if i else 0 for i, n in enumerate(names)]
    ends = [*starts[1:], None]
    return [{n: line[a:b].strip() for n, a, b in zip(names, starts, ends, strict=True)} for line in lines]


def test_kubectl_get_mcp_shows_ready_over_desired_and_why_not_ready(
    control_plane: ControlPlane, namespace: str
) -> None:
    (_, mcp) = docs(SAMPLES / "agentkube_v1alpha1_mcp.yaml")
    mcp["metadata"]["namespace"] = namespace
    assert (
        kubectl(control_plane, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(mcp)).returncode == 0
    )
    # Play the controller: the status it writes for one ready pod of the two the seed asks for.
    status = {
        "ready": "1/2",
        "url": f"http://github-tools.{namespace}.svc.cluster.local:8080",
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "DeploymentUnavailable",
                "message": "not yet",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    control_plane.request(
        "PATCH",
        f"/apis/agentkube.io/v1alpha1/namespaces/{namespace}/mcps/github-tools/status",
        {"status": status},
        content_type="application/merge-patch+json",
    )
    (row,) = table(control_plane, "mcp", "-n", namespace)
    assert list(row) == ["NAME", "READY", "STATUS", "URL", "AGE"]
    assert [row["NAME"], row["READY"], row["STATUS"], row["URL"]] == [
        "github-tools",
        "1/2",
        "DeploymentUnavailable",
        status["url"],
    ]


def test_kubectl_get_tool_gateway_classes_shows_which_is_the_default(control_plane: ControlPlane) -> None:
    default, other = "it-table-default", "it-table-other"
    classes = [
        {
            "apiVersion": "runtime.agentic-layer.ai/v1alpha1",
            "kind": "ToolGatewayClass",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"controller": "example.com/table"},
        }
        for name, annotations in (
            (default, {"toolgatewayclass.kubernetes.io/is-default-class": "true"}),
            (other, {}),
        )
    ]
    try:
        for klass in classes:
            applied = kubectl(control_plane, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(klass))
            assert applied.returncode == 0, applied.stderr
        rows = table(control_plane, "tgc", default, other)
        assert list(rows[0]) == ["NAME", "CONTROLLER", "DEFAULT", "ACCEPTED", "AGE"]
        assert [(r["NAME"], r["DEFAULT"]) for r in rows] == [(default, "true"), (other, "")]
    finally:
        kubectl(control_plane, "delete", "--ignore-not-found", "toolgatewayclass", default, other)
