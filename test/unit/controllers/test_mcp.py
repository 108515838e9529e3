"""The MCP controller's pure part: what an MCP becomes, and what its references resolve to."""

from __future__ import annotations

import base64
import copy
import itertools
from typing import Any

import pytest

from agentkube.api import parse_mcp
from agentkube.controllers import mcp
from agentkube.controllers.children import standard_labels
from agentkube.controllers.kinds import SECRET
from agentkube.controllers.workload import (
    CONFIG_HASH_ANNOTATION,
    METRICS_PORT,
    GeneratedSecrets,
    Workload,
    desired_children,
    generated_secret,
)
from agentkube.dataplane.mcp.config import (
    DEFAULT_METRICS_PORT,
    HttpUpstream,
    StdioUpstream,
    load_mcp_proxy_config,
)
from agentkube.dataplane.mcp.sessions import KeyRing
from agentkube.runtime.errors import AlreadyExists, NotFound
from agentkube.runtime.gvk import GVK, ObjectKey
from test.unit.controllers.conftest import World, digest_secret, secret, seed

IMAGE = "ghcr.io/agentkube/agentkube:test"
GITHUB = {
    "name": "github",
    "kind": "http",
    "endpoint": "https://mcp.github.com",
    "auth": {"mode": "bearer", "secretRef": {"name": "pat", "key": "token"}},
}


def children_of(world: World, obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    plan = mcp.plan(world.cache, IMAGE, obj, parse_mcp(obj))
    assert not plan.problems, plan.problems
    assert plan.workload is not None
    return {c["kind"]: c for c in desired_children(plan.workload)}


def problems_of(world: World, obj: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p.reason, p.message) for p in mcp.plan(world.cache, IMAGE, obj, parse_mcp(obj)).problems]


def pod_hash(children: dict[str, dict[str, Any]]) -> str:
    return str(children["Deployment"]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])


