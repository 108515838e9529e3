"""Run ``agentkube mcp-proxy`` and the project's fixture MCP server as real processes on loopback.

``run_proxy(tmp_path, upstreams, ...)`` writes an ``MCPProxyConfig``, starts the real console
script, waits until ``/readyz`` answers 200 (polled against a deadline) and ends the process group
on the way out, however the test ends. ``run_fixture(...)`` does the same for
``test.e2e.fixture_server``. Both yield the ``peers.HttpPeer`` (url, process, log).
"""

from __future__ import annotations

import contextlib
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from test.e2e.peers import ROOT, HttpPeer, PeerCommand, PeerError, free_port, start_http_peer

__all__ = [
    "AGENTKUBE",
    "RunningProxy",
    "http_upstream",
    "proxy_config",
    "run_fixture",
    "run_proxy",
    "wait_ready",
]

AGENTKUBE = str(Path(sys.executable).with_name("agentkube"))
KEYS = "k1:" + "A" * 43 + "="
"""A fixed session key ring, shared by proxies that stand for replicas of one MCP."""


@dataclass(frozen=True)
class RunningProxy:
    peer: HttpPeer
    url: str
    metrics_url: str
    config_path: Path

    @property
    def base(self) -> str:
        return self.url.removesuffix("/mcp")


def http_upstream(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "http", "name": name, "url": url, **extra}


def proxy_config(
    upstreams: list[dict[str, Any]], port: int, metrics_port: int, **extra: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "agentkube.io/v1alpha1",
        "kind": "MCPProxyConfig",
        "name": "e2e/proxy",
        "listen": {"port": port},
        "metrics": {"port": metrics_port},
        "upstreams": upstreams,
        **extra,
    }


def wait_ready(url: str, within: float = 30.0, peer: HttpPeer | None = None) -> None:
    deadline = time.monotonic() + within
    last = ""
    while time.monotonic() < deadline:
        if peer is not None and peer.process.poll() is not None:
            raise PeerError(f"the proxy exited with {peer.process.returncode}:\n{peer.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as e:
            last = e.read().decode(errors="replace")
        except OSError as e:
            last = str(e)
        time.sleep(0.05)  # a poll interval with a deadline, not a wait for an event
    raise PeerError(
        f"{url} not ready within {within:g} s ({last})" + (f":\n{peer.log_tail()}" if peer else "")
    )


@contextlib.contextmanager
def run_proxy(
    tmp_path: Path,
    upstreams: list[dict[str, Any]],
    *,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    ready: bool = True,
    listed: bool = True,
    log_level: str = "info",
    **extra: Any,
) -> Iterator[RunningProxy]:
    port = port or free_port()
    metrics_port = free_port()
    config = proxy_config(upstreams, port, metrics_port, **extra)
    path = tmp_path / f"proxy-{port}.json"
    path.write_bytes(orjson.dumps(config))
    cmd = PeerCommand(
        (AGENTKUBE, "mcp-proxy", "--config", str(path), "--host", "127.0.0.1", "--log-level", log_level),
        dict(env or {}),
    )
    with start_http_peer(cmd, port, "/mcp", log_path=tmp_path / f"proxy-{port}.log", grace=30.0) as peer:
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        if ready:
            wait_ready(f"http://127.0.0.1:{port}/readyz", peer=peer)
        if listed:
            wait_listed(metrics_url, [u["name"] for u in upstreams], peer)
        yield RunningProxy(peer, peer.url, metrics_url, path)


def wait_listed(metrics_url: str, names: list[str], peer: HttpPeer, within: float = 30.0) -> None:
    """Until every upstream answers and its tools are in the catalog (ready means only "tried")."""
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(metrics_url, timeout=1) as response:
                text = response.read().decode()
        except OSError:
            text = ""
        if all(f'agentkube_mcp_upstream_up{{upstream="{n}"}} 1.0' in text for n in names) and all(
            f'agentkube_mcp_upstream_items{{kind="tools",upstream="{n}"}}' in text for n in names
        ):
            return
        if time.monotonic() > deadline:
            raise PeerError(f"upstreams {names} not listed within {within:g} s:\n{peer.log_tail()}")
        time.sleep(0.05)  # a poll interval with a deadline


@contextlib.contextmanager
def run_fixture(
    tmp_path: Path,
    *,
    name: str = "fixture",
    tools: int = 0,
    page_size: int = 50,
    token: str | None = None,
    token_file: Path | None = None,
    tool_names: tuple[str, ...] = (),
    legacy_only: bool = False,
    port: int | None = None,
) -> Iterator[HttpPeer]:
    port = port or free_port()
    argv = [sys.executable, "-m", "test.e2e.fixture_server", "--port", str(port), "--name", name]
    argv += ["--tools", str(tools), "--page-size", str(page_size)]
    if token:
        argv += ["--token", token]
    if token_file:
        argv += ["--token-file", str(token_file)]
    if tool_names:
        argv += ["--tool-names", ",".join(tool_names)]
    if legacy_only:
        argv.append("--legacy-only")
    log = tmp_path / f"fixture-{name}-{port}.log"
    with start_http_peer(PeerCommand(tuple(argv)), port, "/mcp", cwd=ROOT, log_path=log) as peer:
        yield peer
