"""First sync of a big kind: a streaming list (WatchList) against a paginated list, time and peak RSS.

Run ``python -m bench.first_sync [N]`` (default N = 20,000). It starts its own control plane
(``agentkube.testing.ControlPlane``), creates N ConfigMaps of about 1 KiB each, then syncs an
``Informer`` of the namespace once per way, each in a fresh process so that its peak RSS is its own:

- ``stream``: ``initial_list="stream"``, one watch with ``sendInitialEvents=true`` ending in the
  initial-events-end bookmark;
- ``paginate``: ``initial_list="paginate"``, consistent list pages of 500;
- ``one body``: for reference, what the reflector used to do: one list with ``resourceVersion=0``
  (answered from the watch cache, ``limit`` ignored), then the same store path.

Each row gives the seconds from the first request to a synced store, the process's peak RSS, and
that peak less the RSS just before the sync (the sync's own cost). ``--rounds R`` runs each way R
times, alternating, and prints every run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agentkube.runtime.client import Client
from agentkube.runtime.informer import Informer
from agentkube.testing import ControlPlane
from bench.cache_memory import CM, NAMESPACE, create_configmaps

DEFAULT_N = 20_000
WAYS = ("stream", "paginate", "one body")


def _rss_kib() -> int:
    """The current resident set size of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _sync(kubeconfig: str, way: str, n: int) -> dict[str, Any]:
    async with await Client.from_kubeconfig(kubeconfig) as client:
        await client.resource(CM)
        baseline = _rss_kib()
        started = time.perf_counter()
        if way == "one body":
            informer = Informer(client, CM, namespace=NAMESPACE, initial_list="paginate")
            items, rv = await client.list(CM, NAMESPACE, resource_version="0", limit=0)
            informer.reflector._listed(informer.reflector._prepare_all(items), rv, "paginate")
            del items
        else:
            informer = Informer(client, CM, namespace=NAMESPACE, initial_list=way)  # type: ignore[arg-type]
            task = asyncio.create_task(informer.run())
            if not await informer.wait_for_sync(600):
                raise RuntimeError(f"{way}: the informer did not sync within 600 s")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        took = time.perf_counter() - started
        if len(informer.store) != n:
            raise RuntimeError(f"{way}: synced {len(informer.store)} objects, expected {n}")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return {"way": way, "seconds": took, "peak_kib": peak, "baseline_kib": baseline}


def _child(kubeconfig: str, way: str, n: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.first_sync", "--child", way, "--kubeconfig", kubeconfig, str(n)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=DEFAULT_N)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_sync(args.kubeconfig, args.child, args.n))))
        return

    with ControlPlane() as plane:
        plane.create_namespace(NAMESPACE)
        assert plane.kubeconfig is not None
        kubeconfig = str(plane.kubeconfig)

        async def populate() -> float:
            async with await Client.from_kubeconfig(kubeconfig) as client:
                return await create_configmaps(client, args.n)

        took = asyncio.run(populate())
        print(f"created {args.n} ConfigMaps of about 1 KiB in {took:.1f} s")
        print(f"\nfirst sync of {args.n} ConfigMaps (one process per run, Python {sys.version.split()[0]}):")
        print(f"  {'way':<10} {'seconds':>8} {'peak RSS MiB':>13} {'sync MiB':>9}")
        for _ in range(args.rounds):
            for way in WAYS:
                r = _child(kubeconfig, way, args.n)
                print(
                    f"  {r['way']:<10} {r['seconds']:8.2f} {r['peak_kib'] / 1024:13.1f} "
                    f"{(r['peak_kib'] - r['baseline_kib']) / 1024:9.1f}"
                )


if __name__ == "__main__":
    main()