def test_seed_mcp_becomes_config_map_deployment_service_and_pdb(world: World) -> None:
    obj = seed("MCP")
    world.add(secret("team-a", "github-upstream-pat", {"token": "ghp_REPLACE_ME"}))
    children = children_of(world, obj)
    assert sorted(children) == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]
    owner = {
        "apiVersion": "agentkube.io/v1alpha1",
        "kind": "MCP",
        "name": "github-tools",
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    labels = standard_labels("mcp-proxy", "github-tools")
    for child in children.values():
        assert child["metadata"]["namespace"] == "team-a"
        assert child["metadata"]["labels"] == labels
        assert child["metadata"]["ownerReferences"] == [owner]

    deployment = children["Deployment"]
    assert deployment["metadata"]["name"] == "github-tools"
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"] == {
        "matchLabels": {"app.kubernetes.io/name": "mcp-proxy", "app.kubernetes.io/instance": "github-tools"}
    }
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container == {
        "name": "mcp-proxy",
        "image": IMAGE,
        "args": ["mcp-proxy", "--config", "/etc/agentkube/config.yaml"],
        "ports": [
            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
            {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "50m", "memory": "64Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/agentkube", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "env": [
            {
                "name": "AGENTKUBE_UPSTREAM_GITHUB_SECRET",
                "valueFrom": {"secretKeyRef": {"name": "github-upstream-pat", "key": "token"}},
            },
            {
                "name": "AGENTKUBE_SESSION_KEYS",
                "valueFrom": {"secretKeyRef": {"name": "github-tools-session", "key": "keys"}},
            },
            {"name": "HOME", "value": "/tmp"},
        ],
    }
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["automountServiceAccountToken"] is False
    assert pod["volumes"] == [
        {"name": "config", "configMap": {"name": "github-tools-config"}},
        {"name": "tmp", "emptyDir": {}},
    ]
    assert children["Service"]["spec"] == {
        "type": "ClusterIP",
        "selector": {"app.kubernetes.io/name": "mcp-proxy", "app.kubernetes.io/instance": "github-tools"},
        "ports": [
            {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"},
            {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
        ],
    }
    assert children["PodDisruptionBudget"]["spec"] == {
        "minAvailable": 1,
        "selector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]},
    }
    assert children["ConfigMap"]["metadata"]["name"] == "github-tools-config"


def test_seed_config_names_the_env_var_and_never_holds_the_secret(world: World) -> None:
    world.add(secret("team-a", "github-upstream-pat", {"token": "ghp_REPLACE_ME"}))
    children = children_of(world, seed("MCP"))
    text = children["ConfigMap"]["data"]["config.yaml"]
    assert "ghp_REPLACE_ME" not in str(children)
    config = load_mcp_proxy_config(text)
    assert config.name == "team-a/github-tools"
    assert config.listen.port == 8080
    assert config.metrics.port == 9090
    assert config.sessions.keys_env == "AGENTKUBE_SESSION_KEYS"
    (upstream,) = config.upstreams
    assert isinstance(upstream, HttpUpstream)
    assert upstream.url == "https://mcp.github.com"
    assert upstream.auth is not None
    assert (upstream.auth.mode, upstream.auth.secret_env) == ("bearer", "AGENTKUBE_UPSTREAM_GITHUB_SECRET")
    assert upstream.tools is not None
    assert upstream.tools.allow == ["create_issue", "list_issues", "add_comment"]


def test_no_pdb_with_one_replica(world: World, make_mcp: Any) -> None:
    world.add(secret("team-a", "pat", {"token": "t"}))
    children = children_of(world, make_mcp("one", [GITHUB], replicas=1))
    assert sorted(children) == ["ConfigMap", "Deployment", "Service"]


def test_users_pod_settings_reach_the_pods(world: World, make_mcp: Any) -> None:
    world.add(secret("team-a", "pat", {"token": "t"}))
    obj = make_mcp(
        "custom",
        [GITHUB],
        port=9000,
        resources={"requests": {"cpu": "100m"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        podMetadata={"labels": {"team": "a"}, "annotations": {"prometheus.io/scrape": "true"}},
        nodeSelector={"pool": "tools"},
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "tools", "effect": "NoSchedule"}],
    )
    children = children_of(world, obj)
    template = children["Deployment"]["spec"]["template"]
    assert template["metadata"]["labels"] == {"team": "a", **standard_labels("mcp-proxy", "custom")}
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    pod = template["spec"]
    assert pod["nodeSelector"] == {"pool": "tools"}
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "tools", "effect": "NoSchedule"}
    ]
    assert pod["containers"][0]["resources"] == {
        "requests": {"cpu": "100m"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert pod["containers"][0]["ports"][0]["containerPort"] == 9000
    assert children["Service"]["spec"]["ports"][0]["port"] == 9000


def test_stdio_secret_variables_reach_the_process_through_the_container_env(
    world: World, make_mcp: Any
) -> None:
    world.add(secret("team-a", "fs-creds", {"key": "s3cr3t"}))
    stdio = {
        "name": "files",
        "kind": "stdio",
        "stdio": {
            "command": "npx",
            "args": ["-y", "@modelcontextprotocol/server-filesystem", "/data"],
            "env": [
                {"name": "MODE", "value": "ro"},
                {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "fs-creds", "key": "key"}}},
            ],
        },
    }
    children = children_of(world, make_mcp("files", [stdio]))
    env = children["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0] == {
        "name": "AGENTKUBE_UPSTREAM_FILES_ENV1",
        "valueFrom": {"secretKeyRef": {"name": "fs-creds", "key": "key"}},
    }
    (upstream,) = load_mcp_proxy_config(children["ConfigMap"]["data"]["config.yaml"]).upstreams
    assert isinstance(upstream, StdioUpstream)
    assert [(v.name, v.value, v.value_from_env) for v in upstream.env] == [
        ("MODE", "ro", None),
        ("API_KEY", None, "AGENTKUBE_UPSTREAM_FILES_ENV1"),
    ]
    assert "s3cr3t" not in str(children)


def grant_to_mcp(namespace: str, from_namespace: str, to_name: str | None = None) -> dict[str, Any]:
    to: dict[str, Any] = {"group": "agentkube.io", "kind": "MCP"}
    if to_name is not None:
        to["name"] = to_name
    return {
        "apiVersion": "gateway.networking.k8s.io/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": "g", "namespace": namespace},
        "spec": {"from": [{"group": "agentkube.io", "kind": "MCP", "namespace": from_namespace}], "to": [to]},
    }


def test_mcp_ref_resolves_to_the_referenced_proxys_url(world: World, make_mcp: Any) -> None:
    world.add(make_mcp("backend", [{"name": "x", "kind": "http", "endpoint": "http://x.example"}], port=9090))
    world.add(
        make_mcp("other", [{"name": "x", "kind": "http", "endpoint": "http://x.example"}], namespace="shared")
    )
    front = make_mcp(
        "front",
        [
            {"name": "local", "kind": "mcpRef", "mcpRef": {"name": "backend"}},
            {"name": "remote", "kind": "mcpRef", "mcpRef": {"name": "other", "namespace": "shared"}},
        ],
    )
    grants = {"shared": [grant_to_mcp("shared", "team-a", "other")]}
    plan = mcp.plan(world.cache, IMAGE, front, parse_mcp(front), grants=lambda ns: grants.get(ns, []))
    assert not plan.problems and not plan.refused and plan.workload is not None
    upstreams = load_mcp_proxy_config(plan.workload.config).upstreams
    assert [(u.name, getattr(u, "url", None), getattr(u, "mcp_ref", None)) for u in upstreams] == [
        ("local", "http://backend.team-a.svc.cluster.local:9090", "team-a/backend"),
        ("remote", "http://other.shared.svc.cluster.local:8080", "shared/other"),
    ]


def test_cross_namespace_mcp_ref_without_a_grant_is_left_out_and_reveals_nothing(
    world: World, make_mcp: Any
) -> None:
    upstream = {"name": "x", "kind": "http", "endpoint": "http://x.example"}
    world.add(make_mcp("present", [upstream], namespace="shared"))
    local = {"name": "local", "kind": "http", "endpoint": "http://local.example"}

    def front(target: str) -> dict[str, Any]:
        ref = {"name": "remote", "kind": "mcpRef", "mcpRef": {"name": target, "namespace": "shared"}}
        return make_mcp("front", [local, ref])

    # A grant for another namespace, or for another MCP by name, is no grant for this one.
    wrong = {"shared": [grant_to_mcp("shared", "team-b"), grant_to_mcp("shared", "team-a", "else")]}
    plans = {
        t: mcp.plan(world.cache, IMAGE, front(t), parse_mcp(front(t)), grants=lambda ns: wrong.get(ns, []))
        for t in ("present", "absent")
    }
    for target, plan in plans.items():
        assert not plan.problems
        assert [p.reason for p in plan.refused] == ["RefNotPermitted"]
        assert plan.workload is not None
        names = [u.name for u in load_mcp_proxy_config(plan.workload.config).upstreams]
        assert names == ["local"], target
    messages = {t: p.refused[0].message.replace(t, "X") for t, p in plans.items()}
    assert messages["present"] == messages["absent"]
    assert "8080" not in messages["present"]
    # With nothing left to serve, there is no workload at all.
    remote = {"name": "remote", "kind": "mcpRef", "mcpRef": {"name": "present", "namespace": "shared"}}
    only = make_mcp("front", [remote])
    plan = mcp.plan(world.cache, IMAGE, only, parse_mcp(only))
    assert plan.workload is None and [p.reason for p in plan.refused] == ["RefNotPermitted"]


def test_network_policy_admits_the_namespaces_granted_a_reference(world: World, make_mcp: Any) -> None:
    obj = make_mcp("tools", [{"name": "x", "kind": "http", "endpoint": "http://x.example"}])
    grants = [
        grant_to_mcp("team-a", "team-b", "tools"),
        grant_to_mcp("team-a", "team-c"),
        grant_to_mcp("team-a", "team-d", "else"),
    ]
    plan = mcp.plan(world.cache, IMAGE, obj, parse_mcp(obj), grants=lambda ns: grants, network_policies=True)
    assert plan.workload is not None and plan.workload.callers == ["team-b", "team-c"]
    (policy,) = [c for c in desired_children(plan.workload) if c["kind"] == "NetworkPolicy"]
    assert policy["metadata"]["name"] == "tools"
    assert policy["spec"] == {
        "podSelector": {
            "matchLabels": {"app.kubernetes.io/name": "mcp-proxy", "app.kubernetes.io/instance": "tools"}
        },
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [
                    {"podSelector": {}},
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team-b"}}},
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team-c"}}},
                ],
                "ports": [{"protocol": "TCP", "port": "http"}],
            },
            {"ports": [{"protocol": "TCP", "port": "metrics"}]},
        ],
    }
    plain = mcp.plan(world.cache, IMAGE, obj, parse_mcp(obj), grants=lambda ns: grants)
    assert plain.workload is not None and plain.workload.callers is None
    assert not [c for c in desired_children(plain.workload) if c["kind"] == "NetworkPolicy"]


