"""Run the real ``agentkube llm-gateway`` console script on loopback with a config a test writes.

``run_gateway(tmp_path, upstreams, env=..., **fields)`` writes an ``LLMGatewayConfig`` (JSON, which is
YAML), starts the program in its own process group, waits until ``/readyz`` answers 200 (polled
against a deadline) and ends the group on the way out, however the test ends. The yielded
``RunningGateway`` knows the base URL (``url``; the OpenAI SDK's ``base_url`` is ``url + "/v1"``),
the metrics URL, and the captured log, which tests grep for secrets.
"""

from __future__ import annotations

import contextlib
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from test.e2e.peers import HttpPeer, PeerCommand, free_port, start_http_peer
from test.e2e.proxy_harness import AGENTKUBE, wait_ready

__all__ = ["Answer", "RunningGateway", "gateway_config", "metric", "request", "run_gateway", "upstream"]


@dataclass(frozen=True)
class RunningGateway:
    peer: HttpPeer
    url: str
    metrics_url: str
    config_path: Path

    @property
    def openai_base(self) -> str:
        return self.url + "/v1"

    def log(self) -> str:
        return self.peer.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            text: str = response.read().decode()
        return text


@dataclass(frozen=True)
class Answer:
    """A raw HTTP answer: status, headers (lower-cased names) and body."""

    status_code: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        return orjson.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


def request(
    method: str, url: str, content: bytes | None = None, headers: Mapping[str, str] | None = None
) -> Answer:
    """One plain HTTP request with exactly these bytes (the SDKs would reshape a malformed body)."""
    sent = urllib.request.Request(url, data=content, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(sent, timeout=30) as response:
            return Answer(
                response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
            )
    except urllib.error.HTTPError as e:
        return Answer(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def upstream(name: str, provider: str, endpoint: str, models: list[str], **extra: Any) -> dict[str, Any]:
    return {"name": name, "provider": provider, "endpoint": endpoint, "models": models, **extra}


def gateway_config(
    upstreams: list[dict[str, Any]], port: int, metrics_port: int, **extra: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "agentkube.io/v1alpha1",
        "kind": "LLMGatewayConfig",
        "name": "e2e/gateway",
        "listen": {"port": port},
        "metrics": {"port": metrics_port},
        "upstreams": upstreams,
        **extra,
    }


@contextlib.contextmanager
def run_gateway(
    tmp_path: Path,
    upstreams: list[dict[str, Any]],
    *,
    env: Mapping[str, str] | None = None,
    log_level: str = "info",
    **extra: Any,
) -> Iterator[RunningGateway]:
    port, metrics_port = free_port(), free_port()
    config = gateway_config(upstreams, port, metrics_port, **extra)
    path = tmp_path / f"gateway-{port}.json"
    path.write_bytes(orjson.dumps(config))
    argv = (AGENTKUBE, "llm-gateway", "--config", str(path), "--host", "127.0.0.1", "--log-level", log_level)
    log = tmp_path / f"gateway-{port}.log"
    with start_http_peer(PeerCommand(argv, dict(env or {})), port, "", log_path=log, grace=30.0) as peer:
        wait_ready(f"http://127.0.0.1:{port}/readyz", peer=peer)
        yield RunningGateway(
            peer, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics", path
        )
