"""The local node (``agentkube.testing.kubelet``) as a kubelet, against a real API server and a real
kube-controller-manager: plain Pods, a Deployment behind a Service, and what is left when it stops.

One control plane and node for the module; each test makes a namespace of its own. The node stands
this interpreter in for the image ``IMAGE``, so a container without a ``command`` runs
``python <args>``; most run ``SERVER``, a small HTTP server that answers with what its process sees
(environment, files under the directories it is given, its pid) and whose readiness and liveness a
test can switch. The tests read it at the Pod's IP through the node's forward proxy, as another Pod
would.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from agentkube.runtime.client import Client
from agentkube.runtime.errors import ApiError, NotFound
from agentkube.runtime.gvk import GVK
from agentkube.testing import ControlPlane, eventually
from agentkube.testing.controlplane import _die_with_parent
from test.processes import container_pid, descendants, pid_alive

pytestmark = pytest.mark.integration

IMAGE = "agentkube.test/local:1"
NODE = "agentkube-local"
PORT = 8080
DEADLINE = 30.0
"""Seconds a Pod may take to get where a test waits for it: about one here, the rest is margin for
a loaded 2-core machine."""

NAMESPACE = GVK("", "v1", "Namespace")
POD = GVK("", "v1", "Pod")
SECRET = GVK("", "v1", "Secret")
ENDPOINT_SLICE = GVK("discovery.k8s.io", "v1", "EndpointSlice")

SERVER = r"""
import json, os, signal, sys, tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

port, dirs = int(sys.argv[1]), sys.argv[2:]
state = {"ready": os.environ.get("START_READY", "1") == "1", "live": True}

if os.environ.get("TERM_FILE"):
    def on_term(signum, frame):
        Path(os.environ["TERM_FILE"]).write_text(os.readlink("/proc/self"))
        os._exit(0)
    signal.signal(signal.SIGTERM, on_term)