def test_missing_secret_is_secret_not_found_naming_object_field_secret_and_key(
    world: World, make_mcp: Any
) -> None:
    assert problems_of(world, make_mcp("github-tools", [GITHUB])) == [
        (
            "SecretNotFound",
            'MCP team-a/github-tools: spec.upstreams[0].auth.secretRef: Secret "pat" not found in namespace '
            '"team-a"; create it with key "token"',
        )
    ]


def test_missing_key_is_secret_key_not_found_in_the_documented_shape(world: World) -> None:
    world.add(secret("team-a", "github-upstream-pat", {"other": "x"}))
    assert problems_of(world, seed("MCP")) == [
        (
            "SecretKeyNotFound",
            'MCP team-a/github-tools: spec.upstreams[0].auth.secretRef: Secret "github-upstream-pat" '
            'has no key "token"',
        )
    ]


def test_optional_stdio_secret_may_be_missing(world: World, make_mcp: Any) -> None:
    stdio = {
        "name": "s",
        "kind": "stdio",
        "stdio": {
            "command": "x",
            "env": [
                {"name": "K", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}}
            ],
        },
    }
    assert problems_of(world, make_mcp("s", [stdio])) == []


def test_missing_mcp_ref_is_upstream_ref_not_found(world: World, make_mcp: Any) -> None:
    obj = make_mcp("front", [{"name": "b", "kind": "mcpRef", "mcpRef": {"name": "ghost"}}])
    assert problems_of(world, obj) == [
        (
            "UpstreamRefNotFound",
            'MCP team-a/front: spec.upstreams[0].mcpRef: MCP "team-a/ghost" not found; create it or point '
            "the upstream at an existing MCP",
        )
    ]


