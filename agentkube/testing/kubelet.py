"""A local node for the operator's own image: a small kubelet that runs Pods as local processes.

``LocalNode`` registers a Node, binds to itself the Pods whose every container runs one of the images
it was given (the operator's ``--dataplane-image``), and runs each container's command and args as a
process on this machine, each Pod in network and PID namespaces of its own
(``agentkube.testing.podnet``), so two replicas listen on the same port without a fight and nothing a
Pod runs outlives it. Together with kube-controller-manager (the
real Deployment, ReplicaSet, EndpointSlice, disruption and garbage-collector controllers) that is
enough for what the operator deploys to run, roll, scale, serve and go away as in a cluster.

What it does as a kubelet would:
- Environment from ``env`` (``value`` with ``$(VAR)`` expansion, ``secretKeyRef``, ``configMapKeyRef``,
  ``fieldRef`` of the downward API, ``resourceFieldRef``) and ``envFrom``. A missing Secret, ConfigMap
  or key (not ``optional``) keeps the container from starting: ``waiting`` with reason
  ``CreateContainerConfigError`` and the kubelet's own message (``secret "x" not found``), tried again
  every few seconds.
- ConfigMap, Secret, ``downwardAPI`` (also ``projected`` sources of those three) and ``emptyDir``
  volumes are written to a private directory per Pod that stands in for the mount paths: a
  container's own ``mountPath`` prefix in its command, args, env values or ``workingDir`` is replaced
  by that directory (the longest mount that matches), and its mount at ``/tmp`` becomes ``TMPDIR``.
  A missing ConfigMap or Secret of a volume keeps the Pod in ``ContainerCreating``. The
  ``serviceAccountToken`` source of a projected volume (every Pod gets one unless it sets
  ``automountServiceAccountToken: false``) is left out: the Pod starts without a token file.
- Readiness and liveness probes (``httpGet``, ``tcpSocket``, ``exec``) with their thresholds and
  timeouts; a failed liveness probe restarts the container. Restarts follow ``restartPolicy`` with a
  back-off of 10 s doubling to 5 min (``CrashLoopBackOff``; the kubelet restarts the first time at
  once, this node waits 10 s already) and count in ``restartCount``; a failed exit's last log lines
  become ``lastState.terminated.message`` under ``terminationMessagePolicy: FallbackToLogsOnError``, and
  a process ended by a signal exits 128 + its number (143 for SIGTERM), as a container runtime says.
- Pod status (``phase``, conditions, ``podIP`` from ``10.244.0.0/24``, container states) is written from
  what the processes do, and only when it changes. A deleted Pod's containers get SIGTERM (their own
  program, as a kubelet signals a container's first process), their grace period, then SIGKILL, and
  the Pod is removed once they are gone. When a container's program exits, what it left in its
  process group is killed; when the Pod goes, or the node dies (SIGKILLed with its test run: the
  sandbox carries a parent-death signal and is the first process of the Pod's PID namespace), the
  kernel ends everything the Pod ran, whatever group it moved to.
- Services: ``agentkube.testing.podnet.ServiceRouter`` makes every Service reachable at its in-cluster
  name through a forward proxy (which the Pods get as ``HTTP_PROXY``) and on a loopback port per
  Service port; ``services.json`` in the node's directory lists them.

What it is not: a container runtime. There are no images (the entrypoint of an image is a local
program named for it), no filesystem isolation, no resource limits, no user switch (``runAsNonRoot``
and ``readOnlyRootFilesystem`` are not enforced), no ``kubectl logs``/``exec`` (the logs are files
under the Pod's directory), no init containers (their images must be the node's for the Pod to be
bound, but they are not run), no ``startupProbe``, no service-account tokens, no service-link
variables, and the readiness probe runs at least every ``readiness_period_cap`` seconds (default 1)
so that tests do not wait the default 10 s for a Pod to turn Ready. It authenticates with the
kubeconfig it is given.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ipaddress
import json
import math
import os
import platform
import re
import shutil
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog

from agentkube.api.core import quantity_value
from agentkube.runtime.client import Client
from agentkube.runtime.errors import ApiError, Conflict, NotFound
from agentkube.runtime.gvk import GVK
from agentkube.runtime.informer import Informer
from agentkube.runtime.reflector import Event, EventType
from agentkube.testing.controlplane import DEFAULT_NODE_NAME, SERVICES_FILE, _die_with_parent
from agentkube.testing.podnet import PodSandbox, PodSandboxError, ServiceRouter, program_pid

__all__ = ["DEFAULT_NODE_NAME", "LocalNode", "NodeOptions", "main"]

log = structlog.get_logger(__name__)

POD_CIDR = "10.244.0.0/24"

POD = GVK("", "v1", "Pod")
NODE = GVK("", "v1", "Node")
SECRET = GVK("", "v1", "Secret")
CONFIG_MAP = GVK("", "v1", "ConfigMap")
SERVICE = GVK("", "v1", "Service")
ENDPOINT_SLICE = GVK("discovery.k8s.io", "v1", "EndpointSlice")
LEASE = GVK("coordination.k8s.io", "v1", "Lease")
BINDING = GVK("", "v1", "Binding")

# How often a container whose configuration cannot be made (a missing Secret) is tried again.
CONFIG_RETRY = 2.0
# Lines and bytes of a failed container's log that become its termination message (the kubelet's).
MESSAGE_LINES, MESSAGE_BYTES = 80, 2048
# A container that ran this long without failing starts its back-off afresh (the kubelet's 10 min).
BACKOFF_RESET = 600.0
LEASE_SECONDS = 40
# A reference is everything between "$(" and the next ")", as the kubelet reads it: a name it does
# not know (even one no environment could hold, such as "A$(B") stays as written.
_VAR = re.compile(r"\$\$|\$\(([^)]*)\)")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class NodeOptions:
    """What the node runs and how (every field has a default but ``images`` and ``work_dir``)."""

    images: Mapping[str, Sequence[str]]
    """Image -> the local program standing in for its ENTRYPOINT, e.g.
    ``{"ghcr.io/agentkube/agentkube:0.3.0": ["/venv/bin/agentkube"]}``. Pods with another image
    stay Pending with a PodScheduled condition that says why."""
    work_dir: Path
    """Where Pod directories (volumes, logs, sockets) and ``services.json`` go."""
    name: str = DEFAULT_NODE_NAME
    readiness_period_cap: float = 1.0
    restart_backoff: tuple[float, float] = (10.0, 300.0)
    """First and longest delay before a failed container starts again."""
    prefer_service_ports: bool = False
    """Listen for a Service on 127.0.0.1 at its own port when that is free (``make run``)."""


class _ConfigError(Exception):
    """A container cannot be started yet; the message is the kubelet's."""


