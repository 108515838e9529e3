"""Latency of one edit while a controller works through a backlog of 10,000 unchanged objects.

    python -m bench.resync_latency [--objects N] [--runs R] [--cost-ms MS]    (default 10000, 1, 0)

Against the real API server (``agentkube.testing.ControlPlane``): N ConfigMaps are created once in
one namespace. Then, for the priority queue on and off, a fresh manager runs one controller over
those ConfigMaps (one worker, the default) whose reconcile reads the object from the cache and makes
one GET to the API server (the one request per object a restart may spend checking a child for
drift), plus ``--cost-ms`` of simulated work. Two situations, each a fresh manager:

- restart: the manager starts, the informer lists N objects, the controller's handler gets them as
  the initial list; once 100 of them are reconciled, one ConfigMap (the last in list order, so the
  one that waits longest in a first-come queue) is edited;
- resync: the manager runs with a 15 s sync period; once the initial backlog is done and 100
  reconciles of the first resync have run, the same ConfigMap is edited.

The figure is the time from the edit's PATCH returning to the reconcile that first sees the edited
data (read from the cache inside the reconcile), and the time the whole backlog took. With the
priority queue the edit waits only for the reconcile in flight (goal: about a second or less); without
it, for the rest of the backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass

from agentkube.runtime.client import Client
from agentkube.runtime.gvk import GVK
from agentkube.runtime.logging import configure_logging
from agentkube.runtime.manager import Manager, ManagerOptions
from agentkube.runtime.reconcile import Request
from agentkube.testing import ControlPlane

CM = GVK("", "v1", "ConfigMap")
NAMESPACE = "bench-resync"
IN_FLIGHT = 32
HEAD_START = 100
SYNC_PERIOD = 15.0


@dataclass
class Figure:
    edit_latency: float
    backlog_seconds: float


def _name(i: int) -> str:
    return f"cm-{i:06d}"


async def _create_objects(client: Client, n: int) -> None:
    sem = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int) -> None:
        async with sem:
            await client.create(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": _name(i), "namespace": NAMESPACE},
                    "data": {"index": str(i), "payload": "x" * 200},
                }
            )

    await asyncio.gather(*(one(i) for i in range(n)))


async def _measure(client: Client, n: int, *, priority: bool, phase: str, cost: float, token: str) -> Figure:
    options = ManagerOptions(
        metrics_bind_address="0",
        health_probe_bind_address="0",
        namespace=NAMESPACE,
        install_signal_handlers=False,
        sync_period=SYNC_PERIOD if phase == "resync" else None,
    )
    manager = Manager(client, options)
    target = _name(n - 1)
    reconciles = 0
    seen_edit = asyncio.get_running_loop().create_future()
    edited_at = 0.0

    backlog_started = 0.0
    head_start_at = HEAD_START if phase == "restart" else n + HEAD_START
    backlog_end = n if phase == "restart" else 2 * n
    head_start, backlog_done = asyncio.Event(), asyncio.Event()

    async def reconcile(request: Request) -> None:
        nonlocal reconciles, backlog_started
        reconciles += 1
        if reconciles == 1 or reconciles == n + 1:
            backlog_started = time.perf_counter()
        if reconciles == head_start_at:
            head_start.set()
        if reconciles == backlog_end:
            backlog_done.set()
        obj = manager.cache.get(CM, request.name, request.namespace)
        await client.get(CM, request.name, request.namespace)
        if cost:
            await asyncio.sleep(cost)
        if obj is not None and obj.get("data", {}).get("edit") == token and not seen_edit.done():
            seen_edit.set_result(time.perf_counter() - edited_at)

    (
        manager.controller(f"bench-{phase}-{'priority' if priority else 'fifo'}")
        .for_kind(CM)
        .with_options(use_priority_queue=priority)
        .complete(reconcile)
    )
    run = asyncio.create_task(manager.run())
    try:
        await asyncio.wait_for(head_start.wait(), 3600)
        await client.patch(CM, target, NAMESPACE, {"data": {"edit": token}})
        edited_at = time.perf_counter()
        latency = await asyncio.wait_for(seen_edit, 3600)
        await asyncio.wait_for(backlog_done.wait(), 3600)
        backlog = time.perf_counter() - backlog_started
        return Figure(latency, backlog)
    finally:
        manager.stop()
        await asyncio.wait_for(run, 60)


async def _main(n: int, runs: int, cost: float) -> None:
    with ControlPlane() as plane:
        assert plane.kubeconfig is not None
        plane.create_namespace(NAMESPACE)
        async with await Client.from_kubeconfig(str(plane.kubeconfig)) as client:
            started = time.perf_counter()
            await _create_objects(client, n)
            print(f"created {n} ConfigMaps in {time.perf_counter() - started:.1f} s")
            print(
                f"one worker; reconcile = cache read + one GET + {cost * 1000:g} ms; "
                f"edit after {HEAD_START} reconciles of the backlog"
            )
            results: dict[tuple[str, bool], list[Figure]] = {}
            edits = 0
            for run in range(runs):
                for phase in ("restart", "resync"):
                    for priority in (True, False):
                        edits += 1
                        figure = await _measure(
                            client, n, priority=priority, phase=phase, cost=cost, token=f"edit-{edits}"
                        )
                        results.setdefault((phase, priority), []).append(figure)
                        print(
                            f"  run {run + 1} {phase:8} priority queue {'on ' if priority else 'off'}: "
                            f"edit reconciled after {figure.edit_latency:.3f} s; "
                            f"backlog of {n} took {figure.backlog_seconds:.1f} s"
                        )
            print(f"medians over {runs} run(s), {n} objects:")
            for (phase, priority), figures in results.items():
                latency = statistics.median(f.edit_latency for f in figures)
                backlog = statistics.median(f.backlog_seconds for f in figures)
                state = "on " if priority else "off"
                print(
                    f"  {phase:8} priority queue {state}: edit latency {latency:.3f} s "
                    f"(backlog {backlog:.1f} s)"
                )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--cost-ms", type=float, default=0.0)
    args = parser.parse_args()
    configure_logging("warning", "console")
    asyncio.run(_main(args.objects, args.runs, args.cost_ms / 1000))


if __name__ == "__main__":
    main()
