"""Watch throughput: events per second decoded and stored by the informer, on one core.

Run ``python -m bench.watch_throughput [N]`` (default N = 20,000). It starts its own control plane
(``agentkube.testing.ControlPlane``), pins this process to one CPU (the API server and etcd keep the
others), and prints three figures:

1. real watch stream, replayed: N ConfigMaps (~1 KiB) are created first; then a reflector watches
   from the resourceVersion before them, and the API server streams all N ADDED events from its
   watch cache as fast as it can send them. Each is read off the socket, decoded (orjson), transformed
   (managedFields dropped), its strings shared, stored and indexed, and delivered to a handler.
   Figures: events per wall second, and per CPU second of this process.
2. live: an informer that was watching while the N objects were created; this is bounded by how fast
   the API server accepts creates, not by the informer, and is printed only for scale.
3. recorded stream, offline: the same N events as recorded JSON lines pushed through the same decode
   + store path without a socket: the ceiling of our own code.

Goal: >= 5,000 events/s on one core.
"""

from __future__ import annotations

import asyncio
import os
import time

import orjson

from agentkube.runtime.client import Client
from agentkube.runtime.gvk import GVK
from agentkube.runtime.informer import Event, Informer
from agentkube.runtime.reflector import Reflector
from agentkube.runtime.store import Store
from agentkube.testing import ControlPlane
from bench.cache_memory import NAMESPACE, create_configmaps, run_on_control_plane

CM = GVK("", "v1", "ConfigMap")
DEFAULT_N = 20_000


def _pin_to_one_cpu() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity here)"
    cpus = sorted(os.sched_getaffinity(0))
    # The last CPU for us; child processes were started before, so they keep every CPU.
    os.sched_setaffinity(0, {cpus[-1]})
    return f"pinned to CPU {cpus[-1]} of {len(cpus)}"


async def _replay(client: Client, from_rv: str, n: int) -> tuple[float, float, int]:
    """Watch from ``from_rv`` until the store holds n objects; (wall s, CPU s, relists)."""
    store = Store()
    delivered = 0
    done = asyncio.Event()

    def handler(event: Event) -> None:
        nonlocal delivered
        delivered += 1
        if delivered >= n:
            done.set()

    reflector = Reflector(client, CM, store, handler, namespace=NAMESPACE)
    reflector.resume_from(from_rv)
    wall, cpu = time.perf_counter(), time.process_time()
    task = asyncio.create_task(reflector.run())
    try:
        await asyncio.wait_for(done.wait(), 600)
    finally:
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(store) == n, len(store)
    return wall, cpu, reflector.lists


def _offline(lines: list[bytes]) -> tuple[float, float]:
    store = Store()
    reflector = Reflector(None, CM, store, lambda event: None)  # type: ignore[arg-type]
    apply, loads = reflector._apply, orjson.loads
    wall, cpu = time.perf_counter(), time.process_time()
    for line in lines:
        apply(loads(line))
    return time.perf_counter() - wall, time.process_time() - cpu


async def run(plane: ControlPlane, n: int) -> None:
    assert plane.kubeconfig is not None
    print(f"this process: {_pin_to_one_cpu()}")
    async with await Client.from_kubeconfig(str(plane.kubeconfig)) as client:
        live = Informer(client, CM, namespace=NAMESPACE)
        first_last: list[float] = []
        all_seen = asyncio.Event()

        def on_live(event: Event) -> None:
            now = time.perf_counter()
            if not first_last:
                first_last.append(now)
            first_last[1:] = [now]
            if len(live.store) >= n:
                all_seen.set()

        live.add_handler(on_live)
        live_task = asyncio.create_task(live.run())
        assert await live.wait_for_sync(60)
        start_rv = live.resource_version
        took = await create_configmaps(client, n)
        await asyncio.wait_for(all_seen.wait(), 600)
        live_task.cancel()
        await asyncio.gather(live_task, return_exceptions=True)
        print(f"created {n} ConfigMaps in {took:.1f} s ({n / took:.0f} creates/s)")

        wall, cpu, relists = await _replay(client, start_rv, n)
        items, _ = await client.list(CM, NAMESPACE, resource_version=None)
        lines = [orjson.dumps({"type": "ADDED", "object": item}) for item in items]
        del items

    print()
    print(f"1. real watch stream replayed from resourceVersion {start_rv}: {n} events")
    if relists:
        print("   (the API server answered 410 Gone, so the reflector relisted: this figure is a list)")
    print(f"   {n / wall:10.0f} events/s wall   {n / cpu:10.0f} events per CPU-second   (goal >= 5000)")
    live_span = first_last[-1] - first_last[0] if len(first_last) > 1 else float("nan")
    print(f"2. live while creating (bounded by the API server's create rate): {n / live_span:10.0f} events/s")
    owall, ocpu = _offline(lines)
    print(
        f"3. recorded stream offline (decode + transform + store, no socket): {n / owall:10.0f} events/s "
        f"({n / ocpu:.0f} per CPU-second)"
    )


def main() -> None:
    run_on_control_plane(run, DEFAULT_N)


if __name__ == "__main__":
    main()