def files(d):
    return {str(p.relative_to(d)): p.read_text() for p in sorted(Path(d).rglob("*")) if p.is_file()}

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path, _, query = self.path.partition("?")
        code = 200
        if path == "/set":
            for item in filter(None, query.split("&")):
                key, _, value = item.partition("=")
                state[key] = value == "1"
            body = state
        elif path in ("/ready", "/healthz"):
            code = 200 if state["ready" if path == "/ready" else "live"] else 503
            body = state
        else:
            config = os.environ.get("CONFIG_FILE")
            body = {
                "pid": int(os.readlink("/proc/self")),  # as the node sees it, not in the Pod's PID namespace
                "hostname": os.environ.get("HOSTNAME"),
                "env": dict(os.environ),
                "argv": sys.argv[1:],
                "cwd": os.getcwd(),
                "tmpdir": tempfile.gettempdir(),
                "files": [files(d) for d in dirs],
                "config_file": Path(config).read_text() if config else None,
            }
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def server(
    name: str = "server", port: int = PORT, dirs: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    """A container running ``SERVER`` on ``port``, reporting the files under ``dirs``."""
    container: dict[str, Any] = {
        "name": name,
        "image": IMAGE,
        "args": ["-c", SERVER, str(port), *dirs],
        "ports": [{"containerPort": port, "name": "http"}],
    }
    container.update(extra)
    return container


def pod_object(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": list(containers), "terminationGracePeriodSeconds": 5, **spec},
    }


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or ():
        if c.get("type") == ctype:
            return dict(c)
    return {}


def container_status(pod: dict[str, Any], name: str = "server") -> dict[str, Any]:
    for c in (pod.get("status") or {}).get("containerStatuses") or ():
        if c["name"] == name:
            return dict(c)
    return {}


def waiting_reason(pod: dict[str, Any], name: str = "server") -> str:
    return str(container_status(pod, name).get("state", {}).get("waiting", {}).get("reason", ""))


async def all_gone(pids: dict[int, str] | list[int], what: str, within: float = DEADLINE) -> None:
    def gone() -> bool:
        return not [p for p in pids if pid_alive(p)]

    try:
        await eventually(gone, what, within)
    except AssertionError:
        alive = {p: (pids[p] if isinstance(pids, dict) else "") for p in pids if pid_alive(p)}
        raise AssertionError(f"still running after {within:g} s: {alive}") from None


# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    with ControlPlane(crd_paths=[], controller_manager=True) as cp:
        cp.start_node([IMAGE], entrypoint=sys.executable)
        yield cp


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def api(plane: ControlPlane) -> AsyncIterator[Client]:
    assert plane.kubeconfig is not None
    async with await Client.from_kubeconfig(str(plane.kubeconfig)) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def ns(api: Client) -> AsyncIterator[str]:
    """A fresh namespace, deleted afterwards (the namespace controller and the node end its Pods)."""
    name = f"node-{uuid.uuid4().hex[:8]}"
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    with contextlib.suppress(NotFound):
        await api.delete(NAMESPACE, name)


async def create(api: Client, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Create ``obj`` in ``ns``; retried while the namespace's default ServiceAccount, which Pods
    need to be admitted, does not exist yet."""
    obj = {**obj, "metadata": {**obj["metadata"], "namespace": ns}}

    async def attempt() -> dict[str, Any]:
        return await api.create(obj)

    created: dict[str, Any] = await eventually(
        attempt, f"{obj['kind']} {obj['metadata']['name']} created", 10.0, ignoring=(ApiError,)
    )
    return created


async def get_pod(api: Client, ns: str, name: str) -> dict[str, Any]:
    return await api.get(POD, name, ns)


async def pod_where(
    api: Client, ns: str, name: str, check: Any, what: str, within: float = DEADLINE
) -> dict[str, Any]:
    """The Pod once ``check(pod)`` holds; the Pod's status in the failure message when it does not."""
    last: dict[str, Any] = {}

    async def probe() -> dict[str, Any] | None:
        nonlocal last
        last = await get_pod(api, ns, name)
        return last if check(last) else None

    try:
        result: dict[str, Any] = await eventually(probe, f"pod {ns}/{name}: {what}", within)
    except AssertionError as error:
        raise AssertionError(f"{error}\nstatus: {json.dumps(last.get('status'), indent=1)}") from None
    return result


def running(name: str = "server") -> Any:
    return lambda pod: (
        "running" in container_status(pod, name).get("state", {}) and pod["status"].get("podIP")
    )


async def ask(plane: ControlPlane, pod: dict[str, Any], path: str = "/", port: int = PORT) -> tuple[int, Any]:
    """GET ``path`` from the Pod at its IP through the node's forward proxy: status and JSON body."""
    url = f"http://{pod['status']['podIP']}:{port}{path}"
    async with aiohttp.ClientSession() as http, http.get(url, proxy=plane.node_proxy) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


async def answer(plane: ControlPlane, pod: dict[str, Any], path: str = "/", port: int = PORT) -> Any:
    """The JSON body of a 200 from the Pod, once its server listens."""

    async def attempt() -> Any:
        status, body = await ask(plane, pod, path, port)
        return body if status == 200 else None

    return await eventually(
        attempt,
        f"pod {pod['metadata']['name']} answers {path} on {port}",
        DEADLINE,
        ignoring=(aiohttp.ClientError,),
    )


# ------------------------------------------------------------------------------ what a Pod is given


async def test_the_process_sees_the_env_and_volumes_its_pod_spec_gives(
    plane: ControlPlane, api: Client, ns: str
) -> None:
    await create(
        api,
        ns,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "app-config"},
            "data": {"app.yaml": "greeting: hello\n", "LEVEL": "debug"},
        },
    )
    await create(
        api,
        ns,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "sidecar-config"},
            "data": {"app.yaml": "greeting: from the sidecar\n"},
        },
    )
    await create(
        api,
        ns,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "app-secret"},
            "data": {"token": b64("s3cret-token"), "other": b64("not mounted")},
        },
    )
    main = server(
        "server",
        PORT,
        ("/etc/config", "/etc/secret", "/etc/podinfo"),
        env=[
            {"name": "GREETING", "value": "hello"},
            {"name": "MESSAGE", "value": "$(GREETING) world, $$(GREETING) is escaped, $(UNDEFINED) stays"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "token"}}},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "LEVEL"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {
                "name": "CPU_MILLIS",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}},
            },
            {"name": "CONFIG_FILE", "value": "/etc/config/app.yaml"},
            {"name": "WHERE", "value": "$(POD_NAME)@$(POD_IP)"},
        ],
        envFrom=[{"configMapRef": {"name": "app-config"}, "prefix": "CM_"}],
        resources={"limits": {"cpu": "250m", "memory": "64Mi"}},
        volumeMounts=[
            {"name": "config", "mountPath": "/etc/config"},
            {"name": "secret", "mountPath": "/etc/secret", "readOnly": True},
            {"name": "scratch", "mountPath": "/tmp"},
            {"name": "podinfo", "mountPath": "/etc/podinfo"},
        ],
        workingDir="/tmp",
    )
    # Another container mounts another volume at the same path: each sees its own.
    sidecar = server(
        "sidecar",
        PORT + 1,
        ("/etc/config",),
        volumeMounts=[{"name": "sidecar-config", "mountPath": "/etc/config"}],
    )
    sidecar["ports"][0]["name"] = "sidecar"
    spec = pod_object("env-pod", main, sidecar)
    spec["spec"]["volumes"] = [
        {"name": "config", "configMap": {"name": "app-config"}},
        {
            "name": "secret",
            "secret": {"secretName": "app-secret", "items": [{"key": "token", "path": "token.txt"}]},
        },
        {"name": "scratch", "emptyDir": {}},
        {"name": "sidecar-config", "configMap": {"name": "sidecar-config"}},
        {
            "name": "podinfo",
            "downwardAPI": {
                "items": [
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                    {
                        "path": "cpu",
                        "resourceFieldRef": {
                            "containerName": "server",
                            "resource": "limits.cpu",
                            "divisor": "1m",
                        },
                    },
                ]
            },
        },
    ]
    await create(api, ns, spec)
    pod = await pod_where(
        api, ns, "env-pod", lambda p: condition(p, "Ready").get("status") == "True", "Ready"
    )
    assert pod["spec"]["nodeName"] == NODE and pod["status"]["phase"] == "Running"
    ip = pod["status"]["podIP"]
    assert ip.startswith("10.244.0.")

    seen = await answer(plane, pod)
    env = seen["env"]
    assert env["GREETING"] == "hello"
    assert env["MESSAGE"] == "hello world, $(GREETING) is escaped, $(UNDEFINED) stays"
    assert env["TOKEN"] == "s3cret-token"
    assert env["LEVEL"] == "debug" and env["CM_LEVEL"] == "debug"
    assert env["POD_NAME"] == "env-pod" == seen["hostname"]
    assert env["POD_IP"] == ip
    assert env["WHERE"] == f"env-pod@{ip}"
    assert env["NODE"] == NODE
    assert env["APP"] == "env-pod"
    assert env["CPU_MILLIS"] == "250"
    assert env["HTTP_PROXY"].startswith("http://127.0.0.1:")
    # Mount paths in env values, args and workingDir lead to the directories standing in for them.
    assert env["CONFIG_FILE"] != "/etc/config/app.yaml"
    assert seen["config_file"] == "greeting: hello\n"
    assert seen["files"] == [
        {"app.yaml": "greeting: hello\n", "LEVEL": "debug"},
        {"token.txt": "s3cret-token"},
        {"name": "env-pod", "cpu": "250"},
    ]
    # The ServiceAccount admission plugin gave the Pod a projected token volume; it started anyway.
    assert any("serviceAccountToken" in str(v.get("projected")) for v in pod["spec"]["volumes"])
    assert seen["tmpdir"] != "/tmp" and seen["cwd"] == seen["tmpdir"]

    beside = await answer(plane, pod, port=PORT + 1)
    assert beside["files"] == [{"app.yaml": "greeting: from the sidecar\n"}]
    assert beside["tmpdir"] == "/tmp"  # it mounts nothing at /tmp
    assert "TOKEN" not in beside["env"]
    assert beside["pid"] != seen["pid"]