# ----------------------------------------------------------------------------------------- pure parts


def expand(value: str, env: Mapping[str, str]) -> str:
    """``$(VAR)`` from ``env`` as a kubelet expands it: unknown references stay as written, ``$$``
    is a literal ``$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR.sub(sub, value)


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """A downward-API ``fieldRef.fieldPath`` of ``pod``; ``_ConfigError`` for one the API does not
    offer."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    if m := re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path):
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or []),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or []),
    }
    if path not in simple:
        raise _ConfigError(f"unsupported fieldPath: {path}")
    return str(simple[path] or "")


def quantity(text: str | int) -> Decimal:
    """A resource quantity (``500m``, ``128Mi``, ``1e3``, ``2``) as an exact number of base units."""
    try:
        return quantity_value(text if isinstance(text, int) else str(text).strip())
    except (ValueError, ArithmeticError):
        raise _ConfigError(f"invalid quantity: {text!r}") from None


def node_capacity() -> dict[str, str]:
    """What the local node reports as its capacity (and allocatable): this machine's CPUs and memory."""
    cpu, memory = str(os.cpu_count() or 1), f"{_memory_bytes() // 1024}Ki"
    return {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "100Gi"}


def resource_value(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    """``resourceFieldRef`` (``limits.cpu``, ``requests.memory``...) rounded up in its divisor, as the
    kubelet does: an unset limit is the node's capacity (``node_capacity()``), an unset request 0."""
    kind, _, resource = str(ref.get("resource", "")).partition(".")
    if kind not in ("limits", "requests") or resource not in ("cpu", "memory", "ephemeral-storage"):
        raise _ConfigError(f"unsupported resource: {ref.get('resource')}")
    given = ((container.get("resources") or {}).get(kind) or {}).get(resource)
    if given is None:
        given = node_capacity()[resource] if kind == "limits" else "0"
    divisor = quantity(ref.get("divisor") or "1")
    if divisor <= 0:
        raise _ConfigError(f"invalid divisor: {ref.get('divisor')!r}")
    return str(math.ceil(quantity(given) / divisor))


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 * 2**30


def image_entrypoint(container: Mapping[str, Any], images: Mapping[str, Sequence[str]]) -> list[str]:
    """The argv of a container: its ``command`` (or the image's entrypoint) and its ``args``;
    ``_ConfigError`` when it has no command and its image is not one the node runs."""
    command = container.get("command")
    if not command:
        image = container.get("image")
        if not isinstance(image, str) or image not in images:
            raise _ConfigError(
                f"container {container.get('name')}: image {image!r} is not one the local node runs "
                f"({sorted(images)}); give the container a command"
            )
        command = images[image]
    return list(command) + list(container.get("args") or [])


def remap(value: str, mounts: Sequence[tuple[str, Path]]) -> str:
    """``value`` with a leading mount path replaced by the directory that stands in for it; of the
    mounts that match, the longest path wins, as a mount nested in another hides what is under it."""
    best: tuple[str, Path] | None = None
    for mount, local in mounts:
        root = mount.rstrip("/")
        if (value == mount or (root and value == root) or value.startswith(root + "/")) and (
            best is None or len(root) > len(best[0])
        ):
            best = (root, local)
    if best is None:
        return value
    root, local = best
    return str(local) + value[len(root) :] if value.startswith(root + "/") else str(local)


def log_tail(path: Path) -> str:
    """The last ``MESSAGE_LINES`` lines of a log, at most ``MESSAGE_BYTES`` bytes of them."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode(errors="replace").splitlines()[-MESSAGE_LINES:]
    return "\n".join(lines).encode()[-MESSAGE_BYTES:].decode(errors="ignore")


def schedulable(pod: Mapping[str, Any], node_labels: Mapping[str, str], images: Mapping[str, Any]) -> str:
    """Why ``pod`` cannot run on the node, or "" when it can."""
    spec = pod.get("spec") or {}
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if c.get("image") not in images:
            return (
                f"the local node runs only the images {sorted(images)}; container {c.get('name')} "
                f"uses {c.get('image')!r}"
            )
    for key, want in (spec.get("nodeSelector") or {}).items():
        if node_labels.get(key) != want:
            return f"nodeSelector {key}={want} does not match the local node"
    return ""


# ----------------------------------------------------------------------------------------- containers


@dataclass
class _Container:
    spec: dict[str, Any]
    restart_count: int = 0
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    proc: asyncio.subprocess.Process | None = None
    container_id: str = ""

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def status(self, image_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": image_id,
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out


class _PodWorker:
    """Runs one Pod: its sandbox, volumes and containers, and writes its status."""

    def __init__(self, node: LocalNode, pod: dict[str, Any], ip: str) -> None:
        self.node = node
        self.pod = pod
        self.uid = str(pod["metadata"]["uid"])
        self.ns = str(pod["metadata"]["namespace"])
        self.name = str(pod["metadata"]["name"])
        self.ip = ip
        self.dir = node.options.work_dir / "p" / self.uid[:12]
        self.sandbox: PodSandbox | None = None
        self.sandbox_message = ""
        known = {c["name"]: c for c in (pod.get("status") or {}).get("containerStatuses") or []}
        self.containers = [
            _Container(dict(c), restart_count=int(known.get(c["name"], {}).get("restartCount", 0)))
            for c in pod["spec"]["containers"]
        ]
        self.terminating = asyncio.Event()
        self.changed = asyncio.Event()
        self.transitions: dict[str, tuple[str, str]] = {}
        self.written: dict[str, Any] | None = None
        self.start_time = (pod.get("status") or {}).get("startTime") or _now()
        self.mounts: dict[str, list[tuple[str, Path]]] = {}
        self.log = log.bind(pod=f"{self.ns}/{self.name}")

    # ------------------------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Run until the Pod is deleted (``terminate()``), then stop its processes within its grace."""
        writer = asyncio.create_task(self._status_writer())
        containers: asyncio.Task[None] | None = None
        try:
            if await self._prepare():
                containers = asyncio.create_task(self._containers())
            await self.terminating.wait()
            await self._stop_processes()
            if containers is not None:
                await containers
        finally:
            if containers is not None and not containers.done():
                containers.cancel()
                await self._stop_processes(grace=0.0)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            if self.sandbox is not None:
                self.node.router.remove_pod(self.ip)
                await self.sandbox.stop()
            shutil.rmtree(self.dir, ignore_errors=True)

    async def _containers(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for c in self.containers:
                tg.create_task(self._run_container(c))

    def terminate(self) -> None:
        self.terminating.set()

    async def _prepare(self) -> bool:
        """Volumes and sandbox, tried until they can be made or the Pod goes; False when it went."""
        self.dir.mkdir(parents=True, exist_ok=True)
        while not self.terminating.is_set():
            try:
                self.mounts = await self._write_volumes()
                self.sandbox = await PodSandbox.start(
                    self.dir / "net", self._ports(), self.node.router.proxy_socket
                )
            except (_ConfigError, PodSandboxError) as error:
                self.sandbox_message = str(error)
                reason = (
                    "CreatePodSandboxError" if isinstance(error, PodSandboxError) else "ContainerCreating"
                )
                for c in self.containers:
                    c.state = {"waiting": {"reason": reason, "message": self.sandbox_message}}
                self.changed.set()
                await self._pause(CONFIG_RETRY)
                continue
            self.sandbox_message = ""
            self.node.router.add_pod(self.ip, self.sandbox)
            return True
        return False

    def _ports(self) -> list[int]:
        ports: set[int] = set()
        for c in self.containers:
            for p in c.spec.get("ports") or []:
                ports.add(int(p["containerPort"]))
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                spec = c.spec.get(probe) or {}
                for kind in ("httpGet", "tcpSocket"):
                    if kind in spec:
                        ports.add(self._port(c, spec[kind].get("port")))
        return sorted(ports)

    @staticmethod
    def _port(c: _Container, port: Any) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in c.spec.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        raise _ConfigError(f"container {c.name} has no port named {port!r}")

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.terminating.wait()

    # -------------------------------------------------------------------------------------- volumes

    async def _write_volumes(self) -> dict[str, list[tuple[str, Path]]]:
        """Write every volume under ``<pod>/v/<name>``; each container's (mountPath, directory) pairs,
        by container name (two containers may mount different volumes at one path)."""
        base = self.dir / "v"
        for volume in self.pod["spec"].get("volumes") or []:
            target = base / volume["name"]
            files = await self._volume_files(volume)
            if files is None:
                target.mkdir(parents=True, exist_ok=True)
                continue
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for rel, (data, mode) in files.items():
                path = target / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                path.chmod(mode | 0o600)  # the owner is the process reading it, whatever the mode
        return {
            c.name: [
                (str(m["mountPath"]), base / m["name"] / m.get("subPath", ""))
                for m in c.spec.get("volumeMounts") or []
            ]
            for c in self.containers
        }

    async def _volume_files(self, volume: Mapping[str, Any]) -> dict[str, tuple[bytes, int]] | None:
        """The files of a ConfigMap, Secret, downward-API or projected volume (None for an emptyDir)."""
        name = volume["name"]
        if "emptyDir" in volume:
            return None
        if "configMap" in volume or "secret" in volume:
            return await self._source_files(volume, volume)
        if "downwardAPI" in volume:
            return self._downward_files(volume["downwardAPI"], volume["downwardAPI"])
        if "projected" in volume:
            files: dict[str, tuple[bytes, int]] = {}
            for source in volume["projected"].get("sources") or []:
                if "serviceAccountToken" in source:
                    # Every Pod gets one through the ServiceAccount admission plugin. No token is
                    # written: no program could read it at its mount path (nothing remaps a path a
                    # client library has built in), and the Pod should start all the same.
                    continue
                if "downwardAPI" in source:
                    files.update(self._downward_files(source["downwardAPI"], volume["projected"]))
                    continue
                if "configMap" not in source and "secret" not in source:
                    kinds = ", ".join(source)
                    raise _ConfigError(f"volume {name}: projected {kinds} is not supported by the local node")
                files.update(await self._source_files(source, volume["projected"]))
            return files
        kinds = ", ".join(k for k in volume if k != "name")
        raise _ConfigError(f"volume {name}: {kinds} volumes are not supported by the local node")

    def _downward_files(
        self, source: Mapping[str, Any], holder: Mapping[str, Any]
    ) -> dict[str, tuple[bytes, int]]:
        mode = int(source.get("defaultMode", holder.get("defaultMode", 0o644)))
        pod = self._with_ips()
        out: dict[str, tuple[bytes, int]] = {}
        for item in source.get("items") or []:
            if "fieldRef" in item:
                value = field_value(pod, item["fieldRef"]["fieldPath"])
            else:
                ref = item.get("resourceFieldRef") or {}
                specs = [c.spec for c in self.containers if c.name == ref.get("containerName")]
                value = resource_value(specs[0] if specs else {}, ref)
            out[item["path"]] = (value.encode(), int(item.get("mode", mode)))
        return out

    async def _source_files(
        self, source: Mapping[str, Any], holder: Mapping[str, Any]
    ) -> dict[str, tuple[bytes, int]]:
        is_secret = "secret" in source
        ref = source["secret"] if is_secret else source["configMap"]
        obj_name = ref.get("secretName") or ref.get("name")
        data = await self.node.object_data(SECRET if is_secret else CONFIG_MAP, self.ns, obj_name)
        if data is None:
            if ref.get("optional"):
                return {}
            kind = "secret" if is_secret else "configmap"
            raise _ConfigError(f'MountVolume.SetUp failed: {kind} "{obj_name}" not found')
        mode = int(ref.get("defaultMode", holder.get("defaultMode", 0o644)))
        items = ref.get("items")
        if not items:
            return {k: (v, mode) for k, v in data.items()}
        out: dict[str, tuple[bytes, int]] = {}
        for item in items:
            if item["key"] not in data:
                if ref.get("optional"):
                    continue
                raise _ConfigError(f"MountVolume.SetUp failed: no key {item['key']} in {obj_name}")
            out[item["path"]] = (data[item["key"]], int(item.get("mode", mode)))
        return out

    # ----------------------------------------------------------------------------------------- env

    async def _env(self, c: _Container) -> dict[str, str]:
        """The container's environment from its spec; ``_ConfigError`` with the kubelet's message
        when a referenced Secret, ConfigMap or key is missing."""
        env: dict[str, str] = {}
        for source in c.spec.get("envFrom") or []:
            is_secret = "secretRef" in source
            ref = source.get("secretRef") or source.get("configMapRef") or {}
            data = await self.node.object_data(SECRET if is_secret else CONFIG_MAP, self.ns, ref["name"])
            if data is None:
                if ref.get("optional"):
                    continue
                raise _ConfigError(f'{"secret" if is_secret else "configmap"} "{ref["name"]}" not found')
            prefix = source.get("prefix", "")
            env.update({prefix + k: v.decode(errors="replace") for k, v in data.items()})
        for var in c.spec.get("env") or []:
            name = var["name"]
            source = var.get("valueFrom")
            if source is None:
                env[name] = expand(str(var.get("value", "")), env)
            elif "fieldRef" in source:
                env[name] = field_value(self._with_ips(), source["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in source:
                env[name] = resource_value(c.spec, source["resourceFieldRef"])
            else:
                value = await self._key_ref(source)
                if value is not None:
                    env[name] = value
        return env

    async def _key_ref(self, source: Mapping[str, Any]) -> str | None:
        is_secret = "secretKeyRef" in source
        ref = source["secretKeyRef"] if is_secret else source["configMapKeyRef"]
        kind, title = ("secret", "Secret") if is_secret else ("configmap", "ConfigMap")
        data = await self.node.object_data(SECRET if is_secret else CONFIG_MAP, self.ns, ref["name"])
        if data is None:
            if ref.get("optional"):
                return None
            raise _ConfigError(f'{kind} "{ref["name"]}" not found')
        if ref["key"] not in data:
            if ref.get("optional"):
                return None
            raise _ConfigError(f"couldn't find key {ref['key']} in {title} {self.ns}/{ref['name']}")
        return data[ref["key"]].decode(errors="replace")

    def _with_ips(self) -> dict[str, Any]:
        status = {
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "hostIP": self.node.host_ip,
            "hostIPs": [{"ip": self.node.host_ip}],
        }
        return {**self.pod, "status": {**(self.pod.get("status") or {}), **status}}

    # ----------------------------------------------------------------------------------- processes

    async def _run_container(self, c: _Container) -> None:
        backoff = self.node.options.restart_backoff[0]
        while not self.terminating.is_set():
            try:
                argv, env, cwd = await self._command(c)
            except _ConfigError as error:
                c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(error)}}
                self.changed.set()
                await self._pause(CONFIG_RETRY)
                continue
            started = time.monotonic()
            run_log = self.dir / "logs" / f"{c.name}.{c.restart_count}.log"
            code = await self._run_once(c, argv, env, cwd, run_log)
            if self.terminating.is_set():
                return
            finished = _now()
            terminated: dict[str, Any] = {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": c.state.get("running", {}).get("startedAt", finished),
                "finishedAt": finished,
                "containerID": c.container_id,
            }
            fallback = c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError"
            if code != 0 and fallback and (message := log_tail(run_log)):
                terminated["message"] = message
            c.last_state = {"terminated": terminated}
            c.ready = c.started = False
            policy = self.pod["spec"].get("restartPolicy", "Always")
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                c.state = {"terminated": terminated}
                self.changed.set()
                return
            if time.monotonic() - started > BACKOFF_RESET:
                backoff = self.node.options.restart_backoff[0]
            c.restart_count += 1
            c.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {backoff:g}s restarting failed container={c.name} "
                    f"pod={self.name}_{self.ns}({self.uid})",
                }
            }
            self.changed.set()
            await self._pause(backoff)
            backoff = min(backoff * 2, self.node.options.restart_backoff[1])
            _prune_logs(self.dir / "logs", c.name, keep=c.restart_count - 1)

    async def _command(self, c: _Container) -> tuple[list[str], dict[str, str], str]:
        env = await self._env(c)
        mounts = self.mounts.get(c.name, [])
        for var, value in list(env.items()):
            env[var] = remap(value, mounts)
        argv = image_entrypoint(c.spec, self.node.options.images)
        # The entrypoint standing in for an image's is a local program, not a path of the Pod's: only
        # what the Pod spec gives is expanded and moved to the directories standing in for mounts.
        ours = 0 if c.spec.get("command") else len(argv) - len(c.spec.get("args") or [])
        argv = argv[:ours] + [remap(expand(a, env), mounts) for a in argv[ours:]]
        process_env = dict(self.node.base_env)
        process_env["HOSTNAME"] = self.name
        assert self.sandbox is not None
        process_env.update(self.sandbox.egress_env)
        for mount, local in mounts:
            if mount.rstrip("/") == "/tmp":
                process_env["TMPDIR"] = str(local)
        process_env.update(env)
        found = shutil.which(argv[0], path=process_env.get("PATH"))
        if found is None:
            raise _ConfigError(f'exec: "{argv[0]}": executable file not found in $PATH')
        argv[0] = found
        given_dir = c.spec.get("workingDir")
        cwd = remap(given_dir, mounts) if given_dir else str(self.dir)
        return argv, process_env, cwd

    async def _run_once(
        self, c: _Container, argv: list[str], env: dict[str, str], cwd: str, run_log: Path
    ) -> int:
        assert self.sandbox is not None
        run_log.parent.mkdir(parents=True, exist_ok=True)
        with run_log.open("ab") as out:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self.sandbox.enter(argv),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    env=env,
                    cwd=cwd,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            except OSError as error:
                out.write(f"cannot start {argv[0]}: {error}\n".encode())
                return 128
        c.proc = proc
        c.container_id = f"agentkube-local://{await _program_pid(proc)}"
        c.state = {"running": {"startedAt": _now()}}
        c.started = True
        c.ready = "readinessProbe" not in c.spec
        self.changed.set()
        probes = asyncio.create_task(self._probe_loops(c, proc))
        try:
            code = await proc.wait()
            # What the program started and left behind in its process group ends with it, as the
            # processes of a container do when its first process exits.
            _signal_group(proc.pid, signal.SIGKILL)
            # A container killed by a signal exits 128 + its number in the Pod's status (137 for
            # SIGKILL), as a container runtime reports it; asyncio gives the negative number.
            return 128 - code if code < 0 else code
        finally:
            probes.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probes
            c.proc = None

    async def _stop_processes(self, grace: float | None = None) -> None:
        """SIGTERM to every running container's program (as a kubelet signals a container's first
        process), SIGKILL to all it runs after the grace period (``deletionGracePeriodSeconds``, else
        ``terminationGracePeriodSeconds``, else 30 s)."""
        if grace is None:
            given = self.pod["metadata"].get("deletionGracePeriodSeconds")
            if given is None:
                given = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
            grace = max(float(given), 0.0)
        running = [c.proc for c in self.containers if c.proc is not None and c.proc.returncode is None]
        for proc in running:
            _terminate(proc.pid)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await asyncio.gather(*(p.wait() for p in running))
        for proc in running:
            # What the program started (a stdio upstream) goes with it.
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()

    # -------------------------------------------------------------------------------------- probes

    async def _probe_loops(self, c: _Container, proc: asyncio.subprocess.Process) -> None:
        async with asyncio.TaskGroup() as tg:
            if "readinessProbe" in c.spec:
                tg.create_task(self._probe_loop(c, proc, "readinessProbe"))
            if "livenessProbe" in c.spec:
                tg.create_task(self._probe_loop(c, proc, "livenessProbe"))

    async def _probe_loop(self, c: _Container, proc: asyncio.subprocess.Process, kind: str) -> None:
        spec = c.spec[kind]
        period = float(spec.get("periodSeconds", 10))
        if kind == "readinessProbe":
            period = min(period, self.node.options.readiness_period_cap)
        successes = failures = 0
        await asyncio.sleep(float(spec.get("initialDelaySeconds", 0)))
        while proc.returncode is None:
            ok = await self._probe(c, spec)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if kind == "readinessProbe":
                if ok and not c.ready and successes >= int(spec.get("successThreshold", 1)):
                    c.ready = True
                    self.changed.set()
                elif not ok and c.ready and failures >= int(spec.get("failureThreshold", 3)):
                    c.ready = False
                    self.changed.set()
            elif not ok and failures >= int(spec.get("failureThreshold", 3)):
                self.log.info("liveness probe failed; restarting", container=c.name)
                _terminate(proc.pid)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(
                        float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
                    ):
                        await proc.wait()
                _signal_group(proc.pid, signal.SIGKILL)
                return
            await asyncio.sleep(period)

    async def _probe(self, c: _Container, spec: Mapping[str, Any]) -> bool:
        assert self.sandbox is not None
        timeout = float(spec.get("timeoutSeconds", 1))
        try:
            async with asyncio.timeout(timeout):
                if "httpGet" in spec:
                    get = spec["httpGet"]
                    return await _http_probe(self.sandbox, self._port(c, get.get("port")), get, self.ip)
                if "tcpSocket" in spec:
                    _, writer = await self.sandbox.open_connection(
                        self._port(c, spec["tcpSocket"].get("port"))
                    )
                    writer.close()
                    return True
                if "exec" in spec:
                    proc = await asyncio.create_subprocess_exec(
                        *self.sandbox.enter(list(spec["exec"]["command"])),
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.DEVNULL,
                        preexec_fn=_die_with_parent,
                    )
                    try:
                        return await proc.wait() == 0
                    finally:
                        if proc.returncode is None:
                            proc.kill()
        except (OSError, TimeoutError, _ConfigError, ValueError):
            return False
        return False

    # -------------------------------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        """The Pod status as the processes show it now."""
        sandboxed = self.sandbox is not None
        containers = [c.status("agentkube-local://" + str(c.spec.get("image", ""))) for c in self.containers]
        all_ready = all(c.ready for c in self.containers)
        any_running = any("running" in c.state for c in self.containers)
        reasons = [c.state["waiting"].get("reason", "") for c in self.containers if "waiting" in c.state]
        not_ready = (
            f"containers with unready status: [{' '.join(c.name for c in self.containers if not c.ready)}]"
        )
        conditions = [
            self._condition("PodReadyToStartContainers", sandboxed, "" if sandboxed else "SandboxNotReady"),
            self._condition("Initialized", True),
            self._condition("Ready", all_ready, "" if all_ready else "ContainersNotReady", not_ready),
            self._condition(
                "ContainersReady", all_ready, "" if all_ready else "ContainersNotReady", not_ready
            ),
            self._condition("PodScheduled", True),
        ]
        phase = "Running" if any_running or (sandboxed and "CrashLoopBackOff" in reasons) else "Pending"
        if self.containers and all("terminated" in c.state for c in self.containers):
            codes = [c.state["terminated"]["exitCode"] for c in self.containers]
            phase = "Succeeded" if all(code == 0 for code in codes) else "Failed"
        return {
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.node.host_ip,
            "hostIPs": [{"ip": self.node.host_ip}],
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "startTime": self.start_time,
            "containerStatuses": containers,
        }

    def _condition(self, ctype: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
        status = "True" if ok else "False"
        previous = self.transitions.get(ctype)
        if previous is None or previous[0] != status:
            self.transitions[ctype] = (status, _now())
        cond: dict[str, Any] = {
            "type": ctype,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": self.transitions[ctype][1],
        }
        if not ok and reason:
            cond["reason"] = reason
            if message:
                cond["message"] = message
        return cond

    async def _status_writer(self) -> None:
        while True:
            await self.changed.wait()
            self.changed.clear()
            status = self.status()
            if status == self.written or self.terminating.is_set():
                continue
            try:
                await self.node.client.patch(
                    POD, self.name, self.ns, {"status": status}, subresource="status"
                )
                self.written = status
            except NotFound:
                return
            except ApiError as error:
                self.log.warning("pod status not written; trying again", error=str(error))
                await asyncio.sleep(1.0)
                self.changed.set()


async def _program_pid(proc: asyncio.subprocess.Process) -> int:
    """The pid of the program ``nsenter`` starts in the Pod (what a container's id names), once it
    forked (within a second), else nsenter's own."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    while proc.returncode is None and loop.time() < deadline:
        program = program_pid(proc.pid)
        if program is not None:
            return program
        await asyncio.sleep(0.005)
    return proc.pid


def _terminate(pid: int) -> None:
    """SIGTERM to the program a container runs: the child of its ``nsenter`` (which would die of
    the signal at once, without waiting for the program to drain), or the whole group when it has
    none (yet)."""
    program = program_pid(pid)
    if program is None:
        _signal_group(pid, signal.SIGTERM)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(program, signal.SIGTERM)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _prune_logs(directory: Path, container: str, keep: int) -> None:
    """Keep the logs of the current and the previous run only (what ``--previous`` would show)."""
    for path in directory.glob(f"{container}.*.log"):
        n = path.name[len(container) + 1 : -len(".log")]
        if n.isdigit() and int(n) < keep:
            path.unlink(missing_ok=True)


async def _http_probe(sandbox: PodSandbox, port: int, get: Mapping[str, Any], ip: str) -> bool:
    reader, writer = await sandbox.open_connection(port)
    try:
        headers = "".join(f"{h['name']}: {h['value']}\r\n" for h in get.get("httpHeaders") or [])
        path = get.get("path") or "/"
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {ip}:{port}\r\nUser-Agent: kube-probe/agentkube-local\r\n"
            f"Connection: close\r\n{headers}\r\n".encode()
        )
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
    parts = line.split()
    return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400


# ------------------------------------------------------------------------------------------------ node


class LocalNode:
    """The node: registration, scheduling onto itself, the Pod workers and the Service router."""

    def __init__(self, client: Client, options: NodeOptions) -> None:
        self.client = client
        self.options = options
        network = ipaddress.ip_network(POD_CIDR)
        hosts = list(network.hosts())
        self.host_ip = str(hosts[0])
        self._free_ips = [str(h) for h in hosts[1:]]
        self.labels = {
            "kubernetes.io/hostname": options.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                platform.machine(), platform.machine()
            ),
            "node.kubernetes.io/instance-type": "agentkube-local",
        }
        self.workers: dict[str, _PodWorker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._binding: set[str] = set()
        self._told_unschedulable: dict[str, str] = {}
        self._background: set[asyncio.Task[Any]] = set()
        entry_dirs = {str(Path(e[0]).parent) for e in options.images.values() if e and os.sep in e[0]}
        self.base_env = {
            "PATH": os.pathsep.join([*sorted(entry_dirs), os.environ.get("PATH", "/usr/bin:/bin")]),
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
        }
        options.work_dir.mkdir(parents=True, exist_ok=True)
        self.router = ServiceRouter(
            options.work_dir / "proxy.sock",
            prefer_service_ports=options.prefer_service_ports,
            on_change=self._services_changed,
        )

    async def object_data(self, gvk: GVK, namespace: str, name: str) -> dict[str, bytes] | None:
        """The data of a Secret or ConfigMap as bytes, or None when it does not exist."""
        try:
            obj = await self.client.get(gvk, name, namespace)
        except NotFound:
            return None
        if gvk == SECRET:
            return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    # ------------------------------------------------------------------------------------- running

    async def run(self) -> None:
        """Register, then serve until cancelled; on the way out every Pod's processes are stopped."""
        await self.router.start()
        informers = [
            Informer(self.client, POD, field_selector="spec.nodeName="),
            Informer(self.client, POD, field_selector=f"spec.nodeName={self.options.name}"),
            Informer(self.client, SERVICE),
            Informer(self.client, ENDPOINT_SLICE),
        ]
        informers[0].add_handler(self._on_unbound)
        informers[1].add_handler(self._on_bound)
        informers[2].add_handler(self._on_service)
        informers[3].add_handler(self._on_slice)
        try:
            await self._register()
            async with asyncio.TaskGroup() as tg:
                for informer in informers:
                    tg.create_task(informer.run())
                tg.create_task(self._heartbeat())
        finally:
            for worker in self.workers.values():
                worker.pod["metadata"]["deletionGracePeriodSeconds"] = 2
                worker.terminate()
            tasks = list(self._tasks.values())
            if tasks:
                await asyncio.wait(tasks, timeout=10)
            for task in (*tasks, *self._background):
                task.cancel()
            await self.router.stop()

    async def _register(self) -> None:
        capacity = node_capacity()
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.options.name, "labels": self.labels},
            "spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR]},
        }
        await self.client.apply(node, field_manager="agentkube-local-node")
        await self._write_node_status(capacity)

    async def _write_node_status(self, capacity: Mapping[str, str]) -> None:
        now = _now()
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "agentkube local node is posting ready status",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        status = {
            "capacity": dict(capacity),
            "allocatable": dict(capacity),
            "conditions": [ready],
            "addresses": [
                {"type": "InternalIP", "address": self.host_ip},
                {"type": "Hostname", "address": self.options.name},
            ],
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": "agentkube local node (processes)",
                "containerRuntimeVersion": "agentkube-local://processes",
                "kubeletVersion": "v0.0.0-agentkube-local",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": self.labels["kubernetes.io/arch"],
            },
        }
        await self.client.patch(NODE, self.options.name, None, {"status": status}, subresource="status")

    async def _heartbeat(self) -> None:
        """Renew the node's Lease every 10 s, as a kubelet does."""
        name = self.options.name
        while True:
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": {
                    "holderIdentity": name,
                    "leaseDurationSeconds": LEASE_SECONDS,
                    "renewTime": _micro_now(),
                },
            }
            try:
                await self.client.apply(lease, field_manager="agentkube-local-node")
            except ApiError as error:
                log.warning("node lease not renewed", error=str(error))
            await asyncio.sleep(10)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---------------------------------------------------------------------------------- scheduling

    def _on_unbound(self, event: Event) -> None:
        pod = event.obj
        uid = pod["metadata"]["uid"]
        if event.type == EventType.DELETED or pod["metadata"].get("deletionTimestamp"):
            self._told_unschedulable.pop(uid, None)
            return
        why = schedulable(pod, self.labels, self.options.images)
        if why:
            if self._told_unschedulable.get(uid) != why:
                self._told_unschedulable[uid] = why
                self._spawn(self._tell_unschedulable(pod, why))
        elif uid not in self._binding:
            self._binding.add(uid)
            self._spawn(self._bind(pod))

    async def _bind(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.options.name},
        }
        try:
            await self.client.create(binding)
        except (Conflict, NotFound):
            pass  # bound already, or gone
        except ApiError as error:
            log.warning("pod not bound", pod=f"{meta['namespace']}/{meta['name']}", error=str(error))
            self._binding.discard(meta["uid"])

    async def _tell_unschedulable(self, pod: dict[str, Any], why: str) -> None:
        meta = pod["metadata"]
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": why,
            "lastProbeTime": None,
            "lastTransitionTime": _now(),
        }
        with contextlib.suppress(ApiError):
            await self.client.patch(
                POD,
                meta["name"],
                meta["namespace"],
                {"status": {"conditions": [condition]}},
                subresource="status",
            )

    # ------------------------------------------------------------------------------------- workers

    def _on_bound(self, event: Event) -> None:
        pod = event.obj
        uid = pod["metadata"]["uid"]
        self._binding.discard(uid)
        worker = self.workers.get(uid)
        if event.type == EventType.DELETED:
            if worker is not None:
                worker.pod["metadata"]["deletionGracePeriodSeconds"] = 0
                worker.terminate()
            return
        if worker is None:
            if pod["metadata"].get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in (
                "Succeeded",
                "Failed",
            ):
                if pod["metadata"].get("deletionTimestamp"):
                    self._spawn(self._remove(pod))
                return
            if not self._free_ips:
                log.warning("no pod IP left on the local node", pod=pod["metadata"]["name"])
                return
            worker = _PodWorker(self, pod, self._free_ips.pop(0))
            self.workers[uid] = worker
            self._tasks[uid] = asyncio.create_task(self._run_worker(worker))
            return
        worker.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            worker.terminate()

    async def _run_worker(self, worker: _PodWorker) -> None:
        try:
            await worker.run()
        except Exception:
            worker.log.exception("pod worker failed")
        finally:
            self.workers.pop(worker.uid, None)
            self._tasks.pop(worker.uid, None)
            self._free_ips.append(worker.ip)
        if worker.terminating.is_set() and worker.pod["metadata"].get("deletionTimestamp"):
            await self._remove(worker.pod)

    async def _remove(self, pod: dict[str, Any]) -> None:
        """Delete a terminated Pod for good (grace 0), as a kubelet does once its containers stop."""
        meta = pod["metadata"]
        with contextlib.suppress(NotFound, Conflict):
            await self.client.delete(
                POD, meta["name"], meta["namespace"], uid=meta["uid"], grace_period_seconds=0
            )

    # ------------------------------------------------------------------------------------ services

    def _on_service(self, event: Event) -> None:
        meta = event.obj["metadata"]
        if (meta["namespace"], meta["name"]) == ("default", "kubernetes"):
            return  # the API server itself: reached through the kubeconfig, not through the node
        if event.type == EventType.DELETED:
            self.router.delete_service(meta["namespace"], meta["name"])
        else:
            self.router.update_service(event.obj)

    def _on_slice(self, event: Event) -> None:
        meta = event.obj["metadata"]
        if event.type == EventType.DELETED:
            self.router.delete_slice(meta["namespace"], meta["name"])
        else:
            self.router.update_slice(event.obj)

    def _services_changed(self) -> None:
        services = self.router.local_addresses()
        document = {"proxy": f"http://{self.router.proxy_address}", "services": services}
        path = self.options.work_dir / SERVICES_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(document, indent=2, sort_keys=True))
        tmp.replace(path)


