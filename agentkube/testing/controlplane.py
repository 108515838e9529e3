"""A real etcd + kube-apiserver for tests, like controller-runtime's envtest.

``ControlPlane`` starts etcd and kube-apiserver from binaries built by ``hack/build-envtest.sh`` (or
found through ``KUBEBUILDER_ASSETS``), writes an admin kubeconfig, installs CRDs and waits until
discovery serves them. Used as a context manager it stops both processes on exit, when the body
raises, and on Ctrl-C; the processes also carry a parent-death signal, so even a SIGKILLed test run
leaves nothing behind. ``USE_EXISTING_CLUSTER=true`` points it at the current kubeconfig instead.

What a caller may rely on:
- ``kubeconfig`` is a file with the server address, CA and credentials embedded (no other files).
- ``request()`` is a small synchronous HTTP helper for set-up code; it raises ``HTTPError`` with the
  server's message on a non-2xx answer.
- ``stop_apiserver()`` / ``start_apiserver()`` keep the same address, certificates and etcd data, so
  clients reconnect to the same cluster: the way to test recovery from an API server outage.
- ``controller_manager=True`` (or ``start_controller_manager()``) also runs kube-controller-manager,
  from the same Kubernetes release, with the controllers in ``DEFAULT_CONTROLLERS``: garbage
  collection, namespace deletion, Deployment -> ReplicaSet -> Pod, EndpointSlices, PodDisruptionBudget
  status, service accounts and their tokens. It has the same guarantees as the other two (free port,
  readiness polled with a deadline, its log tail in the error, parent-death signal) and is stopped
  first. There is no scheduler and, until ``start_node()``, no node: Pods stay Pending.
- ``start_node(images)`` (which needs kube-controller-manager, and starts it) also runs the local node
  of ``agentkube.testing.kubelet`` in a process of its own: the Pods of those images run as local
  processes, each Service is reachable through ``node_proxy`` at its in-cluster name and at
  ``service_url()``. Stopped first, with its Pods' processes.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import yaml

from agentkube.testing.pki import PKI, CertKey

DEFAULT_NODE_NAME = "agentkube-local"
SERVICES_FILE = "services.json"

__all__ = [
    "AGENTGATEWAY_CRDS_ENV",
    "ASSETS_ENV",
    "DEFAULT_CONTROLLERS",
    "ControlPlane",
    "ControlPlaneError",
    "HTTPError",
    "cached_crd_dirs",
    "find_assets",
]

ASSETS_ENV = "KUBEBUILDER_ASSETS"
CACHE_ENV = "AGENTKUBE_ENVTEST_CACHE"
EXISTING_ENV = "USE_EXISTING_CLUSTER"
_BINARIES = ("etcd", "kube-apiserver")
_CONTROLLER_MANAGER = "kube-controller-manager"
_LOG_TAIL_LINES = 30

# What a local cluster needs so that what the operator makes behaves as in a real one, and nothing
# that needs a node, a cloud or a volume plugin. Not "*": each controller is informers and requests,
# and the node, volume and certificate controllers would only log about what is not there.
DEFAULT_CONTROLLERS: tuple[str, ...] = (
    "garbage-collector-controller",  # owner references: children go with their owner
    "namespace-controller",  # a deleted namespace is emptied and goes away
    "deployment-controller",
    "replicaset-controller",
    "endpointslice-controller",
    "disruption-controller",  # PodDisruptionBudget status
    # The ServiceAccount admission plugin refuses Pods until a namespace's "default" account exists.
    "serviceaccount-controller",
    # Fills kubernetes.io/service-account-token Secrets, signed with the key the API server verifies.
    "serviceaccount-token-controller",
    # The kube-root-ca.crt ConfigMap that every Pod's projected service-account volume reads.
    "root-ca-certificate-publisher-controller",
)


class ControlPlaneError(RuntimeError):
    """The control plane could not be found, started or used."""


class HTTPError(ControlPlaneError):
    def __init__(self, method: str, path: str, status: int, body: bytes) -> None:
        self.status = status
        try:
            message = json.loads(body).get("message", "")
        except ValueError:
            message = body.decode(errors="replace")[:500]
        super().__init__(f"{method} {path}: HTTP {status}: {message}")


AGENTGATEWAY_CRDS_ENV = "AGENTKUBE_AGENTGATEWAY_CRDS"
"""Names a directory of agentgateway's own CRDs for tests and ``make run`` to install."""