async def test_a_missing_secret_or_key_keeps_the_container_waiting_until_it_is_there(
    plane: ControlPlane, api: Client, ns: str
) -> None:
    def token_from(secret: str) -> dict[str, Any]:
        ref = {"secretKeyRef": {"name": secret, "key": "token"}}
        return server(env=[{"name": "TOKEN", "valueFrom": ref}])

    await create(
        api,
        ns,
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keyless"}, "data": {"x": b64("1")}},
    )
    await create(api, ns, pod_object("no-secret", token_from("later")))
    await create(api, ns, pod_object("no-key", token_from("keyless")))

    def config_error(pod: dict[str, Any]) -> bool:
        return waiting_reason(pod) == "CreateContainerConfigError"

    no_secret = await pod_where(api, ns, "no-secret", config_error, "CreateContainerConfigError")
    assert container_status(no_secret)["state"]["waiting"]["message"] == 'secret "later" not found'
    assert no_secret["status"]["phase"] == "Pending"
    assert condition(no_secret, "Ready")["status"] == "False"
    no_key = await pod_where(api, ns, "no-key", config_error, "CreateContainerConfigError")
    assert container_status(no_key)["state"]["waiting"]["message"] == (
        f"couldn't find key token in Secret {ns}/keyless"
    )

    await create(
        api,
        ns,
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "later"}, "data": {"token": b64("t1")}},
    )
    await api.patch(SECRET, "keyless", ns, {"data": {"token": b64("t2")}})
    no_secret = await pod_where(api, ns, "no-secret", running(), "running once its Secret exists")
    no_key = await pod_where(api, ns, "no-key", running(), "running once its key exists")
    assert (await answer(plane, no_secret))["env"]["TOKEN"] == "t1"
    assert (await answer(plane, no_key))["env"]["TOKEN"] == "t2"
    assert container_status(no_secret)["restartCount"] == 0


