from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

import pytest

from agentkube.runtime import metrics
from agentkube.runtime.ratelimiter import ExponentialFailureRateLimiter
from agentkube.runtime.workqueue import RateLimitingQueue, ShutDown

_names = itertools.count()


def unique_name() -> str:
    return f"test-queue-{next(_names)}"


async def eventually(condition: Callable[[], bool], within: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.001)


def sample(metric: str, name: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(metric, {"name": name, "controller": name})


async def test_a_key_added_many_times_is_handed_out_once() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    for key in ["a", "b", "a", "a", "c", "b"]:
        queue.add(key)
    assert len(queue) == 3
    assert [await queue.get() for _ in range(3)] == ["a", "b", "c"]
    assert len(queue) == 0


async def test_a_key_being_processed_is_not_handed_to_a_second_worker() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not second.done()
    queue.done("a")
    assert await asyncio.wait_for(second, 1) == "a"
    queue.done("a")
    assert len(queue) == 0 and queue.processing == 0


async def test_done_without_readd_does_not_requeue() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    queue.add("a")
    queue.done(await queue.get())
    assert len(queue) == 0


async def test_waiting_getters_are_woken_one_per_add() -> None:
    queue: RateLimitingQueue[int] = RateLimitingQueue()
    getters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await asyncio.sleep(0)
    queue.add(1)
    queue.add(2)
    await eventually(lambda: sum(g.done() for g in getters) == 2)
    await asyncio.sleep(0.01)  # give a wrongly woken third getter the chance to show up
    assert sorted(g.result() for g in getters if g.done()) == [1, 2]
    assert sum(not g.done() for g in getters) == 1
    queue.shutdown()
    with pytest.raises(ShutDown):
        await asyncio.gather(*getters)


async def test_a_cancelled_getter_passes_its_wakeup_on() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.add("a")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    assert await asyncio.wait_for(second, 1) == "a"


async def test_add_after_delivers_after_the_delay() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    loop = asyncio.get_running_loop()
    started = loop.time()
    queue.add_after("a", 0.05)
    assert len(queue) == 0 and queue.waiting == 1
    assert await asyncio.wait_for(queue.get(), 2) == "a"
    assert loop.time() - started >= 0.05 - 1e-6
    assert queue.waiting == 0


async def test_add_after_earliest_time_wins() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    queue.add_after("a", 3600)
    queue.add_after("a", 0.01)
    queue.add_after("a", 1800)  # later than the current wait: ignored
    assert queue.waiting == 1
    assert await asyncio.wait_for(queue.get(), 2) == "a"
    queue.done("a")
    # The superseded hour-long entries are gone, not merely postponed.
    assert queue.waiting == 0 and len(queue) == 0


async def test_add_after_keys_come_out_in_time_order() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    queue.add_after("late", 0.06)
    queue.add_after("early", 0.02)
    queue.add_after("middle", 0.04)
    got = [await asyncio.wait_for(queue.get(), 2) for _ in range(3)]
    assert got == ["early", "middle", "late"]


async def test_add_after_of_a_queued_key_does_not_duplicate_it() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    queue.add("a")
    queue.add_after("a", 0.01)
    assert await queue.get() == "a"
    # While "a" is processed its delayed add fires: queued again once, after done.
    await eventually(lambda: queue.waiting == 0)
    assert len(queue) == 0
    queue.done("a")
    assert len(queue) == 1


async def test_add_after_zero_adds_now() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    queue.add_after("a", 0)
    assert len(queue) == 1


async def test_rate_limited_delays_grow_and_forget_resets() -> None:
    limiter = ExponentialFailureRateLimiter(0.01, 10)
    queue: RateLimitingQueue[str] = RateLimitingQueue(rate_limiter=limiter)
    loop = asyncio.get_running_loop()
    waits = []
    for _ in range(4):
        started = loop.time()
        queue.add_rate_limited("a")
        queue.done(await asyncio.wait_for(queue.get(), 5))
        waits.append(loop.time() - started)
    assert queue.num_requeues("a") == 4
    for wait, expected in zip(waits, [0.01, 0.02, 0.04, 0.08], strict=True):
        assert wait >= expected - 1e-6
    assert waits[3] > waits[0]
    queue.forget("a")
    assert queue.num_requeues("a") == 0


async def test_shutdown_wakes_getters_and_drops_queued_and_delayed_keys() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.shutdown()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(waiting, 1)
    queue.add("a")
    queue.add_after("b", 0.01)
    queue.add_rate_limited("c")
    assert len(queue) == 0 and queue.waiting == 0
    with pytest.raises(ShutDown):
        await queue.get()


async def test_shutdown_does_not_hand_out_keys_still_queued() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    queue.add("a")
    queue.add_after("b", 0.01)
    queue.shutdown()
    with pytest.raises(ShutDown):
        await queue.get()


async def test_shutdown_with_drain_waits_for_keys_in_flight() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    queue.add("a")
    queue.add("b")
    a = await queue.get()
    b = await queue.get()
    queue.add("a")  # re-added while processing: must not come back after shutdown
    drain = asyncio.create_task(queue.shutdown_with_drain())
    await asyncio.sleep(0.01)
    assert not drain.done()
    queue.done(a)
    await asyncio.sleep(0.01)
    assert not drain.done()
    queue.done(b)
    await asyncio.wait_for(drain, 1)
    assert len(queue) == 0


async def test_shutdown_with_drain_keeps_waiting_while_a_key_is_in_flight() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    queue.add("a")
    await queue.get()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await queue.shutdown_with_drain()
    assert queue.processing == 1


async def test_shutdown_with_drain_of_an_idle_queue_returns_at_once() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    async with asyncio.timeout(0.1):
        await queue.shutdown_with_drain()


async def test_metrics_count_adds_retries_and_durations() -> None:
    name = unique_name()
    queue: RateLimitingQueue[str] = RateLimitingQueue(name)
    assert sample("workqueue_depth", name) == 0
    queue.add("a")
    queue.add("a")  # deduped: not an add
    queue.add("b")
    assert sample("workqueue_adds_total", name) == 2
    assert sample("workqueue_depth", name) == 2
    key = await queue.get()
    assert sample("workqueue_depth", name) == 1
    assert sample("workqueue_queue_duration_seconds_count", name) == 1
    await asyncio.sleep(0.02)
    unfinished = sample("workqueue_unfinished_work_seconds", name)
    longest = sample("workqueue_longest_running_processor_seconds", name)
    assert unfinished is not None and unfinished >= 0.02
    assert longest is not None and longest >= 0.02
    queue.done(key)
    assert sample("workqueue_work_duration_seconds_count", name) == 1
    work_sum = sample("workqueue_work_duration_seconds_sum", name)
    assert work_sum is not None and work_sum >= 0.02
    assert sample("workqueue_unfinished_work_seconds", name) == 0
    assert sample("workqueue_longest_running_processor_seconds", name) == 0
    queue.add_rate_limited("c")
    assert sample("workqueue_retries_total", name) == 1


async def test_an_unnamed_queue_records_no_metrics() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    queue.add("x")
    assert sample("workqueue_adds_total", "") is None
