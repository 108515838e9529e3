"""agentkube.testing.podnet against real network namespaces, real processes and real sockets.

No API server: the router is fed Service and EndpointSlice dicts shaped as the API server returns
them. The tests that make namespaces skip, with the reason, where the kernel refuses unprivileged
user namespaces.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from agentkube.testing import eventually
from agentkube.testing.podnet import PodSandbox, ServiceRouter

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

# A server for inside a Pod: answers every GET with who it is and what it was sent, HTTP/1.1
# keep-alive, so that the proxy's one-request-per-connection has to hold against a server that would
# gladly take a second request.
ECHO_SERVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

name, port = sys.argv[1], int(sys.argv[2])

class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = json.dumps({"pod": name, "path": self.path,
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", port), Echo).serve_forever()
"""

# A client for inside a Pod: the host's loopback server through HTTP_PROXY (absolute-form, urllib
# reads the variable) and through CONNECT (http.client's tunnel), and the same server without the
# proxy, which the Pod's own loopback must refuse.
EGRESS_CLIENT = r"""
import http.client, json, os, sys, urllib.request

url = sys.argv[1]
host, port = url.split("/")[2].split(":")
result = {}
result["absolute"] = urllib.request.urlopen(url + "/absolute", timeout=10).read().decode()
proxy = os.environ["HTTP_PROXY"].split("/")[2].split(":")
tunnel = http.client.HTTPConnection(proxy[0], int(proxy[1]), timeout=10)
tunnel.set_tunnel(host, int(port))
tunnel.request("GET", "/connect")
result["connect"] = tunnel.getresponse().read().decode()
try:
    direct = http.client.HTTPConnection(host, int(port), timeout=10)
    direct.request("GET", "/direct")
    result["direct"] = direct.getresponse().read().decode()
except OSError as error:
    result["direct"] = type(error).__name__
for extra in sys.argv[2:]:
    result[extra] = json.loads(urllib.request.urlopen(extra, timeout=10).read())["pod"]
print(json.dumps(result))
"""


def _user_namespaces() -> str | None:
    """None when unprivileged user + network namespaces can be made here, else why not."""
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "unshare/nsenter (util-linux) not on PATH"
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--net", "--", "true"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"the kernel refuses user namespaces here: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="session")
def user_namespaces() -> None:
    reason = _user_namespaces()
    if reason is not None:
        print(f"skipping pod-network tests: {reason}")
        pytest.skip(reason)


def service(
    namespace: str, name: str, *ports: tuple[int, str], cluster_ip: str = "10.96.0.20"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": namespace, "name": name},
        "spec": {
            "clusterIP": cluster_ip,
            "ports": [{"name": n, "port": p, "protocol": "TCP", "targetPort": p} for p, n in ports],
        },
    }


def endpoint_slice(
    namespace: str, service_name: str, endpoints: dict[str, dict[str, bool]], *, port: int = 8080
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": namespace,
            "name": f"{service_name}-abcde",
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": c} for ip, c in endpoints.items()],
    }


READY = {"ready": True, "serving": True, "terminating": False}
NOT_READY = {"ready": False, "serving": False, "terminating": False}