# ------------------------------------------------------------------------------------------- probes


async def test_the_readiness_probe_drives_the_pods_ready_condition(
    plane: ControlPlane, api: Client, ns: str
) -> None:
    probe = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1}
    await create(
        api,
        ns,
        pod_object("probed", server(readinessProbe=probe, env=[{"name": "START_READY", "value": "0"}])),
    )

    def ready(want: bool) -> Any:
        def check(pod: dict[str, Any]) -> bool:
            status = "True" if want else "False"
            return (
                container_status(pod).get("ready") is want
                and condition(pod, "Ready").get("status") == status
                and condition(pod, "ContainersReady").get("status") == status
            )

        return check

    pod = await pod_where(api, ns, "probed", running(), "running")
    assert container_status(pod)["ready"] is False
    assert (await answer(plane, pod, "/set?ready=1"))["ready"] is True
    pod = await pod_where(api, ns, "probed", ready(True), "Ready once /ready answers 200")
    assert condition(pod, "Ready").get("reason") is None

    assert (await answer(plane, pod, "/set?ready=0"))["ready"] is False
    pod = await pod_where(api, ns, "probed", ready(False), "not Ready once /ready answers 503")
    assert condition(pod, "Ready")["reason"] == "ContainersNotReady"
    assert condition(pod, "Ready")["message"] == "containers with unready status: [server]"
    # Not ready is not dead: the same process, never restarted.
    assert container_status(pod)["restartCount"] == 0 and "running" in container_status(pod)["state"]