def _ref(name: str) -> dict[str, Any]:
    return {"name": f"to-{name}", "kind": "mcpRef", "mcpRef": {"name": name}}


@pytest.mark.parametrize(
    ("edges", "members"),
    [
        ({"a": ["b"], "b": ["a"]}, {"a", "b"}),
        ({"a": ["b"], "b": ["c"], "c": ["a"]}, {"a", "b", "c"}),
        # d leads into the cycle b <-> c but is not on it: its proxy works as far as it is concerned.
        ({"d": ["b"], "b": ["c"], "c": ["b"]}, {"b", "c"}),
    ],
)
def test_reference_cycle_is_reported_on_every_member_and_only_there(
    world: World, make_mcp: Any, edges: dict[str, list[str]], members: set[str]
) -> None:
    objs = {name: world.add(make_mcp(name, [_ref(t) for t in targets])) for name, targets in edges.items()}
    flagged = {
        name for name, obj in objs.items() if any(r == "ReferenceCycle" for r, _ in problems_of(world, obj))
    }
    assert flagged == members


def test_cycle_message_shows_the_path(world: World, make_mcp: Any) -> None:
    a = world.add(make_mcp("a", [_ref("b")]))
    world.add(make_mcp("b", [_ref("a")]))
    assert problems_of(world, a) == [
        (
            "ReferenceCycle",
            "MCP team-a/a: spec.upstreams[0].mcpRef: reference cycle team-a/a -> team-a/b -> team-a/a; "
            "a proxy cannot forward to itself",
        )
    ]


