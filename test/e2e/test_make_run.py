"""The two-minute tour of the README, as a test: ``make run``'s command with no cluster anywhere, an
MCP applied with kubectl, the printed local address called with the ``mcp`` SDK, and Ctrl-C ending
every process it started."""

from __future__ import annotations

import asyncio
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mcp.client.client import Client

from agentkube.testing import find_assets
from test.e2e.peers import time_stdio
from test.processes import descendants, pid_alive

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


class _Output:
    """What a process printed so far, read with a deadline (never a fixed sleep). Reads the pipe's
    bytes as they come: a buffered ``readline`` after ``select`` would strand lines in its buffer."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.seen = ""

    def until(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if match := re.search(pattern, self.seen, re.MULTILINE):
                return match
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    break
                self.seen += chunk.decode(errors="replace")
        raise AssertionError(f"no line matching {pattern!r} within {timeout}s; output:\n{self.seen[-4000:]}")


async def _tool_names(url: str) -> set[str]:
    async with Client(url) as client:
        return {t.name for t in (await client.list_tools()).tools}


def test_make_run_serves_an_applied_mcp_at_a_printed_address_and_ctrl_c_ends_it_all(
    tmp_path: Path,
) -> None:
    env = {
        **os.environ,
        "KUBECONFIG": str(tmp_path / "no-such-kubeconfig"),
        "KUBEBUILDER_ASSETS": str(find_assets()),
    }
    proc = subprocess.Popen(
        [
            str(BIN / "agentkube"),
            "manager",
            "--local-control-plane=auto",
            "--health-probe-bind-address=127.0.0.1:0",
            "--metrics-bind-address=0",
            "--log-format=json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,  # outside the checkout, as an installed agentkube runs
    )
    out = _Output(proc)
    try:
        assert "no kubeconfig at" in out.until(r"^agentkube: .*starting a local cluster.*$", 90).group(0)
        kubeconfig = out.until(r"export KUBECONFIG=(\S+)", 90).group(1)
        time_server = time_stdio("UTC")
        mcp = {
            "apiVersion": "agentkube.io/v1alpha1",
            "kind": "MCP",
            "metadata": {"name": "time", "namespace": "default"},
            "spec": {
                "upstreams": [
                    {
                        "name": "time",
                        "kind": "stdio",
                        "stdio": {"command": time_server.command, "args": time_server.args},
                    }
                ]
            },
        }
        kubectl = [str(BIN / "kubectl"), f"--kubeconfig={kubeconfig}"]
        applied = subprocess.run(
            [*kubectl, "apply", "-f", "-"],
            input=yaml.safe_dump(mcp),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert applied.returncode == 0, applied.stderr
        waited = subprocess.run(
            [*kubectl, "wait", "mcp/time", "--for=condition=Ready", "--timeout=120s"],
            capture_output=True,
            text=True,
            timeout=150,
        )
        assert waited.returncode == 0, waited.stderr + out.seen[-4000:]
        address = out.until(r"^agentkube: service default/time:8080 answers at (http://\S+)$", 60).group(1)
        assert "get_current_time" in asyncio.run(_tool_names(f"{address}/mcp"))
        running = set(descendants(proc.pid))
        assert len(running) >= 5  # etcd, kube-apiserver, kube-controller-manager, the node, its pods
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert proc.returncode in (0, 130), out.seen[-4000:]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(pid_alive(p) for p in running):
        time.sleep(0.1)
    assert not [p for p in running if pid_alive(p)], "Ctrl-C left processes behind"
    assert not Path(kubeconfig).exists(), "the local cluster's files were left behind"