async def test_a_failing_liveness_probe_restarts_the_container(
    plane: ControlPlane, api: Client, ns: str
) -> None:
    # Two failures a second apart, after a second: room for the server to start listening.
    probe = {
        "httpGet": {"path": "/healthz", "port": PORT},
        "initialDelaySeconds": 1,
        "periodSeconds": 1,
        "failureThreshold": 2,
    }
    await create(api, ns, pod_object("alive", server(livenessProbe=probe)))
    pod = await pod_where(api, ns, "alive", running(), "running")
    first = container_pid(container_status(pod))
    await answer(plane, pod)  # the probe passes while it answers
    assert container_status(await get_pod(api, ns, "alive"))["restartCount"] == 0

    await answer(plane, pod, "/set?live=0")
    pod = await pod_where(
        api, ns, "alive", lambda p: container_status(p).get("restartCount", 0) >= 1, "restarted"
    )
    status = container_status(pod)
    terminated = status["lastState"]["terminated"]
    assert terminated["exitCode"] == 128 + signal.SIGTERM  # the probe's SIGTERM ended it
    assert terminated["reason"] == "Error"
    assert terminated["containerID"] == f"agentkube-local://{first}"
    assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    await all_gone([first], "the unhealthy process is gone")


async def test_a_crashing_container_backs_off_and_keeps_its_log_tail_as_the_message(
    api: Client, ns: str, tmp_path: Path
) -> None:
    # It starts a program of its own first (as a proxy starts a stdio upstream), which would run on.
    crash = textwrap.dedent(
        """
        import os, subprocess, sys
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        me = os.readlink("/proc/self")  # pids as the node sees them: /proc is the node's
        with open(os.environ["HELPERS"], "a") as f:
            print(open(f"/proc/{me}/task/{me}/children").read().split()[0], file=f)
        for i in range(100):
            print(f"starting {i}", file=sys.stderr)
        print("config.yaml: upstreams[0].url: not an http(s) URL", file=sys.stderr)
        sys.exit(1)
        """
    )
    helpers = tmp_path / "helpers"
    container = {
        "name": "server",
        "image": IMAGE,
        "args": ["-c", crash],
        "env": [{"name": "HELPERS", "value": str(helpers)}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    await create(api, ns, pod_object("crash", container))

    def restarted(n: int) -> Any:
        return lambda p: container_status(p).get("restartCount", 0) >= n

    pod = await pod_where(api, ns, "crash", restarted(1), "restarted once")
    status = container_status(pod)
    terminated = status["lastState"]["terminated"]
    assert terminated["exitCode"] == 1 and terminated["reason"] == "Error"
    lines = terminated["message"].splitlines()
    assert lines[-1] == "config.yaml: upstreams[0].url: not an http(s) URL"
    assert len(lines) == 80 and lines[0] == "starting 21"
    waiting = status["state"]["waiting"]
    assert waiting["reason"] == "CrashLoopBackOff"
    assert waiting["message"].startswith("back-off 10s restarting failed container=server pod=crash_")
    assert pod["status"]["phase"] == "Running" and condition(pod, "Ready")["status"] == "False"
    # What the container started goes with it, as a container's processes do when it exits.
    await all_gone([int(line) for line in helpers.read_text().split()], "the crashed run's helper is gone")

    # After the first back-off (10 s) it runs and fails again.
    pod = await pod_where(api, ns, "crash", restarted(2), "restarted twice", within=DEADLINE + 10)
    status = container_status(pod)
    assert status["restartCount"] == 2
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["state"]["waiting"]["message"].startswith("back-off 20s ")
    started = [int(line) for line in helpers.read_text().split()]
    assert len(started) == 2
    await all_gone(started, "every run's helper is gone")


# ------------------------------------------------------------------------------ scheduling, deletion


async def test_a_pod_of_another_image_stays_pending_and_says_which_image(api: Client, ns: str) -> None:
    await create(api, ns, pod_object("nginx", {"name": "web", "image": "docker.io/library/nginx:1.27"}))

    def told(pod: dict[str, Any]) -> bool:
        return condition(pod, "PodScheduled").get("status") == "False"

    pod = await pod_where(api, ns, "nginx", told, "PodScheduled False")
    scheduled = condition(pod, "PodScheduled")
    assert scheduled["reason"] == "Unschedulable"
    assert scheduled["message"] == (
        f"the local node runs only the images ['{IMAGE}']; container web uses 'docker.io/library/nginx:1.27'"
    )
    assert pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")


async def test_a_pod_bound_to_the_node_with_another_image_and_no_command_says_why(
    api: Client, ns: str
) -> None:
    await create(api, ns, pod_object("bound", {"name": "web", "image": "nginx:1.27"}, nodeName=NODE))

    def config_error(pod: dict[str, Any]) -> bool:
        return waiting_reason(pod, "web") == "CreateContainerConfigError"

    pod = await pod_where(api, ns, "bound", config_error, "CreateContainerConfigError")
    message = container_status(pod, "web")["state"]["waiting"]["message"]
    assert message.startswith("container web: image 'nginx:1.27' is not one the local node runs")


async def test_deleting_a_pod_sends_sigterm_and_removes_it_once_its_process_is_gone(
    plane: ControlPlane, api: Client, ns: str, tmp_path: Path
) -> None:
    term_file = tmp_path / "terminated"
    await create(api, ns, pod_object("doomed", server(env=[{"name": "TERM_FILE", "value": str(term_file)}])))
    pod = await pod_where(api, ns, "doomed", running(), "running")
    pid = container_pid(container_status(pod))
    assert (await answer(plane, pod))["pid"] == pid
    assert pid_alive(pid)

    await api.delete(POD, "doomed", ns)

    async def removed() -> bool:
        try:
            await get_pod(api, ns, "doomed")
        except NotFound:
            return True
        return False

    await eventually(removed, "the Pod object is removed", DEADLINE)
    assert term_file.read_text() == str(pid)  # the process trapped SIGTERM
    await all_gone([pid], "the Pod's process is gone")


# ----------------------------------------------------------------------------------------- services


async def test_a_deployment_behind_a_service_serves_from_both_replicas(
    plane: ControlPlane, api: Client, ns: str
) -> None:
    probe = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1}
    template = pod_object("web", server(readinessProbe=probe))
    await create(
        api,
        ns,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": template["metadata"], "spec": template["spec"]},
            },
        },
    )
    await create(
        api,
        ns,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
        },
    )

    async def ready_pods() -> list[dict[str, Any]] | None:
        pods, _ = await api.list(POD, ns, label_selector="app=web")
        ready = [p for p in pods if condition(p, "Ready").get("status") == "True"]
        return ready if len(ready) == 2 else None

    pods: list[dict[str, Any]] = await eventually(ready_pods, "both replicas are Ready", DEADLINE)
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 2

    async def ready_slice() -> bool:
        slices, _ = await api.list(ENDPOINT_SLICE, ns, label_selector="kubernetes.io/service-name=web")
        endpoints = [e for s in slices for e in s.get("endpoints") or []]
        ready = {a for e in endpoints if (e.get("conditions") or {}).get("ready") for a in e["addresses"]}
        return ready == ips

    await eventually(ready_slice, "the EndpointSlice lists both pods ready", DEADLINE)

    url = await eventually(lambda: plane.service_url(ns, "web", 80), "the node serves web:80", DEADLINE)
    names = {p["metadata"]["name"] for p in pods}
    seen: set[str] = set()
    async with aiohttp.ClientSession() as http:
        for _ in range(20):
            async with http.get(url) as response:
                assert response.status == 200
                seen.add((await response.json())["hostname"])
            if seen == names:
                break
    assert seen == names, f"answers came from {seen} only"

    in_cluster = f"http://web.{ns}.svc.cluster.local:80/"
    async with aiohttp.ClientSession() as http, http.get(in_cluster, proxy=plane.node_proxy) as response:
        assert response.status == 200
        assert (await response.json())["hostname"] in names