def test_config_change_and_secret_change_roll_the_pods_unrelated_change_does_not(
    world: World, make_mcp: Any
) -> None:
    world.add(secret("team-a", "pat", {"token": "one", "unrelated": "a"}))
    obj = make_mcp("g", [GITHUB])
    before = pod_hash(children_of(world, obj))

    relabelled = copy.deepcopy(obj)
    relabelled["metadata"]["labels"] = {"new": "label"}
    relabelled["spec"]["podMetadata"] = {"labels": {"extra": "x"}}
    relabelled["spec"]["replicas"] = 3
    assert pod_hash(children_of(world, relabelled)) == before

    world.add(secret("team-a", "pat", {"token": "one", "unrelated": "b"}))
    assert pod_hash(children_of(world, obj)) == before

    world.add(secret("team-a", "pat", {"token": "two", "unrelated": "b"}))
    rotated = pod_hash(children_of(world, obj))
    assert rotated != before

    changed = copy.deepcopy(obj)
    changed["spec"]["upstreams"][0]["tools"] = {"mode": "deny", "deny": ["delete_*"]}
    assert pod_hash(children_of(world, changed)) not in (before, rotated)


def test_indexes_name_referenced_secrets_and_mcps(make_mcp: Any) -> None:
    obj = make_mcp(
        "x",
        [
            GITHUB,
            _ref("b"),
            {"name": "r", "kind": "mcpRef", "mcpRef": {"name": "c", "namespace": "other"}},
            {
                "name": "s",
                "kind": "stdio",
                "stdio": {
                    "command": "x",
                    "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s1", "key": "k"}}}],
                },
            },
        ],
    )
    assert list(mcp.index_secrets(obj)) == ["team-a/pat", "team-a/s1", "team-a/x-session"]
    assert list(mcp.index_mcp_refs(obj)) == ["other/c", "team-a/b"]


@pytest.mark.parametrize(
    "spec",
    [
        None,
        "text",
        {"upstreams": "x"},
        {"upstreams": [1, None, {"kind": "mcpRef", "mcpRef": "b"}]},
        {"upstreams": [{"auth": []}]},
    ],
)
def test_indexes_survive_any_shape_a_user_writes(spec: Any) -> None:
    obj = {"metadata": {"name": "x", "namespace": "n"}, "spec": spec}
    assert list(mcp.index_secrets(obj)) == ["n/x-session"]
    assert list(mcp.index_mcp_refs(obj)) == []


def test_every_mcp_declares_its_session_key_secret_for_the_operator_to_make(
    world: World, make_mcp: Any
) -> None:
    world.add(secret("team-a", "pat", {"token": "t"}))
    obj = make_mcp("one", [GITHUB], replicas=1)
    plan = mcp.plan(world.cache, IMAGE, obj, parse_mcp(obj))
    assert plan.workload is not None
    (generated,) = plan.workload.generated
    assert (generated.name, generated.key) == ("one-session", "keys")
    # Its digest is the reconciler's to add, from the Secret as it exists: the plan has none.
    assert set(plan.workload.secret_digests) == {"pat/token"}


def test_new_session_keys_are_one_fresh_32_byte_key_the_proxy_can_read() -> None:
    first, second = mcp.new_session_keys(), mcp.new_session_keys()
    assert first != second
    kid, _, encoded = first.partition(":")
    assert kid == "k1"
    assert len(base64.b64decode(encoded, validate=True)) == 32
    assert KeyRing.parse(first) is not None


