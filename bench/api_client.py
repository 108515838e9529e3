"""The API client's CPU per request: agentkube's ``Client`` beside kubernetes-asyncio's aiohttp session.

Run ``python -m bench.api_client [--requests 1500] [--rounds 3]``. It starts its own control plane
(``agentkube.testing.ControlPlane``) and, in this one process, sends the same requests two ways,
``--in-flight`` (4, the manager's worker count) at a time, interleaved round by round:

- ``agentkube``: ``Client.get`` and ``Client.apply`` (server-side apply with force), the client the
  operator's reconciles use: the lean HTTP/1.1 client of ``agentkube/dataplane/http1.py``;
- ``aiohttp``: the same requests through an aiohttp session on kubernetes-asyncio's connector
  (``kubernetes_asyncio.client.rest.RESTClientObject``: the same TLS settings from the same
  kubeconfig) with ``trust_env`` off (kubernetes-asyncio's own session looks the proxy variables up
  in a thread on every request, several times this cost), headers built once, the answer decoded
  with orjson: what this project's client did before it moved to the lean client.

For each it prints this process's CPU (``time.process_time``) per request and the wall time per
request, every round and the medians, and the ratio of agentkube's CPU to aiohttp's. The API server
and etcd run in processes of their own, so their CPU is not counted. Not a test: figures from a
loaded machine are noise.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from agentkube.runtime.client import Client
from agentkube.runtime.gvk import GVK
from agentkube.runtime.kubeconfig import Configuration, load_kube_config
from agentkube.testing import ControlPlane

CM = GVK("", "v1", "ConfigMap")
NAMESPACE = "default"
NAMES = 50
WAYS = ("agentkube", "aiohttp")
VERBS = ("get", "apply")


def _configmap(i: int) -> dict[str, Any]:
    meta = {"name": f"bench-{i % NAMES}", "namespace": NAMESPACE}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"key": "v" * 200}}


async def _aiohttp_sender(
    kubeconfig: str,
) -> tuple[Callable[[str, int], Awaitable[None]], Callable[[], Awaitable[None]]]:
    from kubernetes_asyncio.client.rest import RESTClientObject

    configuration = Configuration()
    await load_kube_config(config_file=kubeconfig, client_configuration=configuration, persist_config=False)
    rest = RESTClientObject(configuration)
    session = aiohttp.ClientSession(
        connector=rest.pool_manager.connector, connector_owner=False, trust_env=False, read_bufsize=2**21
    )
    base = str(configuration.host).rstrip("/")
    auth = await configuration.auth_settings()
    headers = {"Accept": "application/json", "User-Agent": "bench"}
    for setting in auth.values():
        if setting.get("in") == "header" and setting.get("value"):
            headers[str(setting["key"])] = str(setting["value"])
    apply_headers = {**headers, "Content-Type": "application/apply-patch+yaml"}
    path = f"{base}/api/v1/namespaces/{NAMESPACE}/configmaps"

    async def send(verb: str, i: int) -> None:
        if verb == "get":
            response = await session.get(f"{path}/bench-0", headers=headers)
        else:
            body = orjson.dumps(_configmap(i))
            response = await session.patch(
                f"{path}/bench-{i % NAMES}",
                params={"fieldManager": "bench", "force": "true"},
                data=body,
                headers=apply_headers,
            )
        async with response:
            data = await response.read()
            if response.status != 200:
                raise RuntimeError(f"{verb}: {response.status} {data[:200]!r}")
            orjson.loads(data)

    async def close() -> None:
        await session.close()
        await rest.close()

    return send, close


async def _send_all(send: Callable[[str, int], Awaitable[None]], verb: str, n: int, in_flight: int) -> None:
    slots = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with slots:
            await send(verb, i)

    await asyncio.gather(*(one(i) for i in range(n)))


async def _measure(kubeconfig: str, requests: int, rounds: int, in_flight: int) -> None:
    async with await Client.from_kubeconfig(kubeconfig, field_manager="bench") as client:
        for i in range(NAMES):
            await client.apply(_configmap(i), force=True)

        async def ours(verb: str, i: int) -> None:
            if verb == "get":
                await client.get(CM, "bench-0", NAMESPACE)
            else:
                await client.apply(_configmap(i), force=True)

        theirs, close = await _aiohttp_sender(kubeconfig)
        senders = {"agentkube": ours, "aiohttp": theirs}
        figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
        try:
            for send in senders.values():  # warm both: connections made, discovery cached
                await asyncio.gather(*(send(verb, i) for verb in VERBS for i in range(in_flight)))
            for r in range(1, rounds + 1):
                for verb in VERBS:
                    for way in WAYS:
                        cpu, wall = time.process_time(), time.perf_counter()
                        await _send_all(senders[way], verb, requests, in_flight)
                        cpu_us = 1e6 * (time.process_time() - cpu) / requests
                        wall_us = 1e6 * (time.perf_counter() - wall) / requests
                        figures.setdefault((verb, way), []).append((cpu_us, wall_us))
                        print(
                            f"round {r} {verb:5} {way:9}: {cpu_us:6.1f} µs CPU/request, "
                            f"{wall_us:7.1f} µs wall/request",
                            flush=True,
                        )
        finally:
            await close()
    print(f"medians of {rounds} round(s), {requests} requests each, {in_flight} in flight:")
    for verb in VERBS:
        cpu = {way: statistics.median(c for c, _ in figures[(verb, way)]) for way in WAYS}
        wall = {way: statistics.median(w for _, w in figures[(verb, way)]) for way in WAYS}
        print(
            f"  {verb:5}: agentkube {cpu['agentkube']:6.1f} µs CPU ({wall['agentkube']:.0f} µs wall), "
            f"aiohttp {cpu['aiohttp']:6.1f} µs CPU ({wall['aiohttp']:.0f} µs wall); "
            f"agentkube / aiohttp CPU {cpu['agentkube'] / cpu['aiohttp']:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500, help="requests per way, verb and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=4)
    args = parser.parse_args()
    with ControlPlane() as plane:
        assert plane.kubeconfig is not None
        asyncio.run(_measure(str(plane.kubeconfig), args.requests, args.rounds, args.in_flight))


if __name__ == "__main__":
    main()