def running(pid: int) -> bool:
    """Whether the process exists and is no zombie (a killed child waits to be reaped as one)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def sockets_under(directory: Path) -> list[Path]:
    return [path for path in directory.glob("**/*") if path.is_socket()]


@dataclass
class Pod:
    name: str
    ip: str
    sandbox: PodSandbox
    server: asyncio.subprocess.Process | None


async def http_get(
    streams: tuple[asyncio.StreamReader, asyncio.StreamWriter], path: str = "/"
) -> dict[str, Any]:
    reader, writer = streams
    writer.write(f"GET {path} HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return json.loads(answer.partition(b"\r\n\r\n")[2])  # type: ignore[no-any-return]


@pytest.fixture
def changes() -> list[dict[str, str]]:
    """What ``router.local_addresses()`` was at each ``on_change`` call."""
    return []


@pytest.fixture
async def router(changes: list[dict[str, str]]) -> AsyncIterator[ServiceRouter]:
    r = ServiceRouter(on_change=lambda: changes.append(r.local_addresses()))
    async with r:
        yield r


@pytest.fixture
async def pods(
    user_namespaces: None, router: ServiceRouter, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[Pod]]]:
    """Start a Pod: a sandbox, known to the router by its IP, with the echo server on 8080 inside."""
    started: list[Pod] = []

    async def start(name: str, ip: str, *, serve: bool = True) -> Pod:
        sandbox = await PodSandbox.start(tmp_path / name, [8080], router.proxy_socket)
        pod = Pod(name, ip, sandbox, None)
        started.append(pod)
        if serve:
            pod.server = await asyncio.create_subprocess_exec(
                *sandbox.enter([sys.executable, "-c", ECHO_SERVER, name, "8080"])
            )
            await eventually(
                lambda: sandbox.open_connection(8080), f"{name} listens on 8080", 20, ignoring=(OSError,)
            )
        router.add_pod(ip, sandbox)
        return pod

    yield start
    for pod in started:
        if pod.server is not None and pod.server.returncode is None:
            pod.server.kill()
            await pod.server.wait()
        await pod.sandbox.stop()


async def test_two_pods_listen_on_the_same_port_each_in_its_namespace(
    pods: Callable[..., Awaitable[Pod]],
) -> None:
    a, b = await pods("pod-a", "10.244.0.11"), await pods("pod-b", "10.244.0.12")
    assert (await http_get(await a.sandbox.open_connection(8080)))["pod"] == "pod-a"
    assert (await http_get(await b.sandbox.open_connection(8080)))["pod"] == "pod-b"
    assert os.readlink(f"/proc/{a.sandbox.pid}/ns/net") != os.readlink(f"/proc/{b.sandbox.pid}/ns/net")
    assert os.readlink(f"/proc/{a.sandbox.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    # The per-port socket is the same Pod's port, for tools that speak to a Unix socket.
    plain = await asyncio.open_unix_connection(str(b.sandbox.socket_path(8080)))
    assert (await http_get(plain))["pod"] == "pod-b"
    with pytest.raises(ConnectionRefusedError, match="pod port 9999"):
        await a.sandbox.open_connection(9999)


async def test_proxy_spreads_requests_over_ready_endpoints_by_every_service_name(
    pods: Callable[..., Awaitable[Pod]], router: ServiceRouter
) -> None:
    await pods("pod-a", "10.244.0.11")
    await pods("pod-b", "10.244.0.12")
    router.update_service(service("team-a", "github-tools", (8080, "http")))
    router.update_slice(
        endpoint_slice("team-a", "github-tools", {"10.244.0.11": READY, "10.244.0.12": READY})
    )
    hosts = [
        "github-tools.team-a.svc.cluster.local",
        "github-tools.team-a.svc",
        "github-tools.team-a",
        "10.96.0.20",
    ]
    seen: collections.Counter[str] = collections.Counter()
    async with aiohttp.ClientSession() as http:
        for host in hosts:
            for _ in range(4):
                async with http.get(
                    f"http://{host}:8080/tools?page=2",
                    proxy=router.proxy_url,
                    proxy_headers={"Proxy-Authorization": "Basic c2VjcmV0"},
                ) as response:
                    assert response.status == 200
                    echo = await response.json()
                    assert response.headers["Connection"] == "close"
                seen[echo["pod"]] += 1
    assert seen == {"pod-a": 8, "pod-b": 8}
    assert echo["path"] == "/tools?page=2"
    assert echo["headers"]["host"] == "10.96.0.20:8080"
    assert echo["headers"]["connection"] == "close"
    assert "proxy-authorization" not in echo["headers"]
    assert "proxy-connection" not in echo["headers"]


async def test_service_port_listener_spreads_over_ready_endpoints_and_goes_with_the_service(
    pods: Callable[..., Awaitable[Pod]], router: ServiceRouter, changes: list[dict[str, str]]
) -> None:
    await pods("pod-a", "10.244.0.11")
    await pods("pod-b", "10.244.0.12")
    router.update_service(service("team-a", "github-tools", (8080, "http")))
    router.update_slice(
        endpoint_slice("team-a", "github-tools", {"10.244.0.11": READY, "10.244.0.12": READY})
    )
    await router.listeners_synced()
    address = router.local_address("team-a", "github-tools", 8080)
    assert address is not None and address.startswith("127.0.0.1:")
    assert changes[-1] == {"team-a/github-tools:8080": address}
    seen: collections.Counter[str] = collections.Counter()
    # The listener balances connections, as kube-proxy does: one connection per request here.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        for _ in range(6):
            async with http.get(f"http://{address}/") as response:
                seen[(await response.json())["pod"]] += 1
    assert seen == {"pod-a": 3, "pod-b": 3}

    router.delete_service("team-a", "github-tools")
    await router.listeners_synced()
    assert router.local_address("team-a", "github-tools", 8080) is None
    assert changes[-1] == {}
    host, port = address.split(":")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(host, int(port))


async def test_preferred_service_ports_are_taken_when_free_and_a_free_port_otherwise() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with ServiceRouter(prefer_service_ports=True) as router:
        router.update_service(service("team-a", "one", (port, "http"), cluster_ip="10.96.0.21"))
        await router.listeners_synced()
        router.update_service(service("team-b", "two", (port, "http"), cluster_ip="10.96.0.22"))
        await router.listeners_synced()
        assert router.local_address("team-a", "one", port) == f"127.0.0.1:{port}"
        other = router.local_address("team-b", "two", port)
        assert other is not None and other != f"127.0.0.1:{port}"
        assert router.local_addresses() == {
            f"team-a/one:{port}": f"127.0.0.1:{port}",
            f"team-b/two:{port}": other,
        }


async def test_endpoints_not_ready_get_no_traffic_and_a_refusing_one_is_skipped(
    pods: Callable[..., Awaitable[Pod]], router: ServiceRouter
) -> None:
    await pods("pod-a", "10.244.0.11")
    await pods("pod-b", "10.244.0.12")
    await pods("pod-c", "10.244.0.13", serve=False)  # ready, says its slice, but nothing listens
    router.update_service(service("team-a", "github-tools", (8080, "http")))
    router.update_slice(
        endpoint_slice(
            "team-a", "github-tools", {"10.244.0.11": READY, "10.244.0.12": NOT_READY, "10.244.0.13": READY}
        )
    )
    await router.listeners_synced()
    address = router.local_address("team-a", "github-tools", 8080)
    seen: collections.Counter[str] = collections.Counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        for url, proxy in [("http://github-tools.team-a.svc.cluster.local:8080/", router.proxy_url)] * 4 + [
            (f"http://{address}/", None)
        ] * 4:
            async with http.get(url, proxy=proxy) as response:
                assert response.status == 200
                seen[(await response.json())["pod"]] += 1
    assert seen == {"pod-a": 8}

    # No ready endpoint left: kube-proxy's fallback to endpoints that still serve while terminating.
    terminating = {"ready": False, "serving": True, "terminating": True}
    router.update_slice(
        endpoint_slice("team-a", "github-tools", {"10.244.0.11": NOT_READY, "10.244.0.12": terminating})
    )
    async with aiohttp.ClientSession() as http, http.get(f"http://{address}/") as response:
        assert (await response.json())["pod"] == "pod-b"


async def test_a_pod_reaches_the_hosts_loopback_and_services_through_its_proxy_variables(
    pods: Callable[..., Awaitable[Pod]], router: ServiceRouter, tmp_path: Path
) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"host server saw {request.path}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        await pods("pod-a", "10.244.0.11")
        client = await pods("client", "10.244.0.20", serve=False)
        router.update_service(service("team-a", "github-tools", (8080, "http")))
        router.update_slice(endpoint_slice("team-a", "github-tools", {"10.244.0.11": READY}))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **client.sandbox.egress_env}
        assert env["HTTP_PROXY"] == env["https_proxy"] == "http://127.0.0.1:15001"
        assert env["NO_PROXY"] == ""
        by_name = "http://github-tools.team-a.svc.cluster.local:8080/"
        proc = await asyncio.create_subprocess_exec(
            *client.sandbox.enter([sys.executable, "-c", EGRESS_CLIENT, f"http://127.0.0.1:{port}", by_name]),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        result = json.loads(out)
        assert result == {
            "absolute": "host server saw /absolute",
            "connect": "host server saw /connect",
            "direct": "ConnectionRefusedError",  # the Pod's own loopback has no such server
            by_name: "pod-a",
        }
    finally:
        await runner.cleanup()


async def raw_proxy(router: ServiceRouter, request: bytes, *, half_close: bool = False) -> tuple[int, str]:
    host, port = router.proxy_address.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    if half_close:
        writer.write_eof()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


async def test_proxy_answers_what_it_cannot_do_with_503_502_and_400(router: ServiceRouter) -> None:
    router.update_service(service("team-a", "github-tools", (8080, "http")))
    router.update_slice(endpoint_slice("team-a", "github-tools", {"10.244.0.11": NOT_READY}))
    get = "GET http://{}/ HTTP/1.1\r\nHost: x\r\n\r\n".format
    assert await raw_proxy(router, get("github-tools.team-a.svc.cluster.local:8080").encode()) == (
        503,
        "no ready endpoints for team-a/github-tools port 8080\n",
    )
    assert await raw_proxy(router, b"CONNECT github-tools.team-a.svc:8080 HTTP/1.1\r\n\r\n") == (
        503,
        "no ready endpoints for team-a/github-tools port 8080\n",
    )
    assert await raw_proxy(router, get("github-tools.team-a.svc:9090").encode()) == (
        503,
        "service team-a/github-tools has no TCP port 9090\n",
    )
    assert await raw_proxy(router, get("missing.team-a.svc.cluster.local:80").encode()) == (
        503,
        "no service team-a/missing\n",
    )
    status, body = await raw_proxy(router, get("10.244.0.99:8080").encode())
    assert (status, body) == (502, "no pod with IP 10.244.0.99 on this node\n")
    # The same endpoint becomes ready but its Pod is not on this node: tried, refused, said so.
    router.update_slice(endpoint_slice("team-a", "github-tools", {"10.244.0.11": READY}))
    status, body = await raw_proxy(router, get("github-tools.team-a:8080").encode())
    assert status == 502 and "10.244.0.11:8080: no pod with IP 10.244.0.11 on this node" in body

    for malformed, why in [
        (b"garbage\r\n\r\n", "malformed request line"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "is not a proxy request"),
        (b"GET https://example.com/ HTTP/1.1\r\n\r\n", "only http:// URLs"),
        (b"CONNECT example.com HTTP/1.1\r\n\r\n", "CONNECT needs host:port"),
        (b"GET http://a:99999/ HTTP/1.1\r\n\r\n", "bad port"),
        (b"GET http://a/ HTTP/1.1\r\nno colon here\r\n\r\n", "malformed header line"),
    ]:
        status, body = await raw_proxy(router, malformed)
        assert status == 400 and why in body, (malformed, status, body)
    # A body the proxy never forwards is read and dropped, so the client gets the answer, not a reset.
    big = b"POST http://missing.team-a.svc:80/ HTTP/1.1\r\nContent-Length: 4000000\r\n\r\n" + b"x" * 4_000_000
    assert await raw_proxy(router, big) == (503, "no service team-a/missing\n")
    status, body = await raw_proxy(router, b"GET http://a/ HTTP/1.1\r\nHost: a\r\n", half_close=True)
    assert (status, body) == (400, "incomplete request head\n")
    status, _ = await raw_proxy(router, b"GET http://a/ HTTP/1.1\r\nX: " + b"y" * 70000 + b"\r\n\r\n")
    assert status == 431


async def test_stop_leaves_no_process_and_no_socket_file(user_namespaces: None, tmp_path: Path) -> None:
    router = ServiceRouter()
    await router.start()
    proxy_socket, proxy_address = router.proxy_socket, router.proxy_address
    router.update_service(service("team-a", "github-tools", (8080, "http")))
    await router.listeners_synced()
    listener = router.local_address("team-a", "github-tools", 8080)
    sandbox = await PodSandbox.start(tmp_path / "net", [8080, 9090], router.proxy_socket)
    sockets = [sandbox.directory / "pod.sock", sandbox.socket_path(8080), sandbox.socket_path(9090)]
    assert all(path.is_socket() for path in sockets)
    assert running(sandbox.pid)

    await sandbox.stop()
    await sandbox.stop()  # idempotent
    assert not running(sandbox.pid)
    assert sandbox.returncode == 0  # it left on its own when its stdin closed, not by SIGKILL
    assert not any(path.exists() for path in sockets)
    assert not (tmp_path / "net").exists()  # it made the directory, and it was left empty

    await router.stop()
    await router.stop()
    assert not proxy_socket.exists() and not proxy_socket.parent.exists()
    for address in (proxy_address, listener):
        assert address is not None
        host, port = address.split(":")
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(host, int(port))


async def test_sigterm_ends_a_sandbox_that_removes_its_own_sockets(
    user_namespaces: None, tmp_path: Path
) -> None:
    sandbox = await PodSandbox.start(tmp_path / "net", [8080], "/nonexistent/proxy.sock")
    os.kill(sandbox.pid, signal.SIGTERM)
    assert await asyncio.wait_for(sandbox.wait(), 10) == 0
    assert sockets_under(tmp_path) == []
    await sandbox.stop()


async def test_socket_paths_longer_than_sun_path_work(user_namespaces: None, tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    async with ServiceRouter(deep / "proxy.sock") as router:
        sandbox = await PodSandbox.start(deep / "pod", [8080], router.proxy_socket)
        try:
            assert len(str(sandbox.socket_path(8080))) > 108 and sandbox.socket_path(8080).is_socket()
            server = await asyncio.create_subprocess_exec(
                *sandbox.enter([sys.executable, "-c", ECHO_SERVER, "deep", "8080"])
            )
            try:
                streams = await eventually(
                    lambda: sandbox.open_connection(8080), "the server listens", 20, ignoring=(OSError,)
                )
                assert (await http_get(streams))["pod"] == "deep"
                # And out through the egress port to the proxy's long-named socket.
                router.add_pod("10.244.0.30", sandbox)
                fetch = "import sys, urllib.request as u; print(u.urlopen(sys.argv[1]).read().decode())"
                client = await asyncio.create_subprocess_exec(
                    *sandbox.enter([sys.executable, "-c", fetch, "http://10.244.0.30:8080/"]),
                    env={"PATH": os.environ.get("PATH", ""), **sandbox.egress_env},
                    stdout=asyncio.subprocess.PIPE,
                )
                out, _ = await asyncio.wait_for(client.communicate(), 30)
                assert json.loads(out)["pod"] == "deep"
            finally:
                server.kill()
                await server.wait()
        finally:
            await sandbox.stop()
    assert sockets_under(tmp_path) == []


# Starts a sandbox and, inside it, a long sleep with the parent-death signal set as the kubelet sets
# it; prints both pids and waits to be killed.
ORPHAN_PARENT = r"""
import asyncio, sys, tempfile
from pathlib import Path
from agentkube.testing.controlplane import _die_with_parent
from agentkube.testing.podnet import PodSandbox, ServiceRouter

