"""Convergence of N MCPs: how fast the operator turns them into running infrastructure, and at what cost.

    python -m bench.converge [N ...] [--runs R]        (default: N = 100 and 1000, R = 3)

For each N and run: a fresh control plane (``agentkube.testing.ControlPlane``, our CRDs installed,
a /16 Service range); the manager with the MCP and LLMGateway controllers in its own process (so its
memory is its own), watching every namespace, with a 30 s resync period (the first resync comes after
convergence and gives the resync figure); once it is ready, N MCPs are created (32 requests in
flight), each with an http upstream whose bearer token comes from one shared Secret. Figures:

- seconds from the first create until every MCP shows ``observedGeneration`` current and
  ``Accepted=True`` (watched through an informer, not polled), and objects per second;
- write requests (POST, PUT, PATCH, DELETE, from the manager's ``rest_client_requests_total``) per
  MCP on first convergence and over one resync of the converged world. Children and status are
  written with server-side apply (PATCH) and Events created (POST), so the POSTs are shown apart
  as Events;
- the manager's peak RSS and CPU seconds (``getrusage``, reported by the manager process on exit).

Medians over the runs are printed last. Goals on a 2-core machine: 1000 MCPs converged in <= 30 s,
<= 4 object writes per MCP on first convergence, 0 writes on a resync.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from agentkube.controllers.kinds import MCP
from agentkube.runtime.client import Client
from agentkube.runtime.informer import Event, Informer
from agentkube.testing import ControlPlane

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "bench"
IN_FLIGHT = 32
SYNC_PERIOD = 30.0
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


# ------------------------------------------------------------------------------- the manager process


def run_manager(kubeconfig: str, metrics_port: int, sync_period: float) -> None:
    """The manager process: our two controllers, every namespace; prints its peak RSS on exit."""
    from agentkube.controllers import OperatorOptions, llmgateway, mcp
    from agentkube.runtime.logging import configure_logging
    from agentkube.runtime.manager import Manager, ManagerOptions

    configure_logging("warning", "console")

    async def main() -> None:
        client = await Client.from_kubeconfig(kubeconfig)
        manager = Manager(
            client,
            ManagerOptions(
                metrics_bind_address=f"127.0.0.1:{metrics_port}",
                health_probe_bind_address=f"127.0.0.1:{metrics_port}",
                sync_period=sync_period,
            ),
        )
        options = OperatorOptions(dataplane_image="ghcr.io/agentkube/agentkube:bench")
        mcp.setup(manager, options)
        llmgateway.setup(manager, options)
        try:
            await manager.run()
        finally:
            await client.close()

    asyncio.run(main())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    print(json.dumps({"peak_rss_mib": usage.ru_maxrss / 1024, "cpu_seconds": cpu}), flush=True)


# ------------------------------------------------------------------------------------- measuring


@dataclass
class Run:
    n: int
    seconds: float
    writes_per_object: float
    event_writes_per_object: float
    resync_writes_per_object: float
    peak_rss_mib: float
    cpu_seconds: float

    def line(self) -> str:
        return (
            f"N={self.n}: converged in {self.seconds:.2f} s ({self.n / self.seconds:.0f} objects/s); "
            f"writes per MCP: first convergence {self.writes_per_object:.2f} objects + "
            f"{self.event_writes_per_object:.2f} Events, resync {self.resync_writes_per_object:.2f}; "
            f"manager peak RSS {self.peak_rss_mib:.0f} MiB, CPU {self.cpu_seconds:.1f} s"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _scrape(session: aiohttp.ClientSession, port: int) -> dict[str, float]:
    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    figures = {"writes": 0.0, "posts": 0.0, "reconciles": 0.0, "depth": 0.0, "processing": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "rest_client_requests_total" and sample.labels.get("method") in WRITE_METHODS:
                figures["writes"] += sample.value
                if sample.labels["method"] == "POST":
                    figures["posts"] += sample.value
            elif sample.name == "controller_runtime_reconcile_total":
                figures["reconciles"] += sample.value
            elif sample.name == "workqueue_depth":
                figures["depth"] += sample.value
            elif sample.name == "controller_runtime_active_workers":
                figures["processing"] += sample.value
    return figures


async def _settled(session: aiohttp.ClientSession, port: int) -> dict[str, float]:
    """Metrics once the queues are empty and no write happened for a second (Events are written
    behind the reconciles)."""
    last = await _scrape(session, port)
    quiet_since = time.monotonic()
    while True:
        await asyncio.sleep(0.2)
        now = await _scrape(session, port)
        if now["writes"] != last["writes"] or now["depth"] or now["processing"]:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= 1.0:
            return now
        last = now


async def _wait_ready(session: aiohttp.ClientSession, port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the manager process exited before it was ready")
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise TimeoutError("the manager did not become ready within 60 s")


def _mcp(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "agentkube.io/v1alpha1",
        "kind": "MCP",
        "metadata": {"name": f"mcp-{i:05d}", "namespace": NAMESPACE},
        "spec": {
            "upstreams": [
                {
                    "name": "github",
                    "kind": "http",
                    "endpoint": "https://mcp.github.com",
                    "auth": {"mode": "bearer", "secretRef": {"name": "pat", "key": "token"}},
                    "tools": {"mode": "allow", "allow": ["create_issue", "list_issues"]},
                }
            ]
        },
    }


async def watch_convergence(plane: ControlPlane, client: Client, n: int) -> tuple[Informer, asyncio.Event]:
    """The bench namespace with the Secret every MCP names, and an informer of its MCPs whose event is
    set once ``n`` of them are converged (run the informer to start watching)."""
    plane.create_namespace(NAMESPACE)
    token = base64.b64encode(b"ghp_bench").decode()
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "pat", "namespace": NAMESPACE}}
    await client.create({**secret, "data": {"token": token}})
    done = asyncio.Event()
    converged: set[str] = set()
    informer = Informer(client, MCP, namespace=NAMESPACE)

    def track(event: Event) -> None:
        name = event.obj["metadata"]["name"]
        if _converged(event.obj):
            converged.add(name)
        else:
            converged.discard(name)
        if len(converged) == n:
            done.set()

    informer.add_handler(track)
    return informer, done


def _converged(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    generation = obj["metadata"].get("generation")
    if status.get("observedGeneration") != generation:
        return False
    return any(
        c.get("type") == "Accepted"
        and c.get("status") == "True"
        and c.get("observedGeneration") == generation
        for c in status.get("conditions") or ()
    )


@dataclass
class _Figures:
    seconds: float
    before: dict[str, float]
    first: dict[str, float]
    resynced: dict[str, float]


async def _measure(plane: ControlPlane, n: int, manager: subprocess.Popen[bytes], port: int) -> _Figures:
    async with (
        aiohttp.ClientSession() as session,
        await Client.from_kubeconfig(str(plane.kubeconfig)) as client,
    ):
        await _wait_ready(session, port, manager)
        informer, done = await watch_convergence(plane, client, n)
        watching = asyncio.create_task(informer.run())
        await informer.wait_for_sync()
        before = await _scrape(session, port)

        started = time.perf_counter()
        slots = asyncio.Semaphore(IN_FLIGHT)

        async def create(i: int) -> None:
            async with slots:
                await client.create(_mcp(i))

        await asyncio.gather(*(create(i) for i in range(n)))
        await done.wait()
        seconds = time.perf_counter() - started
        first = await _settled(session, port)

        # One resync re-delivers every cached MCP: wait for at least N more reconciles. (Polling a
        # metric of another process; there is nothing in this one to wait on.)
        while (await _scrape(session, port))["reconciles"] < first["reconciles"] + n:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        resynced = await _settled(session, port)
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    return _Figures(seconds, before, first, resynced)


def _run(n: int) -> Run:
    with ControlPlane(crd_paths=[ROOT / "config" / "crd" / "bases"]) as plane:
        port = _free_port()
        command = [sys.executable, "-m", "bench.converge", "--manager", str(plane.kubeconfig), str(port)]
        manager = subprocess.Popen([*command, str(SYNC_PERIOD)], cwd=ROOT, stdout=subprocess.PIPE)
        try:
            figures = asyncio.run(_measure(plane, n, manager, port))
        finally:
            manager.send_signal(signal.SIGTERM)
            out, _ = manager.communicate(timeout=60)
    report = json.loads(out.decode().strip().splitlines()[-1])
    writes = figures.first["writes"] - figures.before["writes"]
    # Children and status are written with server-side apply (PATCH); the only POSTs are Events.
    events = figures.first["posts"] - figures.before["posts"]
    return Run(
        n=n,
        seconds=figures.seconds,
        writes_per_object=(writes - events) / n,
        event_writes_per_object=events / n,
        resync_writes_per_object=(figures.resynced["writes"] - figures.first["writes"]) / n,
        peak_rss_mib=float(report["peak_rss_mib"]),
        cpu_seconds=float(report["cpu_seconds"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.converge", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "n", nargs="*", type=int, default=[100, 1000], help="numbers of MCPs (default 100 1000)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per N (default 3)")
    parser.add_argument("--manager", nargs=3, metavar=("KUBECONFIG", "PORT", "SYNC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.manager:
        run_manager(args.manager[0], int(args.manager[1]), float(args.manager[2]))
        return

    from agentkube.runtime.logging import configure_logging

    configure_logging("warning", "console")
    print(f"bench.converge: {os.cpu_count()} CPUs; runs per N: {args.runs}", flush=True)
    medians = []
    for n in args.n:
        runs = []
        for i in range(args.runs):
            run = _run(n)
            runs.append(run)
            print(f"  run {i + 1}: {run.line()}", flush=True)
        medians.append(
            Run(
                n=n,
                seconds=statistics.median(r.seconds for r in runs),
                writes_per_object=statistics.median(r.writes_per_object for r in runs),
                event_writes_per_object=statistics.median(r.event_writes_per_object for r in runs),
                resync_writes_per_object=statistics.median(r.resync_writes_per_object for r in runs),
                peak_rss_mib=statistics.median(r.peak_rss_mib for r in runs),
                cpu_seconds=statistics.median(r.cpu_seconds for r in runs),
            )
        )
    print("medians:")
    for run in medians:
        print(f"  {run.line()}")


if __name__ == "__main__":
    main()