# ------------------------------------------------------------------------------ nothing left behind

# A test process of its own: a control plane, the local node and one Pod; it reports the pids it
# knows to files in the directory it is given, stops the node when the file "stop" appears there,
# starts it again, then waits to be killed.
CHILD = r"""
import json, sys, time
from pathlib import Path
from agentkube.testing import ControlPlane, HTTPError

out, image = Path(sys.argv[1]), sys.argv[2]
plane = ControlPlane(crd_paths=[], controller_manager=True, work_dir=out / "plane").start()
plane.start_node([image], entrypoint=sys.executable)
pod = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "sleeper"},
    "spec": {"containers": [{"name": "c", "image": image, "args": ["-c", "import time; time.sleep(3600)"]}]},
}

def until(check, what, within=60.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            result = check()
        except HTTPError:
            result = None
        if result:
            return result
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting until {what}")

def pod_pid(not_this=None):
    status = plane.request("GET", "/api/v1/namespaces/default/pods/sleeper").get("status") or {}
    for c in status.get("containerStatuses") or []:
        if "running" in c.get("state", {}):
            pid = int(c["containerID"].rsplit("/", 1)[1])
            return pid if pid != not_this else None
    return None

def report(name, **more):
    node = plane.node.pid if plane.node and plane.node.exited() is None else None
    tmp = out / (name + ".tmp")
    tmp.write_text(json.dumps({"plane": plane.pids, "node": node, **more}))
    tmp.replace(out / name)

until(lambda: plane.request("POST", "/api/v1/namespaces/default/pods", pod), "the pod is created")
first = until(pod_pid, "the pod runs")
report("running.json", pod=first)
until(lambda: (out / "stop").exists(), "the test says stop", 600.0)
plane.stop_node()
report("stopped.json")
plane.start_node([image], entrypoint=sys.executable)
report("again.json", pod=until(lambda: pod_pid(not_this=first), "the restarted node runs the pod again"))
time.sleep(3600)
"""