def test_session_secret_is_owned_labelled_and_holds_only_the_key_ring(world: World, make_mcp: Any) -> None:
    world.add(secret("team-a", "pat", {"token": "t"}))
    obj = make_mcp("one", [GITHUB])
    plan = mcp.plan(world.cache, IMAGE, obj, parse_mcp(obj))
    assert plan.workload is not None
    (generated,) = plan.workload.generated
    body = generated_secret(plan.workload, generated)
    assert body["metadata"] == {
        "name": "one-session",
        "namespace": "team-a",
        "labels": standard_labels("mcp-proxy", "one"),
        "ownerReferences": [
            {
                "apiVersion": "agentkube.io/v1alpha1",
                "kind": "MCP",
                "name": "one",
                "uid": obj["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    assert (body["apiVersion"], body["kind"], body["type"]) == ("v1", "Secret", "Opaque")
    assert list(body["data"]) == ["keys"]
    value = base64.b64decode(body["data"]["keys"]).decode()
    assert value.startswith("k1:")
    # A new value each time it is made (it is made once), and in no other child.
    assert generated_secret(plan.workload, generated)["data"] != body["data"]
    assert value not in str(desired_children(plan.workload))
    assert value.partition(":")[2] not in str(desired_children(plan.workload))


def test_metrics_port_is_9090_and_moves_aside_when_the_proxy_itself_serves_there(
    world: World, make_mcp: Any
) -> None:
    assert METRICS_PORT == DEFAULT_METRICS_PORT == 9090
    world.add(secret("team-a", "pat", {"token": "t"}))
    children = children_of(world, make_mcp("on-9090", [GITHUB], port=9090))
    (container,) = children["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["ports"] == [
        {"name": "http", "containerPort": 9090, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9091, "protocol": "TCP"},
    ]
    assert children["Service"]["spec"]["ports"] == [
        {"name": "http", "port": 9090, "targetPort": "http", "protocol": "TCP"},
        {"name": "metrics", "port": 9091, "targetPort": "metrics", "protocol": "TCP"},
    ]
    config = load_mcp_proxy_config(children["ConfigMap"]["data"]["config.yaml"])
    assert (config.listen.port, config.metrics.port) == (9090, 9091)
    # Probes stay on the API port.
    assert container["readinessProbe"]["httpGet"]["port"] == "http"
    assert container["livenessProbe"]["httpGet"]["port"] == "http"


# -- the session key, made once ------------------------------------------------------------------


class Answers:
    """What ``GeneratedSecrets`` asks of the API server (create, get), answered as it would be from
    a store the test controls, each call noted. The real API server cannot make the cache lag on
    cue; the integration tests run the rest against it."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self._versions = itertools.count(200)

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(obj)
        stored["metadata"].setdefault("uid", f"secret-uid-{next(self._versions)}")
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[stored["metadata"]["name"]] = stored
        return copy.deepcopy(stored)

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", obj["metadata"]["name"]))
        if obj["metadata"]["name"] in self.objects:
            raise AlreadyExists(409, "AlreadyExists", "already exists")
        return self.put(obj)

    async def get(self, gvk: GVK, name: str, namespace: str | None = None) -> dict[str, Any]:
        assert gvk == SECRET
        self.calls.append(("get", name))
        if name not in self.objects:
            raise NotFound(404, "NotFound", "not found")
        return copy.deepcopy(self.objects[name])


class Maker:
    """``GeneratedSecrets`` over a real (not running) cache and ``Answers``, for one MCP."""

    def __init__(self, world: World, make_mcp: Any) -> None:
        self.world = world
        self.api = Answers()
        self.generated = GeneratedSecrets(world.cache, self.api, None, digest_secret)
        world.add(secret("team-a", "pat", {"token": "t"}))
        self.owner = make_mcp("m", [GITHUB])
        plan = mcp.plan(world.cache, IMAGE, self.owner, parse_mcp(self.owner))
        assert plan.workload is not None
        self.workload: Workload = plan.workload

    def cache_shows(self, name: str | None, *, informer_rv: int) -> None:
        """The informer at ``informer_rv``, holding the Secret ``name`` as the API has it (or none)."""
        self.world.secrets.reflector.resource_version = str(informer_rv)
        for cached in self.world.secrets.store.list():
            self.world.secrets.store.remove(ObjectKey.of(cached))
        if name is not None:
            self.world.add(self.api.objects[name])

    async def digests(self) -> tuple[dict[str, str], list[tuple[str, str]]]:
        digests, problems = await self.generated.digests("MCP team-a/m", self.workload)
        return digests, [(p.reason, p.message) for p in problems]

    def digest_of(self, name: str) -> str:
        return str(digest_secret(self.api.objects[name])["digests"]["keys"])


@pytest.fixture
def maker(world: World, make_mcp: Any) -> Maker:
    return Maker(world, make_mcp)


async def test_missing_session_key_is_created_and_not_again_while_the_cache_lags(maker: Maker) -> None:
    maker.cache_shows(None, informer_rv=100)
    digests, problems = await maker.digests()
    assert (maker.api.calls, problems) == ([("create", "m-session")], [])
    created = maker.api.objects["m-session"]
    assert digests == {"m-session/keys": maker.digest_of("m-session")}
    KeyRing.parse(base64.b64decode(created["data"]["keys"]).decode())

    # The cache has not seen the create yet: the same digest, no second create.
    maker.cache_shows(None, informer_rv=int(created["metadata"]["resourceVersion"]) - 1)
    assert await maker.digests() == (digests, [])
    # It has, and shows it: still nothing written, nothing asked.
    maker.cache_shows("m-session", informer_rv=int(created["metadata"]["resourceVersion"]))
    assert await maker.digests() == (digests, [])
    assert maker.api.calls == [("create", "m-session")]


async def test_session_key_deleted_after_the_cache_saw_it_is_made_anew(maker: Maker) -> None:
    maker.cache_shows(None, informer_rv=100)
    first, _ = await maker.digests()
    created = maker.api.objects.pop("m-session")
    maker.cache_shows(None, informer_rv=int(created["metadata"]["resourceVersion"]) + 5)
    second, problems = await maker.digests()
    assert problems == []
    assert maker.api.calls == [("create", "m-session"), ("create", "m-session")]
    assert second != first


async def test_cached_session_key_is_looked_up_once_per_uid_for_its_owner(maker: Maker) -> None:
    # After a restart: the Secret is ours, but the cache keeps no owner references.
    maker.api.put(generated_secret(maker.workload, maker.workload.generated[0]))
    maker.cache_shows("m-session", informer_rv=1000)
    expected = ({"m-session/keys": maker.digest_of("m-session")}, [])
    assert await maker.digests() == expected
    assert await maker.digests() == expected
    assert maker.api.calls == [("get", "m-session")]


async def test_session_key_made_since_the_cache_looked_is_judged_not_overwritten(maker: Maker) -> None:
    # A previous leader made it a moment ago: the create is refused, the one there is used.
    maker.api.put(generated_secret(maker.workload, maker.workload.generated[0]))
    maker.cache_shows(None, informer_rv=100)
    assert await maker.digests() == ({"m-session/keys": maker.digest_of("m-session")}, [])
    assert maker.api.calls == [("create", "m-session"), ("get", "m-session")]


async def test_session_key_stripped_of_its_key_is_reported(maker: Maker) -> None:
    made = generated_secret(maker.workload, maker.workload.generated[0])
    made["data"] = {"other": made["data"]["keys"]}
    maker.api.put(made)
    maker.cache_shows("m-session", informer_rv=1000)
    assert await maker.digests() == (
        {},
        [
            (
                "SecretKeyNotFound",
                'MCP team-a/m: Secret "m-session" (the session key, made by agentkube) has no key "keys"; '
                "delete the Secret to have a new one made",
            )
        ],
    )
