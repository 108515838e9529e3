"""A local cluster as a user gets it from ``make run``: control plane, kube-controller-manager, the local
node of ``agentkube.testing.kubelet`` and the operator itself (``agentkube manager``, a process of its
own with its default data-plane image), driven with ``kubectl`` and the ``mcp`` SDK.

``LocalCluster`` is started once per session by the ``local_cluster`` fixture (test/e2e/conftest.py).
Everything it starts carries a parent-death signal and is stopped on the way out, so a failing test,
Ctrl-C or a killed test process leaves no process behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from agentkube.testing import ControlPlane, eventually
from agentkube.testing.controlplane import _die_with_parent

__all__ = [
    "LocalCluster",
    "call_tool_text",
    "condition",
    "sample",
    "start_local_cluster",
]

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "config" / "samples"
BIN = Path(sys.executable).parent
DEADLINE = 120.0
"""Seconds a convergence may take here: pods start in about a second, a rollout of two replicas in
a few; the margin is for a loaded 2-core machine."""


def condition(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or ():
        if c.get("type") == ctype:
            return dict(c)
    return {}


@dataclass
class LocalCluster:
    plane: ControlPlane
    manager: subprocess.Popen[bytes]
    manager_log: Path

    @property
    def kubeconfig(self) -> str:
        assert self.plane.kubeconfig is not None
        return str(self.plane.kubeconfig)

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        """Run kubectl against the cluster; its stdout, or AssertionError with stderr when it fails."""
        done = subprocess.run(
            [str(BIN / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def apply(self, docs: list[dict[str, Any]]) -> None:
        self.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs))

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        out = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", "--ignore-not-found")
        return orjson.loads(out) if out.strip() else None

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        out = self.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
        return list(orjson.loads(out)["items"])

    def create_namespace(self, name: str) -> None:
        self.kubectl("create", "namespace", name, check=False)

    async def ready(self, kind: str, name: str, namespace: str, within: float = DEADLINE) -> dict[str, Any]:
        """The object once its Ready condition is True (the operator's own word)."""

        def check() -> dict[str, Any] | None:
            obj = self.get(kind, name, namespace)
            return obj if condition(obj, "Ready").get("status") == "True" else None

        try:
            result: dict[str, Any] = await eventually(check, f"{kind} {namespace}/{name} is Ready", within)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.describe(kind, name, namespace)}") from None
        return result

    def describe(self, kind: str, name: str, namespace: str) -> str:
        """What ``kubectl describe`` shows of the object and of the pods beside it, for a failure message."""
        return "\n".join(
            [
                self.kubectl("describe", kind, name, "-n", namespace, check=False),
                self.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False),
                f"node log: {self.plane.work_dir}/node.log; operator log: {self.manager_log}",
            ]
        )

    async def service_url(self, namespace: str, name: str, port: int) -> str:
        """The local address of a Service port, once the local node serves it."""
        url: str = await eventually(
            lambda: self.plane.service_url(namespace, name, port),
            f"the local node serves {namespace}/{name}:{port}",
            DEADLINE,
        )
        return url

    def stop(self) -> None:
        if self.manager.poll() is None:
            self.manager.send_signal(signal.SIGTERM)
            try:
                self.manager.wait(30)
            except subprocess.TimeoutExpired:
                self.manager.kill()
                self.manager.wait(10)
        self.plane.stop()


def start_local_cluster(crd_paths: list[Path], work: Path) -> Iterator[LocalCluster]:
    """Start everything, yield the cluster, stop everything (a generator for a fixture)."""
    from agentkube.cli import DEFAULT_DATAPLANE_IMAGE

    plane = ControlPlane(crd_paths=crd_paths, controller_manager=True)
    plane.start()
    manager: subprocess.Popen[bytes] | None = None
    log_path = work / "operator.log"
    try:
        plane.start_node([DEFAULT_DATAPLANE_IMAGE])
        with log_path.open("ab") as log:
            manager = subprocess.Popen(
                [
                    str(BIN / "agentkube"),
                    "manager",
                    f"--kubeconfig={plane.kubeconfig}",
                    "--health-probe-bind-address=127.0.0.1:0",
                    "--metrics-bind-address=0",
                    "--log-format=json",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)},
                preexec_fn=_die_with_parent,
            )
        cluster = LocalCluster(plane, manager, log_path)
        yield cluster
    finally:
        if manager is not None:
            LocalCluster(plane, manager, log_path).stop()
        else:
            plane.stop()


async def call_tool_text(client: Any, name: str, arguments: dict[str, Any] | None = None) -> str:
    result = await client.call_tool(name, arguments or {})
    assert not result.is_error, result
    return "".join(getattr(c, "text", "") for c in result.content)


def sample(name: str) -> list[dict[str, Any]]:
    """The documents of ``config/samples/<name>``, parsed; a test changes only what it says it does."""
    return [d for d in yaml.safe_load_all((SAMPLES / name).read_text()) if d]
