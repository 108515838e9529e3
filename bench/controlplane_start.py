"""Warm start time of the test control plane (etcd + kube-apiserver, binaries already built).

    python -m bench.controlplane_start [runs]

Prints each run and the median: seconds from ControlPlane.start() until /readyz answers ok, and the
time to stop both processes.
"""

from __future__ import annotations

import statistics
import sys
import time

from agentkube.testing import ControlPlane, find_assets


def main(runs: int = 5) -> None:
    assets = find_assets()
    starts, stops = [], []
    for i in range(runs):
        t0 = time.perf_counter()
        plane = ControlPlane(assets=assets).start()
        t1 = time.perf_counter()
        plane.stop()
        t2 = time.perf_counter()
        starts.append(t1 - t0)
        stops.append(t2 - t1)
        print(f"run {i + 1}: start {t1 - t0:.2f} s, stop {t2 - t1:.2f} s", flush=True)
    print(
        f"control plane warm start: median {statistics.median(starts):.2f} s over {runs} runs "
        f"(stop: median {statistics.median(stops):.2f} s); binaries: {assets}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
