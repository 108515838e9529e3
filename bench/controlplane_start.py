"""Warm start time of the test control plane (etcd + kube-apiserver, binaries already built).

    python -m bench.controlplane_start [runs]

Prints each run and the median: seconds from ControlPlane.start() until /readyz answers ok, and the
time to stop both processes; then, when the build has one, the same for kube-controller-manager
started on that control plane (until its /healthz lists every controller).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from agentkube.testing import ControlPlane, find_assets


def main(runs: int = 5) -> None:
    assets = find_assets()
    with_kcm = os.access(assets / "kube-controller-manager", os.X_OK)
    starts, stops, kcm_starts, kcm_stops = [], [], [], []
    for i in range(runs):
        t0 = time.perf_counter()
        plane = ControlPlane(assets=assets).start()
        t1 = time.perf_counter()
        kcm = ""
        if with_kcm:
            plane.start_controller_manager()
            k1 = time.perf_counter()
            plane.stop_controller_manager()
            kcm_starts.append(k1 - t1)
            kcm_stops.append(time.perf_counter() - k1)
            kcm = f", kube-controller-manager start {kcm_starts[-1]:.2f} s, stop {kcm_stops[-1]:.2f} s"
        t2 = time.perf_counter()
        plane.stop()
        t3 = time.perf_counter()
        starts.append(t1 - t0)
        stops.append(t3 - t2)
        print(f"run {i + 1}: start {t1 - t0:.2f} s, stop {t3 - t2:.2f} s{kcm}", flush=True)
    print(
        f"control plane warm start: median {statistics.median(starts):.2f} s over {runs} runs "
        f"(stop: median {statistics.median(stops):.2f} s); binaries: {assets}"
    )
    if with_kcm:
        print(
            f"kube-controller-manager start: median {statistics.median(kcm_starts):.2f} s over {runs} runs "
            f"(stop: median {statistics.median(kcm_stops):.2f} s)"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