# ------------------------------------------------------------------------------------------- command


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agentkube.testing.kubelet``: run a local node until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="agentkube-local-node", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--dir", required=True, type=Path, help="work directory of the node")
    parser.add_argument(
        "--image",
        action="append",
        required=True,
        metavar="IMAGE=PROGRAM",
        help="an image this node runs and the local program for its entrypoint (repeatable)",
    )
    parser.add_argument("--name", default=DEFAULT_NODE_NAME)
    parser.add_argument("--prefer-service-ports", action="store_true")
    parser.add_argument("--readiness-period-cap", type=float, default=1.0)
    args = parser.parse_args(argv)
    images: dict[str, list[str]] = {}
    for item in args.image:
        image, sep, program = item.partition("=")
        if not sep or not program:
            parser.error(f"--image {item!r}: expected IMAGE=PROGRAM")
        images[image] = [program]

    options = NodeOptions(
        images=images,
        work_dir=args.dir,
        name=args.name,
        prefer_service_ports=args.prefer_service_ports,
        readiness_period_cap=args.readiness_period_cap,
    )

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        async with await Client.from_kubeconfig(
            args.kubeconfig, field_manager="agentkube-local-node"
        ) as client:
            with contextlib.suppress(asyncio.CancelledError):
                await LocalNode(client, options).run()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