@pytest.fixture
def child(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``CHILD`` running, its output in ``tmp_path/child.log``; killed afterwards if it still runs."""
    with (tmp_path / "child.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), IMAGE],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    yield process
    if process.poll() is None:
        process.kill()
        process.wait(10)


async def test_stop_node_and_a_killed_test_process_leave_no_process_behind(
    child: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    async def report(name: str) -> dict[str, Any]:
        def read() -> dict[str, Any] | None:
            if child.poll() is not None:
                output = (tmp_path / "child.log").read_text()[-3000:]
                raise AssertionError(f"the child exited {child.returncode}: {output}")
            path = tmp_path / name
            return json.loads(path.read_text()) if path.exists() else None

        result: dict[str, Any] = await eventually(read, f"the child wrote {name}", 60.0, interval=0.1)
        return result

    running = await report("running.json")
    tree = descendants(child.pid)
    etcd, apiserver, kcm, node = running["plane"]
    sandboxes = {p: cmd for p, cmd in tree.items() if "agentkube.testing.podnet sandbox" in cmd}
    assert {etcd, apiserver, kcm, node, running["pod"]} <= set(tree), tree
    assert len(sandboxes) == 2, tree  # unshare and the sandbox it forked into the Pod's PID namespace

    # stop_node() ends the node, its sandboxes and its Pods' processes, and nothing else.
    (tmp_path / "stop").touch()
    stopped = await report("stopped.json")
    ended = {node: "node", running["pod"]: "pod", **sandboxes}
    await all_gone(ended, "stop_node() ended the node and what it ran")
    assert stopped["node"] is None and stopped["plane"] == [etcd, apiserver, kcm]
    assert all(pid_alive(p) for p in (etcd, apiserver, kcm))

    # Started again, the node runs the Pod bound to it again; then SIGKILL takes everything.
    again = await report("again.json")
    tree = descendants(child.pid)
    assert again["pod"] in tree and again["node"] in tree
    assert any("agentkube.testing.podnet sandbox" in cmd for cmd in tree.values()), tree
    child.send_signal(signal.SIGKILL)
    await eventually(lambda: child.poll() is not None, "the child is dead", 10.0)
    await all_gone(tree, "everything the killed process started is gone")
