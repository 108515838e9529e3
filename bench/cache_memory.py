"""Cache memory: KiB per cached object, ours against kubernetes_asyncio model objects.

Run ``python -m bench.cache_memory [N]`` (default N = 10,000). It starts its own control plane
(``agentkube.testing.ControlPlane``), creates N ConfigMaps of about 1 KiB each, and measures with
tracemalloc what stays allocated:

- our cache: an ``Informer`` listing the namespace from the real API server until synced (store,
  indexes and all), then stopped so no connection buffer is counted;
- the same objects, from the same JSON bytes, through the informer's store path offline;
- the same JSON bytes deserialized into kubernetes_asyncio ``V1ConfigMap`` models (what a
  kubernetes_asyncio operator keeps), with and without managedFields;
- the same JSON bytes as plain decoded dicts, untouched.

Goal: ours at most half the models' figure.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from agentkube.runtime.client import Client
from agentkube.runtime.gvk import GVK
from agentkube.runtime.informer import Informer
from agentkube.runtime.reflector import Reflector, strip_managed_fields
from agentkube.runtime.store import Store
from agentkube.testing import ControlPlane

CM = GVK("", "v1", "ConfigMap")
NAMESPACE = "bench"
DEFAULT_N = 10_000
CONCURRENCY = 32


def make_configmap(i: int, namespace: str = NAMESPACE) -> dict[str, Any]:
    """A ConfigMap of about 1 KiB as the API server returns it (without managedFields): typical
    labels, four config entries of text that differs per object."""
    line = f"setting-{i:06d} = value for object {i} in the benchmark; "
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"cm-{i:06d}",
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "bench",
                "app.kubernetes.io/instance": f"bench-{i % 10}",
                "app.kubernetes.io/managed-by": "agentkube",
            },
        },
        "data": {f"file-{k}.conf": (line * 4)[:160] for k in range(4)},
    }


async def create_configmaps(client: Client, n: int, namespace: str = NAMESPACE) -> float:
    """Create n ConfigMaps, CONCURRENCY at a time; returns the seconds it took."""
    started = time.perf_counter()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with gate:
            await client.create(make_configmap(i, namespace))

    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - started


def _retained(build: Callable[[], Any]) -> tuple[Any, int]:
    """Bytes still allocated after ``build`` returns (its result kept alive), per tracemalloc."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return result, after - before


async def _retained_async(build: Callable[[], Any]) -> tuple[Any, int]:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = await build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return result, after - before


async def _informer_cache(client: Client) -> Informer:
    informer = Informer(client, CM, namespace=NAMESPACE)
    task = asyncio.create_task(informer.run())
    if not await informer.wait_for_sync(300):
        raise RuntimeError("the informer did not sync within 300 s")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return informer


def _offline_store(raw: list[bytes]) -> Store:
    """The informer's store path without the network: decode, transform, share strings, store."""
    store = Store()
    reflector = Reflector(None, CM, store, lambda event: None)  # type: ignore[arg-type]
    prepared = (reflector._prepare(orjson.loads(b)) for b in raw)
    store.replace([obj for obj in prepared if obj is not None], "0")  # None: a transform refused it
    return store


async def _models(raw: list[bytes], strip: bool) -> list[Any]:
    from kubernetes_asyncio.client import ApiClient

    async with ApiClient() as api:
        deserialize = api._ApiClient__deserialize
        if strip:
            return [deserialize(strip_managed_fields(orjson.loads(b)), "V1ConfigMap") for b in raw]
        return [deserialize(orjson.loads(b), "V1ConfigMap") for b in raw]


async def run(plane: ControlPlane, n: int) -> None:
    assert plane.kubeconfig is not None
    async with await Client.from_kubeconfig(str(plane.kubeconfig)) as client:
        took = await create_configmaps(client, n)
        print(f"created {n} ConfigMaps in {took:.1f} s")
        items, _ = await client.list(CM, NAMESPACE, resource_version=None)
        raw = [orjson.dumps(item) for item in items]
        del items
        with_mf = sum(map(len, raw)) / n
        without_mf = sum(len(orjson.dumps(strip_managed_fields(orjson.loads(b)))) for b in raw) / n
        print(f"average object as JSON: {with_mf:.0f} B as sent, {without_mf:.0f} B without managedFields")

        informer, ours = await _retained_async(lambda: _informer_cache(client))
        assert len(informer.store) == n, len(informer.store)
        offline, ours_offline = _retained(lambda: _offline_store(raw))
        assert len(offline) == n
        plain, plain_bytes = _retained(lambda: [orjson.loads(b) for b in raw])
        models, model_bytes = await _retained_async(lambda: _models(raw, strip=False))
        del models
        stripped_models, stripped_model_bytes = await _retained_async(lambda: _models(raw, strip=True))
        del stripped_models, plain

    def kib(total: int) -> float:
        return total / n / 1024

    rows = [
        ("agentkube cache (Informer from the API server, store + indexes)", ours),
        ("agentkube store path offline (same bytes)", ours_offline),
        ("kubernetes_asyncio V1ConfigMap models", model_bytes),
        ("kubernetes_asyncio models, managedFields dropped first", stripped_model_bytes),
        ("plain orjson dicts as sent (with managedFields)", plain_bytes),
    ]
    print(f"\nretained memory per object, {n} ConfigMaps (tracemalloc, Python {sys.version.split()[0]}):")
    for label, total in rows:
        print(f"  {label:<66} {kib(total):6.3f} KiB")
    print(
        f"\nours / models: {ours / model_bytes:.2f} (goal <= 0.50); "
        f"ours / models without managedFields: {ours / stripped_model_bytes:.2f}"
    )


def run_on_control_plane(run: Callable[[ControlPlane, int], Awaitable[None]], default_n: int) -> None:
    """Start a control plane with the ``bench`` namespace and run ``run(plane, n)`` on it; ``n`` is the
    first command-line argument, else ``default_n``. The ConfigMap benchmarks' ``main``."""
    n = int(sys.argv[1]) if len(sys.argv) > 1 else default_n
    with ControlPlane() as plane:
        plane.create_namespace(NAMESPACE)
        asyncio.run(run(plane, n))


def main() -> None:
    run_on_control_plane(run, DEFAULT_N)


if __name__ == "__main__":
    main()
