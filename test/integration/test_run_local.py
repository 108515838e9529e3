"""`make run` with no reachable cluster: a local control plane, a kubeconfig kubectl can use, and a
clean stop on Ctrl-C. Runs the same command line as the Makefile's `run` target."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentkube.testing import find_assets

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


def _read_until(proc: subprocess.Popen[str], pattern: str, timeout: float) -> tuple[re.Match[str], str]:
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            seen += line
            if match := re.search(pattern, line):
                return match, seen
        if proc.poll() is not None:
            break
    raise AssertionError(f"no line matching {pattern!r} within {timeout}s; output:\n{seen}")


def test_run_without_a_cluster_starts_a_local_control_plane(tmp_path: Path) -> None:
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
            "--metrics-bind-address=127.0.0.1:0",
            "--log-format=json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,  # outside the checkout: nothing may depend on repository files
    )
    try:
        match, _ = _read_until(proc, r"export KUBECONFIG=(\S+)", timeout=90)
        kubeconfig = match.group(1)
        out = subprocess.run(
            [str(BIN / "kubectl"), "--kubeconfig", kubeconfig, "get", "ns", "-o", "name"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert "namespace/default" in out.stdout.split()
        crds = subprocess.run(
            [str(BIN / "kubectl"), "--kubeconfig", kubeconfig, "get", "crd", "-o", "name"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "customresourcedefinition.apiextensions.k8s.io/mcps.agentkube.io" in crds.stdout.split()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode in (0, 130), proc.returncode
    assert not Path(kubeconfig).exists(), "the local control plane's files were left behind"