async def main():
    router = ServiceRouter(Path(sys.argv[1]).parent / "proxy.sock")
    await router.start()
    sandbox = await PodSandbox.start(Path(sys.argv[1]), [8080], router.proxy_socket)
    argv = sandbox.enter(["sleep", "600"])
    inner = await asyncio.create_subprocess_exec(*argv, preexec_fn=_die_with_parent)
    print(sandbox.pid, inner.pid, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_sandbox_and_what_runs_in_it_die_with_a_killed_parent(
    user_namespaces: None, tmp_path: Path
) -> None:
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ORPHAN_PARENT, str(tmp_path / "net"), stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    try:
        assert parent.stdout is not None
        line = await asyncio.wait_for(parent.stdout.readline(), 30)
        sandbox_pid, inner_pid = map(int, line.split())
        assert running(sandbox_pid) and running(inner_pid)
        # nsenter joins, then execs in place: the same pid, in the Pod's namespace once it has.
        await eventually(
            lambda: os.readlink(f"/proc/{inner_pid}/ns/net") == os.readlink(f"/proc/{sandbox_pid}/ns/net"),
            "the process runs in the Pod's network namespace",
            10,
        )
    finally:
        parent.send_signal(signal.SIGKILL)
        await parent.wait()

    await eventually(
        lambda: not running(sandbox_pid) and not running(inner_pid),
        "the sandbox and its process are gone",
        10,
    )


# Runs inside a user namespace whose user.max_user_namespaces is 0: a real unshare failure.
UNSHARE_REFUSED = r"""
import asyncio, sys
from pathlib import Path
from agentkube.testing.podnet import PodSandbox, PodSandboxError

async def main():
    try:
        await PodSandbox.start(Path(sys.argv[1]), [8080], "/nonexistent/proxy.sock")
    except PodSandboxError as error:
        print(error)
    else:
        print("started")

asyncio.run(main())
"""


async def test_a_refused_namespace_is_a_pod_sandbox_error_that_says_why(
    user_namespaces: None, tmp_path: Path
) -> None:
    script = f'echo 0 > /proc/sys/user/max_user_namespaces && exec {sys.executable} -c "$0" "$1"'
    proc = await asyncio.create_subprocess_exec(
        "unshare",
        "--user",
        "--map-root-user",
        "--",
        "sh",
        "-c",
        script,
        UNSHARE_REFUSED,
        str(tmp_path / "net"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    message = out.decode().strip()
    assert message.startswith("cannot create a network namespace: "), (message, err.decode())
    assert "unshare failed: No space left on device" in message
    assert "user.max_user_namespaces" in message
    assert sockets_under(tmp_path) == []


# The whole path as an unprivileged user: a router, a Pod with a server, a request by Service name.
UNPRIVILEGED = r"""
import asyncio, json, os, sys, urllib.request
from pathlib import Path
from agentkube.testing.podnet import PodSandbox, ServiceRouter

async def main():
    async with ServiceRouter(Path(sys.argv[1]) / "proxy.sock") as router:
        sandbox = await PodSandbox.start(Path(sys.argv[1]) / "pod", [8080], router.proxy_socket)
        argv = sandbox.enter([sys.executable, "-c", sys.argv[2], "pod-a", "8080"])
        server = await asyncio.create_subprocess_exec(*argv)
        router.add_pod("10.244.0.11", sandbox)
        router.update_service({"metadata": {"namespace": "team-a", "name": "tools"},
                               "spec": {"ports": [{"name": "http", "port": 80}]}})
        router.update_slice({"metadata": {"namespace": "team-a", "name": "tools-x",
                                          "labels": {"kubernetes.io/service-name": "tools"}},
                             "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
                             "endpoints": [{"addresses": ["10.244.0.11"], "conditions": {"ready": True}}]})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": router.proxy_url}))
        for _ in range(200):
            try:
                await sandbox.open_connection(8080)
                break
            except OSError:
                await asyncio.sleep(0.05)
        url = "http://tools.team-a.svc.cluster.local/"
        body = await asyncio.to_thread(lambda: opener.open(url, timeout=10).read())
        server.kill()
        await server.wait()
        await sandbox.stop()
    print(json.dumps({"uid": os.getuid(), "pod": json.loads(body)["pod"]}))

asyncio.run(main())
"""


def python_for(uid: int) -> tuple[str, str] | None:
    """A Python that ``uid`` may run inside a user namespace, with the PYTHONPATH that gives it this
    environment's packages: ours, or (when ours lives where that user cannot reach, say under /root) a
    system Python of the same version. None when there is neither."""
    site = [p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)]
    path = os.pathsep.join([str(ROOT), *site])
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for python in dict.fromkeys([sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"]):
        as_user = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
        probe = subprocess.run(
            [
                *as_user,
                "unshare",
                "--user",
                "--map-root-user",
                "--",
                python,
                "-c",
                "import agentkube.testing.podnet",
            ],
            env={"PYTHONPATH": path, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            cwd="/",
            capture_output=True,
        )
        if probe.returncode == 0:
            return python, path
    return None


async def test_works_as_an_unprivileged_user(user_namespaces: None) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip(
            "needs root and setpriv to switch to an unprivileged user (this run is that user already)"
        )
    found = python_for(65534)
    if found is None:
        pytest.skip(f"no Python with this environment's packages that uid 65534 may run ({sys.executable})")
    python, search = found
    work = Path(tempfile.mkdtemp(prefix="agentkube-podnet-"))
    try:
        os.chown(work, 65534, 65534)
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
        proc = await asyncio.create_subprocess_exec(
            *as_nobody,
            python,
            "-c",
            UNPRIVILEGED,
            str(work),
            ECHO_SERVER,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd="/",
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "PYTHONPATH": search},
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        assert json.loads(out) == {"uid": 65534, "pod": "pod-a"}
        assert sockets_under(work) == []
    finally:
        shutil.rmtree(work, ignore_errors=True)
