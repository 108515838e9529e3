"""The chain a user cares about, end to end on a local cluster: manifest -> operator -> Deployment ->
pods run by the local node -> an agent's request answered through the Service.

The operator is ``agentkube manager`` in a process of its own; manifests go through ``kubectl apply``;
the clients are the ``mcp`` SDK and aiohttp; the upstream MCP servers are the project's fixture server
(an SDK server requiring a bearer token) and ``mcp-server-time`` from PyPI over stdio. Every
Deployment, ReplicaSet, EndpointSlice, garbage collection and namespace deletion is done by the real
kube-controller-manager.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mcp.client.client import Client

from agentkube.testing import eventually
from test.e2e.cluster_harness import DEADLINE, LocalCluster, call_tool_text, condition, sample
from test.e2e.peers import HttpPeer, time_stdio
from test.e2e.proxy_harness import run_fixture
from test.processes import container_pid, pid_alive

pytestmark = pytest.mark.e2e

SEED_TOOLS = ["add_comment", "create_issue", "list_issues"]
SEED_TOKEN = "ghp_REPLACE_ME"
SEED_SELECTOR = "app.kubernetes.io/instance=github-tools"


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(SEED_TOKEN)
    return path


@pytest.fixture
def github(tmp_path: Path, token_file: Path) -> Iterator[HttpPeer]:
    """A stand-in for the seed's GitHub MCP server: its three tools and one the seed does not allow,
    behind the bearer token in ``token_file`` (read again on every request)."""
    with run_fixture(
        tmp_path, name="github", token_file=token_file, tool_names=(*SEED_TOOLS, "delete_repo")
    ) as peer:
        yield peer


@pytest.fixture
def seed(local_cluster: LocalCluster, github: HttpPeer) -> Iterator[list[dict[str, Any]]]:
    """The seed MCP manifest as a user applies it, its endpoint pointed at ``github``; the MCP and
    its Secret are deleted after the test, and the test waits until their pods are gone."""
    docs = sample("agentkube_v1alpha1_mcp.yaml")
    docs[1]["spec"]["upstreams"][0]["endpoint"] = github.url
    local_cluster.create_namespace("team-a")
    local_cluster.apply(docs)
    yield docs
    local_cluster.kubectl("delete", "mcp", "github-tools", "-n", "team-a", "--ignore-not-found")
    local_cluster.kubectl("delete", "secret", "github-upstream-pat", "-n", "team-a", "--ignore-not-found")


def _write(path: Path, text: str) -> None:
    path.write_text(text)


async def _tool_names(url: str) -> list[str]:
    async with Client(url) as client:
        return sorted(t.name for t in (await client.list_tools()).tools)


def _pids(pods: list[dict[str, Any]]) -> list[int]:
    """The process ids the local node reports as the pods' container ids."""
    statuses = [c for p in pods for c in p["status"].get("containerStatuses") or []]
    return [container_pid(c) for c in statuses if c.get("containerID", "").startswith("agentkube-local://")]


async def _pod_requests(proxy: str, pod: dict[str, Any], method: str) -> float:
    """``agentkube_mcp_requests_total`` for ``method`` on one pod, read from its own IP through the
    node's forward proxy."""
    url = f"http://{pod['status']['podIP']}:9090/metrics"
    async with aiohttp.ClientSession() as http, http.get(url, proxy=proxy) as response:
        assert response.status == 200, await response.text()
        text = await response.text()
    pattern = rf'^agentkube_mcp_requests_total\{{[^}}]*method="{re.escape(method)}"[^}}]*\}} (\S+)$'
    return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.MULTILINE))


async def test_the_seed_mcp_serves_its_allowed_tools_from_both_replicas(
    local_cluster: LocalCluster, seed: list[dict[str, Any]]
) -> None:
    mcp = await local_cluster.ready("mcp", "github-tools", "team-a")
    assert mcp["status"]["readyReplicas"] == 2
    assert mcp["status"]["url"] == "http://github-tools.team-a.svc.cluster.local:8080"
    url = await local_cluster.service_url("team-a", "github-tools", 8080)
    async with Client(f"{url}/mcp") as client:
        names = sorted(t.name for t in (await client.list_tools()).tools)
        assert names == SEED_TOOLS  # delete_repo is not allowed
        assert (
            await call_tool_text(client, "create_issue", {"title": "from the e2e tier"}) == "create_issue ran"
        )

    # The in-cluster name answers too, through the node's proxy, as it would from an agent's pod.
    in_cluster = f"{mcp['status']['url']}/healthz"
    async with (
        aiohttp.ClientSession() as http,
        http.get(in_cluster, proxy=local_cluster.plane.node_proxy) as r,
    ):
        assert r.status == 200

    # Both replicas serve: sessions through the Service spread over the two pods.
    pods = local_cluster.pods("team-a", SEED_SELECTOR)
    assert len(pods) == 2 and len({p["status"]["podIP"] for p in pods}) == 2
    for _ in range(4):
        assert await _tool_names(f"{url}/mcp") == SEED_TOOLS
    for pod in pods:
        assert await _pod_requests(local_cluster.plane.node_proxy, pod, "tools/list") >= 1, pod["metadata"][
            "name"
        ]


