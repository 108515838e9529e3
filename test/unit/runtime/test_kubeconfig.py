"""``agentkube.runtime.kubeconfig``: kubernetes-asyncio's configuration without its generated API, and
the whole package still there for anyone who asks for it. Each case runs in a fresh interpreter,
since what is imported is what is checked."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: not-a-real-token}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
"""


def run(code: str, tmp_path: Path) -> str:
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_client_imports_no_generated_models_and_loads_a_kubeconfig(tmp_path: Path) -> None:
    out = run(
        """
        import asyncio, json, sys
        from agentkube.runtime.client import Client

        async def main():
            async with await Client.from_kubeconfig("kubeconfig") as client:
                print(client.host)
        asyncio.run(main())
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("kubernetes_asyncio.client."))))
        """,
        tmp_path,
    )
    host, modules = out.splitlines()
    assert host == "https://127.0.0.1:6443"
    assert json.loads(modules) == [
        "kubernetes_asyncio.client.configuration",
        "kubernetes_asyncio.client.exceptions",
    ]


@pytest.mark.parametrize("first", ["agentkube", "kubernetes_asyncio"])
def test_the_whole_package_is_there_for_whoever_asks(tmp_path: Path, first: str) -> None:
    order = ["import agentkube.runtime.client", "import kubernetes_asyncio"]
    if first == "kubernetes_asyncio":
        order.reverse()
    out = run(
        "\n".join(order)
        + """
import asyncio
import kubernetes_asyncio.client as client
from kubernetes_asyncio import config, watch
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api, V1ConfigMap
from agentkube.runtime import kubeconfig

assert Configuration is kubeconfig.Configuration is client.configuration.Configuration
assert config.load_kube_config is kubeconfig.load_kube_config
assert ApiClient.__module__ == "kubernetes_asyncio.client.api_client", ApiClient
assert watch.Watch and V1ConfigMap(data={"a": "b"}).data == {"a": "b"}

async def main():
    api = await config.new_client_from_config(config_file="kubeconfig")
    async with api:
        assert isinstance(api, ApiClient) and CoreV1Api(api).api_client is api
        print(api.configuration.host)
asyncio.run(main())
print(kubernetes_asyncio.__version__)
""",
        tmp_path,
    )
    host, version = out.splitlines()
    assert host == "https://127.0.0.1:6443"
    assert version.count(".") == 2


def test_a_proxy_other_than_http_is_refused_by_name() -> None:
    from agentkube.runtime.client import Client, Connection
    from agentkube.runtime.kubeconfig import Configuration

    configuration = Configuration(host="https://127.0.0.1:6443")
    configuration.proxy = "https://user:secret@proxy.example:3128"
    with pytest.raises(ValueError, match=r"proxy https://proxy\.example:3128: only http://") as refused:
        Client(Connection(configuration))
    assert "secret" not in str(refused.value)
