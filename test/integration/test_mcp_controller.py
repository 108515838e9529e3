"""The MCP controller against a real kube-apiserver: children, status, references, hashes, drift."""

from __future__ import annotations

import base64
import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentkube.controllers.kinds import (
    CONFIG_MAP,
    DEPLOYMENT,
    MCP,
    NETWORK_POLICY,
    POD_DISRUPTION_BUDGET,
    SECRET,
    SERVICE,
)
from agentkube.controllers.workload import CONFIG_HASH_ANNOTATION
from agentkube.dataplane.mcp.config import HttpUpstream, load_mcp_proxy_config
from agentkube.dataplane.mcp.sessions import KeyRing
from agentkube.runtime.client import Client
from agentkube.runtime.gvk import GVK
from test.integration.operator_harness import (
    IMAGE,
    RunningOperator,
    condition,
    eventually,
    get_or_none,
    mcp_object,
    secret_object,
    set_available,
)

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "config" / "samples"
EVENT = GVK("events.k8s.io", "v1", "Event")
LABELS = {
    "app.kubernetes.io/name": "mcp-proxy",
    "app.kubernetes.io/instance": "github-tools",
    "app.kubernetes.io/managed-by": "agentkube",
    "app.kubernetes.io/part-of": "agentkube",
}
SELECTOR = {"app.kubernetes.io/name": "mcp-proxy", "app.kubernetes.io/instance": "github-tools"}