async def test_a_new_token_in_the_secret_rolls_the_pods_and_is_used(
    local_cluster: LocalCluster, seed: list[dict[str, Any]], token_file: Path
) -> None:
    await local_cluster.ready("mcp", "github-tools", "team-a")
    before = {p["metadata"]["name"] for p in local_cluster.pods("team-a", SEED_SELECTOR)}
    new_token = "ghp_" + secrets.token_hex(8)
    _write(token_file, new_token)  # from now on the upstream refuses the old token
    data = base64.b64encode(new_token.encode()).decode()
    local_cluster.kubectl(
        "patch",
        "secret",
        "github-upstream-pat",
        "-n",
        "team-a",
        "--type=merge",
        "-p",
        f'{{"data":{{"token":"{data}"}}}}',
    )

    def rolled() -> bool:
        pods = local_cluster.pods("team-a", SEED_SELECTOR)
        names = {p["metadata"]["name"] for p in pods}
        ready = all(condition(p, "Ready").get("status") == "True" for p in pods)
        return len(pods) == 2 and not names & before and ready

    await eventually(rolled, "two new pods replaced the old ones and are Ready", DEADLINE)
    await local_cluster.ready("mcp", "github-tools", "team-a")
    url = await local_cluster.service_url("team-a", "github-tools", 8080)
    async with Client(f"{url}/mcp") as client:
        assert await call_tool_text(client, "list_issues") == "list_issues ran"


async def test_deleting_the_mcp_removes_its_children_and_ends_its_processes(
    local_cluster: LocalCluster, seed: list[dict[str, Any]]
) -> None:
    await local_cluster.ready("mcp", "github-tools", "team-a")
    pids = _pids(local_cluster.pods("team-a", SEED_SELECTOR))
    assert len(pids) == 2 and all(pid_alive(p) for p in pids)
    local_cluster.kubectl("delete", "mcp", "github-tools", "-n", "team-a", "--wait=false")
    children = [
        ("deployment", "github-tools"),
        ("service", "github-tools"),
        ("configmap", "github-tools-config"),
        ("secret", "github-tools-session"),
        ("poddisruptionbudget", "github-tools"),
    ]

    def gone() -> bool:
        left = [k for k, n in children if local_cluster.get(k, n, "team-a") is not None]
        return not left and not local_cluster.pods("team-a", SEED_SELECTOR)

    await eventually(gone, "the garbage collector removed the MCP's children and pods", DEADLINE)
    await eventually(lambda: not any(pid_alive(p) for p in pids), "the proxy processes ended", DEADLINE)
    assert local_cluster.get("secret", "github-upstream-pat", "team-a") is not None  # the user's own stays


def _http_mcp(namespace: str, name: str, upstreams: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "agentkube.io/v1alpha1",
        "kind": "MCP",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": 1, "upstreams": upstreams, **spec},
    }