def _default_cache() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agentkube" / "envtest"


def _version_key(directory: Path) -> tuple[int, ...]:
    version = directory.name.partition("@")[2].lstrip("v")
    return tuple(int(part) if part.isdigit() else -1 for part in version.replace("-", ".").split("."))


def cached_crd_dirs() -> list[Path]:
    """Directories of third-party CRDs to install: for each module, the newest version that
    ``hack/fetch-crds.sh`` took from the Go module proxy into ``~/.cache/agentkube/crds/<module>@<version>/``
    (Gateway API), then the directory ``AGENTKUBE_AGENTGATEWAY_CRDS`` names, if set (agentgateway's
    own CRDs, which the proxy does not serve). Empty when there are none.

    Raises ``ControlPlaneError`` when ``AGENTKUBE_AGENTGATEWAY_CRDS`` names no directory of YAML files.
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    cache = Path(base) / "agentkube" / "crds"
    newest: dict[str, Path] = {}
    for directory in sorted(cache.glob("*@*")) if cache.is_dir() else []:
        module = directory.name.partition("@")[0]
        if directory.is_dir() and (
            module not in newest or _version_key(directory) > _version_key(newest[module])
        ):
            newest[module] = directory
    found = [newest[m] for m in sorted(newest)]
    named = os.environ.get(AGENTGATEWAY_CRDS_ENV)
    if named:
        directory = Path(named)
        if not directory.is_dir() or not any(directory.glob("*.yaml")):
            raise ControlPlaneError(
                f"{AGENTGATEWAY_CRDS_ENV}={named} is not a directory of CRD YAML files; point it at "
                "agentgateway's CRDs (its Helm chart's agentgateway-crds/templates) or unset it"
            )
        found.append(directory)
    return found


def _has_binaries(directory: Path) -> bool:
    return all(os.access(directory / b, os.X_OK) for b in _BINARIES)


def find_assets() -> Path:
    """The directory holding ``etcd`` and ``kube-apiserver``.

    ``KUBEBUILDER_ASSETS`` wins when set; otherwise the newest build in the cache that
    ``hack/build-envtest.sh`` fills (``~/.cache/agentkube/envtest/<versions>/``).
    """
    if os.environ.get(ASSETS_ENV):
        assets = Path(os.environ[ASSETS_ENV])
        if not _has_binaries(assets):
            raise ControlPlaneError(
                f"{ASSETS_ENV}={assets} does not hold executable etcd and kube-apiserver; "
                "unset it or run hack/build-envtest.sh"
            )
        return assets
    cache = _default_cache()
    builds = [d for d in cache.glob("k8s-*") if d.is_dir() and _has_binaries(d)] if cache.is_dir() else []
    if not builds:
        raise ControlPlaneError(
            f"no etcd and kube-apiserver in {cache} and {ASSETS_ENV} is not set: "
            "run hack/build-envtest.sh (or `make envtest`) to build them from Go modules"
        )
    return max(builds, key=lambda d: d.stat().st_mtime)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux only: the kernel sends SIGKILL to the child when the thread that forked it exits, so a
    # test run killed with SIGKILL still leaves no etcd or kube-apiserver behind.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class _Process:
    """One child process with its log in a file, so a failure can show the log's tail."""

    def __init__(self, name: str, args: list[str], log_path: Path) -> None:
        self.name = name
        self.args = args
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if os.name == "posix" else None,
            )

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def exited(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:])

    def failure(self, what: str) -> ControlPlaneError:
        return ControlPlaneError(f"{self.name} {what}; last lines of {self.log_path}:\n{self.tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout)


_live: weakref.WeakSet[ControlPlane] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for plane in list(_live):
        plane.stop()


class ControlPlane:
    """etcd + kube-apiserver on loopback, or the current cluster with ``USE_EXISTING_CLUSTER``."""

    def __init__(
        self,
        *,
        crd_paths: Iterable[str | os.PathLike[str]] = (),
        assets: str | os.PathLike[str] | None = None,
        use_existing_cluster: bool | None = None,
        apiserver_flags: Iterable[str] = (),
        start_timeout: float = 60.0,
        work_dir: str | os.PathLike[str] | None = None,
        controller_manager: bool = False,
        controllers: Iterable[str] = DEFAULT_CONTROLLERS,
        controller_manager_flags: Iterable[str] = (),
    ) -> None:
        """
        crd_paths: YAML files or directories of them; their CustomResourceDefinitions are installed
            once the API server is ready. Default: none.
        assets: directory of the binaries. Default: ``find_assets()``.
        use_existing_cluster: talk to the current kubeconfig instead of starting processes.
            Default: the ``USE_EXISTING_CLUSTER`` environment variable (``true``/``1``).
        apiserver_flags: extra kube-apiserver flags (``--name=value``), added last so they win.
        start_timeout: seconds to wait for each process to become ready. Default 60.
        work_dir: where data, certificates, logs and the kubeconfig go. Default: a fresh temp dir,
            removed on stop.
        controller_manager: also start kube-controller-manager, once the CRDs are installed (the
            garbage collector learns kinds added later only at its next discovery, within 30 s).
            Ignored with an existing cluster, which runs its own. Default False: the API server alone,
            where a test may write Deployment status itself and nothing fights it.
        controllers: the controllers kube-controller-manager runs (its ``--controllers``).
            Default: ``DEFAULT_CONTROLLERS``.
        controller_manager_flags: extra kube-controller-manager flags, added last so they win (list
            flags such as ``--controllers`` add to the earlier value instead: use ``controllers``).
        """
        if use_existing_cluster is None:
            use_existing_cluster = os.environ.get(EXISTING_ENV, "").lower() in ("1", "true", "yes")
        self.use_existing_cluster = use_existing_cluster
        self.crd_paths = [Path(p) for p in crd_paths]
        self._assets = Path(assets) if assets else None
        self._apiserver_flags = list(apiserver_flags)
        self.start_timeout = start_timeout
        self._own_work_dir = work_dir is None
        self._work_dir_arg = Path(work_dir) if work_dir else None
        self.work_dir: Path | None = None
        self.kubeconfig: Path | None = None
        self.host = ""
        self.etcd_url = ""
        self.etcd: _Process | None = None
        self.apiserver: _Process | None = None
        self._want_controller_manager = controller_manager
        self._controllers = list(controllers)
        self._controller_manager_flags = list(controller_manager_flags)
        self.controller_manager: _Process | None = None
        self.controller_manager_url = ""
        self.node: _Process | None = None
        self.node_dir: Path | None = None
        self._controller_manager_ssl: ssl.SSLContext | None = None
        self._assets_dir: Path | None = None
        self._ssl: ssl.SSLContext | None = None
        self._pki: PKI | None = None
        self._auth_header: str | None = None

    # ----------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        """Start (or connect), install the CRDs, and return self once everything is served."""
        _live.add(self)
        try:
            if self.use_existing_cluster:
                self._connect_existing()
            else:
                self._start_processes()
            if self.crd_paths:
                self.install_crds(self.crd_paths)
            if self._want_controller_manager and not self.use_existing_cluster:
                self.start_controller_manager()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop kube-controller-manager, kube-apiserver, then etcd, and remove the work directory if
        it is ours."""
        for proc in (self.node, self.controller_manager, self.apiserver, self.etcd):
            if proc is not None:
                proc.stop(timeout=20.0)
        if self.work_dir is not None and self._own_work_dir and not self.use_existing_cluster:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        self.work_dir = None
        _live.discard(self)

    @property
    def pids(self) -> list[int]:
        """Process ids of the running etcd, kube-apiserver and kube-controller-manager (empty for an
        existing cluster)."""
        procs = (self.etcd, self.apiserver, self.controller_manager, self.node)
        return [p.pid for p in procs if p and p.pid and p.exited() is None]

    def _start_processes(self) -> None:
        assets = self._assets_dir = self._assets or find_assets()
        if self._work_dir_arg:
            self._work_dir_arg.mkdir(parents=True, exist_ok=True)
            self.work_dir = self._work_dir_arg
        else:
            self.work_dir = Path(tempfile.mkdtemp(prefix="agentkube-envtest-"))
        pki = self._pki = PKI()
        files = pki.write(self.work_dir)

        client_port, peer_port = _free_port(), _free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self.etcd = _Process(
            "etcd",
            [
                str(assets / "etcd"),
                "--name=envtest",
                f"--data-dir={self.work_dir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=envtest={peer_url}",
                # Tests throw the data away; fsync is most of etcd's write latency.
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            self.work_dir / "etcd.log",
        )
        self.etcd.start()
        self._wait(self.etcd, self._etcd_healthy, "did not become healthy")

        secure_port = _free_port()
        self.host = f"https://127.0.0.1:{secure_port}"
        self.apiserver = _Process(
            "kube-apiserver",
            [
                str(assets / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                f"--secure-port={secure_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--cert-dir={self.work_dir / 'apiserver'}",
                f"--tls-cert-file={files['serving.crt']}",
                f"--tls-private-key-file={files['serving.key']}",
                f"--client-ca-file={files['ca.crt']}",
                f"--service-account-key-file={files['sa.pub']}",
                f"--service-account-signing-key-file={files['sa.key']}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--authorization-mode=RBAC",
                # No controller-manager runs, so deleted namespaces never free their Services:
                # leave room for a long session (a /24 holds only 254).
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
                "--profiling=false",
                *self._apiserver_flags,
            ],
            self.work_dir / "kube-apiserver.log",
        )
        ctx = ssl.create_default_context(cafile=str(files["ca.crt"]))
        ctx.load_cert_chain(str(files["admin.crt"]), str(files["admin.key"]))
        self._ssl = ctx
        self.start_apiserver()

        self.kubeconfig = self._write_kubeconfig("kubeconfig", "admin", pki.admin)

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver only; etcd and all data stay. For outage tests."""
        if self.apiserver is None:
            raise ControlPlaneError("stop_apiserver() needs a control plane this process started")
        self.apiserver.stop()

    def start_apiserver(self) -> None:
        """(Re)start kube-apiserver on the same address with the same certificates and data."""
        if self.apiserver is None:
            raise ControlPlaneError("start_apiserver() needs a control plane this process started")
        self.apiserver.start()
        self._wait(self.apiserver, self._apiserver_ready, "did not report /readyz ok")

    def restart_apiserver(self) -> None:
        self.stop_apiserver()
        self.start_apiserver()

    def start_controller_manager(self) -> None:
        """Start kube-controller-manager against this API server and return once its ``/healthz``
        reports every controller asked for; does nothing while it runs. A restart keeps its port.

        Raises ``ControlPlaneError`` with the tail of its log when it exits or is not healthy within
        ``start_timeout``; the rest of the control plane keeps running.
        """
        if self.apiserver is None or self.work_dir is None or self._pki is None:
            raise ControlPlaneError("start_controller_manager() needs a control plane this process started")
        if self.controller_manager is not None and self.controller_manager.exited() is None:
            return
        if self.controller_manager is None:
            self.controller_manager = self._controller_manager_process()
        self.controller_manager.start()
        self._wait(self.controller_manager, self._controller_manager_healthy, "did not report /healthz ok")

    def stop_controller_manager(self) -> None:
        """Stop kube-controller-manager only (no-op when it is not running)."""
        if self.controller_manager is not None:
            self.controller_manager.stop()

    def start_node(
        self,
        images: Iterable[str],
        *,
        entrypoint: str | os.PathLike[str] | None = None,
        prefer_service_ports: bool = False,
    ) -> None:
        """Start the local node (``agentkube.testing.kubelet``) for the Pods of ``images`` and return
        once its Node is Ready; starts kube-controller-manager first when it is not running.

        entrypoint: the local program that stands in for the images' ENTRYPOINT. Default: the
            ``agentkube`` console script next to this Python.
        prefer_service_ports: serve a Service on 127.0.0.1 at its own port when that is free (what a
            person at a shell wants); default False, free ports only (what parallel tests want).
        """
        if self.work_dir is None or self.kubeconfig is None:
            raise ControlPlaneError("start_node() needs a control plane this process started")
        if self.node is not None and self.node.exited() is None:
            return
        self.start_controller_manager()
        program = Path(entrypoint) if entrypoint else Path(sys.executable).parent / "agentkube"
        if not os.access(program, os.X_OK):
            raise ControlPlaneError(f"no executable {program} to stand in for the images' entrypoint")
        self.node_dir = self.work_dir / "node"
        (self.node_dir / SERVICES_FILE).unlink(missing_ok=True)
        args = [sys.executable, "-m", "agentkube.testing.kubelet", f"--kubeconfig={self.kubeconfig}"]
        args += [f"--dir={self.node_dir}", *(f"--image={image}={program}" for image in images)]
        if prefer_service_ports:
            args.append("--prefer-service-ports")
        self.node = _Process("local node", args, self.work_dir / "node.log")
        self.node.start()
        self._wait(self.node, self._node_ready, "did not report its Node Ready")

    def stop_node(self) -> None:
        """Stop the local node and with it every Pod process it runs (no-op when not running)."""
        if self.node is not None:
            self.node.stop(timeout=20.0)

    def _node_ready(self) -> bool:
        if self.node_dir is None or not (self.node_dir / SERVICES_FILE).is_file():
            return False
        try:
            status, body = self._raw(
                "GET", f"/api/v1/nodes/{DEFAULT_NODE_NAME}", None, "application/json", timeout=2
            )
        except OSError:
            return False
        if status != 200:
            return False
        conditions = (json.loads(body).get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def services(self) -> dict[str, str]:
        """What the local node serves: ``"<namespace>/<service>:<port>"`` -> ``"127.0.0.1:<port>"``."""
        document = self._node_document()
        return dict(document.get("services") or {})

    @property
    def node_proxy(self) -> str:
        """The local node's forward proxy (``http://127.0.0.1:<port>``): through it, a Service answers
        at ``http://<service>.<namespace>.svc.cluster.local:<port>`` as it does in a cluster."""
        return str(self._node_document().get("proxy") or "")

    def service_url(self, namespace: str, name: str, port: int) -> str | None:
        """``http://127.0.0.1:<local port>`` where the local node serves a Service port, or None
        while it does not (yet)."""
        address = self.services().get(f"{namespace}/{name}:{port}")
        return f"http://{address}" if address else None

    def _node_document(self) -> dict[str, Any]:
        if self.node_dir is None:
            raise ControlPlaneError("no local node: call start_node() first")
        try:
            document = json.loads((self.node_dir / SERVICES_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return document if isinstance(document, dict) else {}

    def _controller_manager_process(self) -> _Process:
        assert self.work_dir is not None and self._pki is not None and self._assets_dir is not None
        binary = self._assets_dir / _CONTROLLER_MANAGER
        if not os.access(binary, os.X_OK):
            raise ControlPlaneError(
                f"no executable {_CONTROLLER_MANAGER} in {self._assets_dir}: run hack/build-envtest.sh, "
                "which adds it to a cache built before it was needed"
            )
        files = {name: self.work_dir / name for name in ("ca.crt", "sa.key")}
        serving = {name: self.work_dir / f"controller-manager-serving.{name}" for name in ("crt", "key")}
        kubeconfig = self._write_kubeconfig(
            "kubeconfig-controller-manager", "system:kube-controller-manager", self._pki.controller_manager
        )
        port = _free_port()
        self.controller_manager_url = f"https://127.0.0.1:{port}"
        self._controller_manager_ssl = ssl.create_default_context(cafile=str(files["ca.crt"]))
        return _Process(
            _CONTROLLER_MANAGER,
            [
                str(binary),
                f"--kubeconfig={kubeconfig}",
                f"--controllers={','.join(self._controllers)}",
                # One identity for every controller (see pki.py): no token round trip per controller
                # at start, and nothing depends on the token controller having run first.
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                # HTTPS only for /healthz, which is always allowed: no authentication or authorization
                # kubeconfig, so it makes no TokenReview or SubjectAccessReview requests of its own.
                f"--secure-port={port}",
                "--bind-address=127.0.0.1",
                f"--tls-cert-file={serving['crt']}",
                f"--tls-private-key-file={serving['key']}",
                # The private half of the API server's --service-account-key-file, so the tokens it
                # writes into service-account Secrets are ones the API server accepts.
                f"--service-account-private-key-file={files['sa.key']}",
                f"--root-ca-file={files['ca.crt']}",
                # The default 20/s paces namespace deletion (a list and a delete per kind) and the
                # garbage collector's start (a list per kind); loopback takes far more.
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--profiling=false",
                *self._controller_manager_flags,
            ],
            self.work_dir / "kube-controller-manager.log",
        )

    def _wait(self, proc: _Process, ready: Any, what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            code = proc.exited()
            if code is not None:
                raise proc.failure(f"exited with code {code} while starting")
            if ready():
                return
            time.sleep(0.1)
        proc.stop()
        raise proc.failure(f"{what} within {self.start_timeout:.0f}s")

    def _etcd_healthy(self) -> bool:
        url = urlsplit(self.etcd_url)
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=2)
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            return resp.status == 200 and json.loads(resp.read()).get("health") == "true"
        except (OSError, ValueError):
            return False
        finally:
            conn.close()

    def _controller_manager_healthy(self) -> bool:
        # /healthz answers ok as soon as it serves, before any controller runs; each controller adds
        # its own check once started, so the verbose list naming them all means they all run.
        url = urlsplit(self.controller_manager_url)
        conn = http.client.HTTPSConnection(
            url.hostname or "127.0.0.1", url.port, context=self._controller_manager_ssl, timeout=2
        )
        try:
            conn.request("GET", "/healthz?verbose")
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
        except OSError:
            return False
        finally:
            conn.close()
        return resp.status == 200 and all(f"[+]{c} ok" in body for c in self._controllers)

    def _apiserver_ready(self) -> bool:
        try:
            status, _ = self._raw("GET", "/readyz", None, "application/json", timeout=2)
        except OSError:
            return False
        return status == 200

    def user_kubeconfig(self, user: str, groups: list[str] | None = None) -> Path:
        """A kubeconfig that authenticates as ``user`` in ``groups`` (client certificate), so a test
        can run code with exactly the RBAC a deployment grants, e.g. a service account's:
        ``user_kubeconfig("system:serviceaccount:agentkube-system:agentkube-controller-manager",
        ["system:serviceaccounts", "system:serviceaccounts:agentkube-system"])``."""
        if self._pki is None or self.work_dir is None:
            raise ControlPlaneError("user_kubeconfig() needs a control plane this process started")
        safe = "".join(c if c.isalnum() else "-" for c in user)
        return self._write_kubeconfig(f"kubeconfig-{safe}", user, self._pki.client(user, groups))

    def _write_kubeconfig(self, filename: str, user: str, cred: CertKey) -> Path:
        assert self.work_dir is not None and self._pki is not None

        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "envtest",
                    "cluster": {"server": self.host, "certificate-authority-data": b64(self._pki.ca.cert)},
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {"client-certificate-data": b64(cred.cert), "client-key-data": b64(cred.key)},
                }
            ],
            "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": user}}],
            "current-context": "envtest",
        }
        path = self.work_dir / filename
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def _connect_existing(self) -> None:
        # Set-up requests need only the common kubeconfig shapes: client certificates or a token,
        # with a CA (exec plugins belong to the client under test, which loads the file itself).
        path = Path(os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or Path.home() / ".kube/config")
        if not path.is_file():
            raise ControlPlaneError(f"{EXISTING_ENV} is set but there is no kubeconfig at {path}")
        config = yaml.safe_load(path.read_text())
        ctx_name = config.get("current-context")
        ctx = next(c["context"] for c in config["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
        users = config.get("users") or []
        user: dict[str, Any] = next((u["user"] for u in users if u["name"] == ctx.get("user")), {})
        self.kubeconfig = path
        self.host = cluster["server"].rstrip("/")
        tmp = Path(tempfile.mkdtemp(prefix="agentkube-existing-"))
        try:
            ssl_ctx = ssl.create_default_context()
            if cluster.get("insecure-skip-tls-verify"):
                ssl_ctx.check_hostname = False
                ssl_ctx.verify_mode = ssl.CERT_NONE
            elif cluster.get("certificate-authority-data"):
                ssl_ctx.load_verify_locations(
                    cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
                )
            elif cluster.get("certificate-authority"):
                ssl_ctx.load_verify_locations(cafile=cluster["certificate-authority"])
            cert, key = user.get("client-certificate"), user.get("client-key")
            if user.get("client-certificate-data"):
                cert, key = str(tmp / "c.crt"), str(tmp / "c.key")
                Path(cert).write_bytes(base64.b64decode(user["client-certificate-data"]))
                Path(key).write_bytes(base64.b64decode(user["client-key-data"]))
            if cert and key:
                ssl_ctx.load_cert_chain(cert, key)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if user.get("token"):
            self._auth_header = f"Bearer {user['token']}"
        self._ssl = ssl_ctx
        if not self._apiserver_ready():
            raise ControlPlaneError(f"the cluster of {path} ({self.host}) does not answer /readyz")

    # ----------------------------------------------------------------------------- requests

    def _raw(
        self, method: str, path: str, body: bytes | None, content_type: str, timeout: float
    ) -> tuple[int, bytes]:
        url = urlsplit(self.host)
        conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=self._ssl, timeout=timeout)
        headers = {"Accept": "application/json", "Content-Type": content_type}
        if self._auth_header:
            headers["Authorization"] = self._auth_header
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """One synchronous API request as the admin user; the decoded JSON answer."""
        if not self.host:
            raise ControlPlaneError("the control plane is not started")
        data = json.dumps(body).encode() if body is not None else None
        status, raw = self._raw(method, path, data, content_type, timeout)
        if status >= 300:
            raise HTTPError(method, path, status, raw)
        return json.loads(raw) if raw else {}

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        meta: dict[str, Any] = {"name": name}
        if labels:
            meta["labels"] = labels
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}
        self.request("POST", "/api/v1/namespaces", namespace)

    def delete_namespace(self, name: str) -> None:
        # Without kube-controller-manager a namespace stays Terminating; its objects no longer matter
        # because every test has its own namespace.
        with contextlib.suppress(HTTPError):
            self.request("DELETE", f"/api/v1/namespaces/{name}")

    # ----------------------------------------------------------------------------- CRDs

    def install_crds(self, paths: Iterable[str | os.PathLike[str]], timeout: float = 30.0) -> list[str]:
        """Apply every CustomResourceDefinition in the YAML files (or directories) given, then wait
        until each is Established and discovery serves all its versions. Returns the CRD names."""
        crds = [doc for doc in _load_yaml_docs(paths) if doc.get("kind") == "CustomResourceDefinition"]
        for crd in crds:
            name = crd["metadata"]["name"]
            path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            self.request(
                "PATCH",
                f"{path}?fieldManager=agentkube-envtest&force=true",
                crd,
                content_type="application/apply-patch+yaml",
            )
        deadline = time.monotonic() + timeout
        for crd in crds:
            self._wait_served(crd, deadline)
        return [crd["metadata"]["name"] for crd in crds]

    def _wait_served(self, crd: dict[str, Any], deadline: float) -> None:
        name = crd["metadata"]["name"]
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        versions = [v["name"] for v in crd["spec"]["versions"] if v.get("served", True)]
        while True:
            try:
                live = self.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                # A CRD just created has "conditions": null, and discovery answers "resources": null
                # for a moment after it is established.
                established = any(
                    c["type"] == "Established" and c["status"] == "True"
                    for c in (live.get("status") or {}).get("conditions") or []
                )
                served = established and all(
                    any(
                        r["name"] == plural
                        for r in self.request("GET", f"/apis/{group}/{v}").get("resources") or []
                    )
                    for v in versions
                )
            except HTTPError:
                served = False
            if served:
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"CRD {name} was not served by discovery in time")
            time.sleep(0.1)


def _load_yaml_docs(paths: Iterable[str | os.PathLike[str]]) -> Iterator[dict[str, Any]]:
    for p in paths:
        path = Path(p)
        files = [path]
        if path.is_dir():
            files = sorted(f for f in path.rglob("*") if f.suffix in (".yaml", ".yml"))
        for f in files:
            for doc in yaml.safe_load_all(f.read_text()):
                if isinstance(doc, dict):
                    yield doc
