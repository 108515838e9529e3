"""Work-queue throughput: add/get/done cycles per second on one core.

Run ``python -m bench.queue``. The headline figure is a named queue (so every workqueue metric is
recorded, as in a controller) with distinct keys added, taken and marked done one after another;
the other lines show where the time goes: no metrics, and several workers sharing a pre-filled
queue (the shape of a controller catching up after a resync). Goal: >= 100,000 cycles/s.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Coroutine

from agentkube.runtime.workqueue import RateLimitingQueue, ShutDown

CYCLES = 200_000
RUNS = 5


async def _serial(name: str | None) -> float:
    queue: RateLimitingQueue[int] = RateLimitingQueue(name)
    started = time.perf_counter()
    for i in range(CYCLES):
        queue.add(i)
        key = await queue.get()
        queue.done(key)
    return CYCLES / (time.perf_counter() - started)


async def _workers(name: str, workers: int) -> float:
    queue: RateLimitingQueue[int] = RateLimitingQueue(name)

    async def worker() -> None:
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            queue.done(key)
            if not len(queue):
                queue.shutdown()

    started = time.perf_counter()
    for i in range(CYCLES):
        queue.add(i)
    await asyncio.gather(*(worker() for _ in range(workers)))
    return CYCLES / (time.perf_counter() - started)


def _median(run: Callable[[], Coroutine[None, None, float]]) -> float:
    return statistics.median(asyncio.run(run()) for _ in range(RUNS))


def main() -> None:
    figures: dict[str, Callable[[], Coroutine[None, None, float]]] = {
        "add/get/done, metrics on (goal >= 100000)": lambda: _serial("bench-serial"),
        "add/get/done, no metrics": lambda: _serial(None),
        "pre-filled, 4 workers, metrics on": lambda: _workers("bench-workers", 4),
    }
    print(f"work queue, {CYCLES} distinct keys, median of {RUNS} runs")
    for label, run in figures.items():
        print(f"  {label}: {_median(run):,.0f} cycles/s")


if __name__ == "__main__":
    main()