@pytest.fixture
def namespace(local_cluster: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"e2e-{secrets.token_hex(3)}"
    local_cluster.create_namespace(name)
    yield name
    local_cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


async def test_an_mcp_ref_chain_answers_through_both_proxies(
    local_cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    with run_fixture(tmp_path, name="inner-upstream") as upstream:
        inner = _http_mcp(
            namespace,
            "inner",
            [
                {
                    "name": "fx",
                    "kind": "http",
                    "endpoint": upstream.url,
                    "tools": {"mode": "allow", "allow": ["echo", "add"]},
                }
            ],
        )
        outer = _http_mcp(
            namespace,
            "outer",
            [{"name": "in", "kind": "mcpRef", "mcpRef": {"name": "inner"}, "toolPrefix": "in_"}],
        )
        local_cluster.apply([inner, outer])
        await local_cluster.ready("mcp", "inner", namespace)
        await local_cluster.ready("mcp", "outer", namespace)
        url = await local_cluster.service_url(namespace, "outer", 8080)
        # The outer proxy may have tried the inner one before its pod served; it connects again.
        expected = ["in_add", "in_echo"]

        async def listed() -> bool:
            return await _tool_names(f"{url}/mcp") == expected

        await eventually(listed, "the outer MCP lists the inner MCP's tools", DEADLINE)
        async with Client(f"{url}/mcp") as client:
            assert (
                await call_tool_text(client, "in_echo", {"text": "through two proxies"})
                == "through two proxies"
            )


async def test_a_stdio_upstream_from_pypi_answers(local_cluster: LocalCluster, namespace: str) -> None:
    command = time_stdio("UTC")
    mcp = _http_mcp(
        namespace,
        "time",
        [{"name": "time", "kind": "stdio", "stdio": {"command": command.command, "args": command.args}}],
    )
    local_cluster.apply([mcp])
    await local_cluster.ready("mcp", "time", namespace)
    url = await local_cluster.service_url(namespace, "time", 8080)
    async with Client(f"{url}/mcp") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "get_current_time" in names
        text = await call_tool_text(client, "get_current_time", {"timezone": "UTC"})
        assert '"timezone": "UTC"' in text or "UTC" in text


async def test_deleting_a_namespace_completes(local_cluster: LocalCluster, tmp_path: Path) -> None:
    name = f"e2e-gone-{secrets.token_hex(3)}"
    local_cluster.create_namespace(name)
    with run_fixture(tmp_path, name="ns-upstream") as upstream:
        local_cluster.apply(
            [_http_mcp(name, "doomed", [{"name": "fx", "kind": "http", "endpoint": upstream.url}])]
        )
        await local_cluster.ready("mcp", "doomed", name)
        pids = _pids(local_cluster.pods(name, "app.kubernetes.io/instance=doomed"))
        assert pids
        local_cluster.kubectl("delete", "namespace", name, "--wait=false")
        await eventually(
            lambda: local_cluster.kubectl("get", "namespace", name, "--ignore-not-found").strip() == "",
            f"namespace {name} is gone",
            DEADLINE,
        )
        assert not any(pid_alive(p) for p in pids)


async def test_a_secret_key_missing_at_the_pod_shows_in_describe(
    local_cluster: LocalCluster, seed: list[dict[str, Any]]
) -> None:
    await local_cluster.ready("mcp", "github-tools", "team-a")
    # The user removes the token; the running proxies keep serving (the operator leaves them alone),
    # until a pod is replaced: the new one cannot start without the key.
    local_cluster.kubectl(
        "patch", "secret", "github-upstream-pat", "-n", "team-a", "--type=json", "-p",
        '[{"op":"remove","path":"/data/token"}]',
    )  # fmt: skip
    victim = local_cluster.pods("team-a", SEED_SELECTOR)[0]["metadata"]["name"]
    local_cluster.kubectl("delete", "pod", victim, "-n", "team-a", "--wait=false")
    missing = "couldn't find key token in Secret team-a/github-upstream-pat"

    def described() -> str | None:
        text = local_cluster.kubectl("describe", "mcp", "github-tools", "-n", "team-a")
        return text if "CreateContainerConfigError" in text and missing in text else None

    text = await eventually(described, "kubectl describe mcp names the missing key at the pod", DEADLINE)
    assert "SecretKeyNotFound" in text  # and Accepted says what the spec references that is gone
    mcp = local_cluster.get("mcp", "github-tools", "team-a")
    assert condition(mcp, "Ready")["status"] == "False"


async def test_a_proxy_that_cannot_start_leaves_the_mcp_not_ready_saying_why(
    local_cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    with run_fixture(tmp_path, name="bad-config-upstream") as upstream:
        local_cluster.apply(
            [_http_mcp(namespace, "keys", [{"name": "fx", "kind": "http", "endpoint": upstream.url}])]
        )
        await local_cluster.ready("mcp", "keys", namespace)
        # The session key is the user's to rotate; a malformed one rolls the pods, and the new proxy
        # refuses to start. The old pod keeps serving, and the MCP says it is not Ready and why.
        bad = base64.b64encode(b"k1:short").decode()
        local_cluster.kubectl(
            "patch",
            "secret",
            "keys-session",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            f'{{"data":{{"keys":"{bad}"}}}}',
        )
        why = "sessions.keysEnv: variable AGENTKUBE_SESSION_KEYS: key ring entry 1: key is not base64"

        def not_ready() -> dict[str, Any] | None:
            ready = condition(local_cluster.get("mcp", "keys", namespace), "Ready")
            return ready if ready.get("status") == "False" and why in ready.get("message", "") else None

        ready = await eventually(not_ready, "the MCP is not Ready, naming the proxy's own error", DEADLINE)
        assert ready["reason"] == "CrashLoopBackOff"
        assert why in local_cluster.kubectl("describe", "mcp", "keys", "-n", namespace)
        assert "k1:short" not in local_cluster.kubectl("get", "mcp", "keys", "-n", namespace, "-o", "yaml")
        url = await local_cluster.service_url(namespace, "keys", 8080)
        assert "echo" in await _tool_names(f"{url}/mcp")  # the old pod still serves