def seed_docs(namespace: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((SAMPLES / "agentkube_v1alpha1_mcp.yaml").read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return docs


def http(name: str = "github", secret: str = "pat", key: str = "token") -> dict[str, Any]:
    return {
        "name": name,
        "kind": "http",
        "endpoint": "https://mcp.github.com",
        "auth": {"mode": "bearer", "secretRef": {"name": secret, "key": key}},
    }


def ref(name: str) -> dict[str, Any]:
    return {"name": f"to-{name}", "kind": "mcpRef", "mcpRef": {"name": name}}


def session_keys(secret: dict[str, Any]) -> str:
    return base64.b64decode(secret["data"]["keys"]).decode()


async def mcp_condition(client: Client, namespace: str, name: str, ctype: str = "Accepted") -> dict[str, Any]:
    obj = await client.get(MCP, name, namespace)
    found = condition(obj, ctype)
    if found is None or found.get("observedGeneration") != obj["metadata"]["generation"]:
        return {}
    return found


async def accepted_with(
    client: Client, namespace: str, name: str, status: str, reason: str
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        c = await mcp_condition(client, namespace, name)
        return c if (c.get("status"), c.get("reason")) == (status, reason) else None

    found: dict[str, Any] = await eventually(check, f"MCP {name} is Accepted={status} ({reason})")
    return found


async def pod_hash(client: Client, namespace: str, name: str) -> str:
    deployment = await client.get(DEPLOYMENT, name, namespace)
    return str(deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])


async def converged(client: Client, namespace: str, name: str) -> dict[str, Any]:
    """The MCP once its status reflects its current generation."""

    async def check() -> dict[str, Any] | None:
        obj = await client.get(MCP, name, namespace)
        status = obj.get("status") or {}
        return obj if status.get("observedGeneration") == obj["metadata"]["generation"] else None

    found: dict[str, Any] = await eventually(check, f"MCP {name} observed its generation")
    return found


def contains(live: Any, expected: Any, path: str = "") -> list[str]:
    """Where ``live`` lacks or differs from what ``expected`` sets (server defaults are ignored)."""
    if isinstance(expected, dict):
        if not isinstance(live, dict):
            return [f"{path}: {live!r} is not a mapping"]
        return [d for k, v in expected.items() for d in contains(live.get(k), v, f"{path}.{k}")]
    if isinstance(expected, list):
        if not isinstance(live, list) or len(live) != len(expected):
            return [f"{path}: {live!r} != {expected!r}"]
        return [
            d
            for i, (a, b) in enumerate(zip(live, expected, strict=True))
            for d in contains(a, b, f"{path}[{i}]")
        ]
    return [] if live == expected else [f"{path}: {live!r} != {expected!r}"]


async def test_seed_mcp_produces_exactly_the_documented_children(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    for doc in seed_docs(namespace):
        await client.apply(doc, field_manager="test")
    mcp = await client.get(MCP, "github-tools", namespace)
    await accepted_with(client, namespace, "github-tools", "True", "Accepted")
    owner = {
        "apiVersion": "agentkube.io/v1alpha1",
        "kind": "MCP",
        "name": "github-tools",
        "uid": mcp["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    deployment = await eventually(
        lambda: get_or_none(client, DEPLOYMENT, "github-tools", namespace), "Deployment"
    )
    config_map = await client.get(CONFIG_MAP, "github-tools-config", namespace)
    service = await client.get(SERVICE, "github-tools", namespace)
    pdb = await client.get(POD_DISRUPTION_BUDGET, "github-tools", namespace)
    session = await client.get(SECRET, "github-tools-session", namespace)
    for child in (deployment, config_map, service, pdb, session):
        assert child["metadata"]["labels"] == LABELS
        assert child["metadata"]["ownerReferences"] == [owner]

    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"] == {"matchLabels": SELECTOR}
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"] == LABELS
    assert set(template["metadata"]["annotations"]) == {CONFIG_HASH_ANNOTATION}
    pod = template["spec"]
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    assert container["args"] == ["mcp-proxy", "--config", "/etc/agentkube/config.yaml"]
    assert container["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
    ]
    assert container["env"] == [
        {
            "name": "AGENTKUBE_UPSTREAM_GITHUB_SECRET",
            "valueFrom": {"secretKeyRef": {"name": "github-upstream-pat", "key": "token"}},
        },
        {
            "name": "AGENTKUBE_SESSION_KEYS",
            "valueFrom": {"secretKeyRef": {"name": "github-tools-session", "key": "keys"}},
        },
        {"name": "HOME", "value": "/tmp"},
    ]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http", "scheme": "HTTP"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTP"}
    # A failed exit's log tail becomes the Pod's termination message, which Available then shows.
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["resources"] == {
        "limits": {"memory": "256Mi"},
        "requests": {"cpu": "50m", "memory": "64Mi"},
    }
    assert container["volumeMounts"] == [
        {"name": "config", "mountPath": "/etc/agentkube", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert (
        contains(
            pod["volumes"],
            [
                {"name": "config", "configMap": {"name": "github-tools-config"}},
                {"name": "tmp", "emptyDir": {}},
            ],
        )
        == []
    )

    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == SELECTOR
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"},
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
    ]
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": SELECTOR}}

    assert session["type"] == "Opaque"
    assert list(session["data"]) == ["keys"]
    keys = session_keys(session)
    assert keys.startswith("k1:") and len(base64.b64decode(keys.partition(":")[2], validate=True)) == 32
    KeyRing.parse(keys)

    text = config_map["data"]["config.yaml"]
    assert "ghp_REPLACE_ME" not in text
    config = load_mcp_proxy_config(text)
    assert (config.metrics.port, config.sessions.keys_env) == (9090, "AGENTKUBE_SESSION_KEYS")
    (upstream,) = config.upstreams
    assert isinstance(upstream, HttpUpstream) and upstream.url == "https://mcp.github.com"
    assert upstream.auth is not None and upstream.auth.secret_env == "AGENTKUBE_UPSTREAM_GITHUB_SECRET"

    status = (await converged(client, namespace, "github-tools"))["status"]
    events, _ = await client.list(EVENT, namespace)
    for where in (config_map, deployment, status, events):
        assert keys.partition(":")[2] not in str(where)
    assert status["url"] == f"http://github-tools.{namespace}.svc.cluster.local:8080"
    assert (status["replicas"], status["readyReplicas"], status["ready"]) == (0, 0, "0/2")
    assert [(c["type"], c["status"], c["observedGeneration"]) for c in status["conditions"]] == [
        ("Accepted", "True", 1),
        ("Available", "Unknown", 1),
        ("Ready", "Unknown", 1),
    ]


async def test_deployment_availability_drives_ready_both_ways(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    await client.apply(secret_object(namespace, "pat", {"token": "t"}), field_manager="test")
    await client.apply(mcp_object(namespace, "m", [http()], replicas=2), field_manager="test")
    await eventually(lambda: get_or_none(client, DEPLOYMENT, "m", namespace), "the Deployment exists")

    await set_available(client, namespace, "m", True, replicas=2)

    async def ready(expected: str) -> dict[str, Any] | None:
        obj = await client.get(MCP, "m", namespace)
        c = condition(obj, "Ready")
        return obj if c is not None and c["status"] == expected else None

    obj = await eventually(lambda: ready("True"), "the MCP is Ready")
    assert (obj["status"]["replicas"], obj["status"]["readyReplicas"], obj["status"]["ready"]) == (
        2,
        2,
        "2/2",
    )
    assert condition(obj, "Available")["reason"] == "DeploymentAvailable"  # type: ignore[index]

    await set_available(client, namespace, "m", False, replicas=2)
    obj = await eventually(lambda: ready("False"), "the MCP is no longer Ready")
    assert condition(obj, "Ready")["reason"] == "DeploymentUnavailable"  # type: ignore[index]
    assert (obj["status"]["readyReplicas"], obj["status"]["ready"]) == (0, "0/2")

    # Scaling changes what is desired: ready/desired follows the spec at once.
    await client.apply(mcp_object(namespace, "m", [http()], replicas=3), field_manager="test")

    async def desired_three() -> bool:
        return (await client.get(MCP, "m", namespace))["status"].get("ready") == "0/3"

    await eventually(desired_three, "status.ready reads 0/3 after scaling to 3")


async def warnings(client: Client, namespace: str, name: str) -> list[dict[str, Any]]:
    events, _ = await client.list(EVENT, namespace)
    return [e for e in events if e["type"] == "Warning" and e["regarding"]["name"] == name]


async def test_missing_secret_then_missing_key_then_recovery_without_restart(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    await client.apply(
        mcp_object(namespace, "github-tools", [http("github", "github-upstream-pat")]), field_manager="t"
    )
    c = await accepted_with(client, namespace, "github-tools", "False", "SecretNotFound")
    assert c["message"] == (
        f"MCP {namespace}/github-tools: spec.upstreams[0].auth.secretRef: "
        f'Secret "github-upstream-pat" not found in namespace "{namespace}"; create it with key "token"'
    )
    assert await get_or_none(client, DEPLOYMENT, "github-tools", namespace) is None
    ready = condition(await client.get(MCP, "github-tools", namespace), "Ready")
    assert ready is not None and ready["reason"] == "SecretNotFound"

    await client.apply(secret_object(namespace, "github-upstream-pat", {"wrong": "x"}), field_manager="t")
    c = await accepted_with(client, namespace, "github-tools", "False", "SecretKeyNotFound")
    assert c["message"] == (
        f"MCP {namespace}/github-tools: spec.upstreams[0].auth.secretRef: "
        'Secret "github-upstream-pat" has no key "token"'
    )
    await client.apply(secret_object(namespace, "github-upstream-pat", {"token": "ghp_x"}), field_manager="t")
    await accepted_with(client, namespace, "github-tools", "True", "Accepted")
    await eventually(
        lambda: get_or_none(client, DEPLOYMENT, "github-tools", namespace), "the Deployment exists"
    )

    # One Warning per problem, however often the object was reconciled while it lasted; no value in any.
    async def both_warned() -> list[dict[str, Any]] | None:
        found = await warnings(client, namespace, "github-tools")
        return found if {e["reason"] for e in found} == {"SecretNotFound", "SecretKeyNotFound"} else None

    found = await eventually(both_warned, "both Warnings are recorded")
    assert len(found) == 2
    assert all("series" not in e for e in found)
    events, _ = await client.list(EVENT, namespace)
    assert "ghp_x" not in str(events)
    assert {e["reason"] for e in events if e["type"] == "Normal"} == {"Created"}


async def test_missing_mcp_ref_then_created_recovers(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    await client.apply(mcp_object(namespace, "front", [ref("back")]), field_manager="t")
    c = await accepted_with(client, namespace, "front", "False", "UpstreamRefNotFound")
    assert c["message"] == (
        f'MCP {namespace}/front: spec.upstreams[0].mcpRef: MCP "{namespace}/back" not found; '
        "create it or point the upstream at an existing MCP"
    )
    await client.apply(
        mcp_object(
            namespace, "back", [{"name": "x", "kind": "http", "endpoint": "http://x.example"}], port=9000
        ),
        field_manager="t",
    )
    await accepted_with(client, namespace, "front", "True", "Accepted")
    config_map = await eventually(
        lambda: get_or_none(client, CONFIG_MAP, "front-config", namespace), "config"
    )
    (upstream,) = load_mcp_proxy_config(config_map["data"]["config.yaml"]).upstreams
    assert isinstance(upstream, HttpUpstream)
    assert upstream.url == f"http://back.{namespace}.svc.cluster.local:9000"

    # The referenced proxy moves to another port: the referencing one follows.
    await client.patch(MCP, "back", namespace, {"spec": {"port": 9100}})

    async def follows() -> bool:
        cm = await client.get(CONFIG_MAP, "front-config", namespace)
        return ":9100" in cm["data"]["config.yaml"]

    await eventually(follows, "the referencing proxy's config names the new port")


async def test_reference_cycle_is_reported_on_every_member_until_broken(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    await client.apply(mcp_object(namespace, "a", [ref("b")]), field_manager="t")
    await client.apply(mcp_object(namespace, "b", [ref("c")]), field_manager="t")
    await accepted_with(client, namespace, "b", "False", "UpstreamRefNotFound")
    # c closes the cycle a -> b -> c -> a: every member must learn it, not only the last one written.
    await client.apply(mcp_object(namespace, "c", [ref("a")]), field_manager="t")
    for name in ("a", "b", "c"):
        c = await accepted_with(client, namespace, name, "False", "ReferenceCycle")
        assert "reference cycle" in c["message"]
    assert await get_or_none(client, DEPLOYMENT, "c", namespace) is None

    await client.apply(
        mcp_object(namespace, "c", [{"name": "x", "kind": "http", "endpoint": "http://x.example"}]),
        field_manager="t",
    )
    for name in ("a", "b", "c"):
        await accepted_with(client, namespace, name, "True", "Accepted")


async def test_config_or_secret_change_rolls_pods_and_unrelated_change_does_not(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    await client.apply(secret_object(namespace, "pat", {"token": "one", "other": "a"}), field_manager="t")
    obj = mcp_object(namespace, "m", [http()])
    await client.apply(obj, field_manager="t")
    await eventually(lambda: get_or_none(client, DEPLOYMENT, "m", namespace), "the Deployment exists")
    first = await pod_hash(client, namespace, "m")

    # An unreferenced key of the Secret, then a spec change that is not config: reconciled (the
    # generation is observed), and the hash stays.
    await client.apply(secret_object(namespace, "pat", {"token": "one", "other": "b"}), field_manager="t")
    unrelated = copy.deepcopy(obj)
    unrelated["spec"]["podMetadata"] = {"labels": {"team": "a"}}
    await client.apply(unrelated, field_manager="t")
    await converged(client, namespace, "m")

    async def template_labelled() -> bool:
        d = await client.get(DEPLOYMENT, "m", namespace)
        return d["spec"]["template"]["metadata"]["labels"].get("team") == "a"

    await eventually(template_labelled, "the pod label is applied")
    assert await pod_hash(client, namespace, "m") == first

    await client.apply(secret_object(namespace, "pat", {"token": "two", "other": "b"}), field_manager="t")
    second = await eventually(
        lambda: _changed(client, namespace, "m", first), "a new value of the referenced key rolls the pods"
    )
    changed = copy.deepcopy(unrelated)
    changed["spec"]["upstreams"][0]["tools"] = {"mode": "deny", "deny": ["delete_*"]}
    await client.apply(changed, field_manager="t")
    third = await eventually(
        lambda: _changed(client, namespace, "m", second), "a config change rolls the pods"
    )
    assert third != first


async def _changed(client: Client, namespace: str, name: str, before: str) -> str | None:
    now = await pod_hash(client, namespace, name)
    return now if now != before else None


async def test_pdb_follows_replicas_and_is_pruned_at_one(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    await client.apply(secret_object(namespace, "pat", {"token": "t"}), field_manager="t")
    await client.apply(mcp_object(namespace, "m", [http()], replicas=3), field_manager="t")
    await eventually(lambda: get_or_none(client, POD_DISRUPTION_BUDGET, "m", namespace), "the PDB exists")
    await client.patch(MCP, "m", namespace, {"spec": {"replicas": 1}})

    async def pruned() -> bool:
        return await get_or_none(client, POD_DISRUPTION_BUDGET, "m", namespace) is None

    await eventually(pruned, "the PDB is deleted")
    deployment = await client.get(DEPLOYMENT, "m", namespace)
    assert deployment["spec"]["replicas"] == 1


async def test_child_changed_by_someone_else_is_put_back(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    await client.apply(secret_object(namespace, "pat", {"token": "t"}), field_manager="t")
    await client.apply(mcp_object(namespace, "m", [http()], replicas=2), field_manager="t")
    await eventually(lambda: get_or_none(client, DEPLOYMENT, "m", namespace), "the Deployment exists")
    await client.patch(DEPLOYMENT, "m", namespace, {"spec": {"replicas": 7}})

    async def restored() -> bool:
        return (await client.get(DEPLOYMENT, "m", namespace))["spec"]["replicas"] == 2

    await eventually(restored, "replicas are back to the MCP's")
    await client.patch(CONFIG_MAP, "m-config", namespace, {"data": {"config.yaml": "tampered"}})

    async def config_restored() -> bool:
        return (await client.get(CONFIG_MAP, "m-config", namespace))["data"]["config.yaml"] != "tampered"

    await eventually(config_restored, "the config is back to the MCP's")


async def test_name_taken_by_a_foreign_object_is_a_conflict_not_a_takeover(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    foreign = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "m", "namespace": namespace},
        "spec": {"ports": [{"port": 80}]},
    }
    await client.apply(foreign, field_manager="someone-else")
    await client.apply(secret_object(namespace, "pat", {"token": "t"}), field_manager="t")
    await client.apply(mcp_object(namespace, "m", [http()]), field_manager="t")
    c = await accepted_with(client, namespace, "m", "False", "ChildConflict")
    assert f"Service {namespace}/m already exists" in c["message"]
    service = await client.get(SERVICE, "m", namespace)
    assert "ownerReferences" not in service["metadata"]
    assert await get_or_none(client, SECRET, "pat", namespace) is not None


# ------------------------------------------------------------------------------------- session key


async def session_secret(client: Client, namespace: str, name: str, owner_uid: str) -> dict[str, Any]:
    """The session-key Secret of MCP ``name`` once it exists, controlled by the MCP of ``owner_uid``."""

    async def check() -> dict[str, Any] | None:
        secret = await get_or_none(client, SECRET, f"{name}-session", namespace)
        refs = (secret or {}).get("metadata", {}).get("ownerReferences") or []
        return secret if [(r["uid"], r.get("controller")) for r in refs] == [(owner_uid, True)] else None

    found: dict[str, Any] = await eventually(check, f"the session key of MCP {name} exists")
    return found


async def accepted_mcp_and_its_session_secret(client: Client, namespace: str, token: str) -> dict[str, Any]:
    """Create MCP ``m`` (two replicas, one http upstream whose token is ``token``) and return its
    session-key Secret once it is Accepted and the Secret exists."""
    await client.apply(secret_object(namespace, "pat", {"token": token}), field_manager="t")
    await client.apply(mcp_object(namespace, "m", [http()], replicas=2), field_manager="t")
    await accepted_with(client, namespace, "m", "True", "Accepted")
    uid = (await client.get(MCP, "m", namespace))["metadata"]["uid"]
    return await session_secret(client, namespace, "m", uid)


def secret_writes(operator: RunningOperator) -> list[tuple[str, str]]:
    return [(w.verb, w.name) for w in operator.client.writes if w.kind == "Secret"]


async def test_session_key_is_made_once_and_a_reconcile_never_touches_it(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    first = await accepted_mcp_and_its_session_secret(client, namespace, "one")
    assert first["metadata"]["labels"] == {**LABELS, "app.kubernetes.io/instance": "m"}
    KeyRing.parse(session_keys(first))
    await eventually(lambda: get_or_none(client, DEPLOYMENT, "m", namespace), "the Deployment exists")
    before = await pod_hash(client, namespace, "m")

    # The Secret and the children are reported in one event (written behind the reconcile).
    async def created() -> list[str] | None:
        events, _ = await client.list(EVENT, namespace)
        notes = [e["note"] for e in events if e["reason"] == "Created" and e["regarding"]["name"] == "m"]
        return notes or None

    notes = await eventually(created, "the Created event is written")
    assert len(notes) == 1 and "Secret m-session" in notes[0] and "Deployment m" in notes[0], notes

    # Reconciles for other reasons: a spec change, then a new value of a referenced Secret.
    await client.patch(MCP, "m", namespace, {"spec": {"replicas": 3}})
    await converged(client, namespace, "m")
    # The session key's digest the first reconcile gave the pods (from the API server's answer) is
    # the one the cache gives now: the pods did not roll.
    assert await pod_hash(client, namespace, "m") == before
    await client.apply(secret_object(namespace, "pat", {"token": "two"}), field_manager="t")
    await eventually(lambda: _changed(client, namespace, "m", before), "the new token rolls the pods")
    await eventually(operator.idle, "the controllers are idle")

    now = await client.get(SECRET, "m-session", namespace)
    assert now["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert now["data"] == first["data"]
    assert secret_writes(operator) == [("create", "m-session")]


async def test_users_rotated_session_key_survives_reconciles_and_rolls_the_pods(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    old = session_keys(await accepted_mcp_and_its_session_secret(client, namespace, "t"))
    await eventually(lambda: get_or_none(client, DEPLOYMENT, "m", namespace), "the Deployment exists")
    before = await pod_hash(client, namespace, "m")

    # The documented rotation: the new key first (it seals), the old one kept (it still opens).
    rotated = f"k2:{base64.b64encode(os.urandom(32)).decode()},{old}"
    KeyRing.parse(rotated)
    encoded = base64.b64encode(rotated.encode()).decode()
    await client.patch(SECRET, "m-session", namespace, {"data": {"keys": encoded}})
    after = await eventually(lambda: _changed(client, namespace, "m", before), "the rotation rolls the pods")

    await client.patch(MCP, "m", namespace, {"spec": {"replicas": 2, "podMetadata": {"labels": {"x": "y"}}}})
    await converged(client, namespace, "m")
    await eventually(operator.idle, "the controllers are idle")
    assert session_keys(await client.get(SECRET, "m-session", namespace)) == rotated
    assert await pod_hash(client, namespace, "m") == after
    assert rotated.partition(",")[0] not in str(await client.get(DEPLOYMENT, "m", namespace))

    # Deleted by the user: a new key is made, and the pods roll again.
    await client.delete(SECRET, "m-session", namespace)

    async def remade() -> dict[str, Any] | None:
        secret = await get_or_none(client, SECRET, "m-session", namespace)
        return secret if secret is not None and session_keys(secret) not in (old, rotated) else None

    fresh = await eventually(remade, "a new session key is made")
    KeyRing.parse(session_keys(fresh))
    await eventually(lambda: _changed(client, namespace, "m", after), "the new key rolls the pods")
    assert secret_writes(operator) == [("create", "m-session"), ("create", "m-session")]


async def test_foreign_secret_named_like_the_session_key_blocks_and_is_left_alone(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    value = "foreign-value-7d1f3c"
    await client.apply(secret_object(namespace, "m-session", {"keys": value}), field_manager="someone-else")
    foreign = await client.get(SECRET, "m-session", namespace)
    await client.apply(secret_object(namespace, "pat", {"token": "t"}), field_manager="t")
    await client.apply(mcp_object(namespace, "m", [http()]), field_manager="t")
    c = await accepted_with(client, namespace, "m", "False", "ChildConflict")
    assert c["message"] == (
        f"MCP {namespace}/m: Secret {namespace}/m-session already exists and is not managed by agentkube; "
        "delete or rename it so agentkube can own it"
    )
    await eventually(operator.idle, "the controllers are idle")
    assert await get_or_none(client, DEPLOYMENT, "m", namespace) is None
    now = await client.get(SECRET, "m-session", namespace)
    assert now["metadata"]["resourceVersion"] == foreign["metadata"]["resourceVersion"]
    assert "ownerReferences" not in now["metadata"]
    assert session_keys(now) == value
    assert secret_writes(operator) == []
    events, _ = await client.list(EVENT, namespace)
    assert value not in str(events) and value not in str(await client.get(MCP, "m", namespace))

    # Once it is gone (the Secret watch tells the MCP), the operator makes its own.
    await client.delete(SECRET, "m-session", namespace)
    await accepted_with(client, namespace, "m", "True", "Accepted")
    uid = (await client.get(MCP, "m", namespace))["metadata"]["uid"]
    KeyRing.parse(session_keys(await session_secret(client, namespace, "m", uid)))


async def test_deleted_and_recreated_mcp_gets_a_new_session_key(
    operator: RunningOperator, client: Client, namespace: str
) -> None:
    await client.apply(secret_object(namespace, "pat", {"token": "t"}), field_manager="t")
    await client.apply(mcp_object(namespace, "m", [http()]), field_manager="t")
    await accepted_with(client, namespace, "m", "True", "Accepted")
    old_uid = (await client.get(MCP, "m", namespace))["metadata"]["uid"]
    old = session_keys(await session_secret(client, namespace, "m", old_uid))
    await eventually(lambda: get_or_none(client, DEPLOYMENT, "m", namespace), "the Deployment exists")

    await client.delete(MCP, "m", namespace)

    async def gone() -> bool:
        return await get_or_none(client, MCP, "m", namespace) is None

    await eventually(gone, "the MCP is deleted")
    # No garbage collector runs here: until one has, the key is the deleted MCP's, not the new one's.
    await client.apply(mcp_object(namespace, "m", [http()]), field_manager="t")
    c = await accepted_with(client, namespace, "m", "False", "ChildConflict")
    assert (
        f"Secret {namespace}/m-session already exists and is controlled by another object (uid {old_uid})"
        in c["message"]
    )
    new_uid = (await client.get(MCP, "m", namespace))["metadata"]["uid"]
    assert new_uid != old_uid

    # Play the garbage collector: what the deleted MCP controlled goes.
    for gvk, name in (
        (CONFIG_MAP, "m-config"),
        (DEPLOYMENT, "m"),
        (SERVICE, "m"),
        (NETWORK_POLICY, "m"),
        (SECRET, "m-session"),
    ):
        await client.delete(gvk, name, namespace)
    await accepted_with(client, namespace, "m", "True", "Accepted")
    new = session_keys(await session_secret(client, namespace, "m", new_uid))
    assert new != old
    KeyRing.parse(new)
