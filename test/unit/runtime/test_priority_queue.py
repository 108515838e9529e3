"""Priorities in the work queue, and which events a controller queues at low priority."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from agentkube.runtime.controller import Controller
from agentkube.runtime.handler import EnqueueRequestForObject
from agentkube.runtime.informer import Event, EventType
from agentkube.runtime.ratelimiter import ExponentialFailureRateLimiter
from agentkube.runtime.reconcile import Request, Result
from agentkube.runtime.workqueue import LOW_PRIORITY, NORMAL_PRIORITY, RateLimitingQueue

_names = itertools.count()


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.002)


async def drain(queue: RateLimitingQueue[str], n: int) -> list[tuple[str, int]]:
    got = []
    for _ in range(n):
        key, priority = await asyncio.wait_for(queue.get_with_priority(), 2)
        queue.done(key)
        got.append((key, priority))
    return got


# -- the queue ------------------------------------------------------------------------------------


async def test_higher_priority_is_handed_out_first_and_fifo_within_a_priority() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    for key in ("l1", "l2", "l3"):
        queue.add(key, LOW_PRIORITY)
    queue.add("n1")
    queue.add("n2")
    queue.add("h1", 10)
    assert len(queue) == 6
    assert [k for k, _ in await drain(queue, 6)] == ["h1", "n1", "n2", "l1", "l2", "l3"]


async def test_a_waiting_key_added_again_higher_moves_up_and_keeps_its_first_add_order() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    queue.add("a", LOW_PRIORITY)
    queue.add("b", LOW_PRIORITY)
    queue.add("n")
    queue.add("b")  # a user's change to b while it waits behind the backlog
    queue.add("n", LOW_PRIORITY)  # lower again: never moves a key down
    assert len(queue) == 3
    got = await drain(queue, 3)
    # b was first added before n, so among the normal keys it comes first.
    assert got == [("b", NORMAL_PRIORITY), ("n", NORMAL_PRIORITY), ("a", LOW_PRIORITY)]
    assert len(queue) == 0


async def test_a_key_readded_while_processing_comes_back_at_the_highest_priority_it_was_added() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    queue.add("a", LOW_PRIORITY)
    queue.add("z", LOW_PRIORITY)
    key, priority = await queue.get_with_priority()
    assert (key, priority) == ("a", LOW_PRIORITY)
    queue.add("a", LOW_PRIORITY)
    queue.add("a")
    queue.done("a")
    assert await drain(queue, 2) == [("a", NORMAL_PRIORITY), ("z", LOW_PRIORITY)]


async def test_delayed_adds_keep_the_higher_priority_and_the_earlier_time() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    queue.add_after("a", 0.03, LOW_PRIORITY)
    queue.add_after("a", 3600, NORMAL_PRIORITY)  # later time loses, higher priority wins
    queue.add_after("b", 0.01, LOW_PRIORITY)
    assert queue.waiting == 2
    await eventually(lambda: len(queue) == 2)
    assert await drain(queue, 2) == [("a", NORMAL_PRIORITY), ("b", LOW_PRIORITY)]
    assert queue.waiting == 0


async def test_rate_limited_adds_carry_their_priority() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue(rate_limiter=ExponentialFailureRateLimiter(0.01, 1))
    queue.add_rate_limited("low", LOW_PRIORITY)
    queue.add_rate_limited("normal")
    await eventually(lambda: len(queue) == 2)
    assert await drain(queue, 2) == [("normal", NORMAL_PRIORITY), ("low", LOW_PRIORITY)]


async def test_without_priorities_the_queue_is_first_come_first_served() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue(use_priority=False)
    queue.add("a", LOW_PRIORITY)
    queue.add("b", 10)
    queue.add("a", 100)
    assert await drain(queue, 2) == [("a", NORMAL_PRIORITY), ("b", NORMAL_PRIORITY)]


async def test_shutdown_clears_prioritised_keys() -> None:
    queue: RateLimitingQueue[str] = RateLimitingQueue()
    queue.add("a", LOW_PRIORITY)
    queue.add("a")
    queue.shutdown()
    assert len(queue) == 0
    queue.add("b")
    assert len(queue) == 0


# -- the controller -------------------------------------------------------------------------------


def thing(name: str, rv: str = "1") -> dict[str, Any]:
    meta = {"name": name, "namespace": "ns", "resourceVersion": rv}
    return {"apiVersion": "v1", "kind": "Thing", "metadata": meta}


class ReplayingSource:
    """Like an informer that has synced: a handler added gets every stored object as ADDED at once."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects
        self.handlers: list[Callable[[Event], None]] = []

    def add_handler(self, handler: Callable[[Event], None]) -> None:
        self.handlers.append(handler)
        for obj in self.objects:
            handler(Event(EventType.ADDED, obj))

    def remove_handler(self, handler: Callable[[Event], None]) -> None:
        self.handlers.remove(handler)

    async def wait_for_sync(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        return True

    def emit(self, event: Event) -> None:
        for handler in self.handlers:
            handler(event)


class Gate:
    """A reconciler that records the order of requests and holds each until the test opens the gate."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.gate = asyncio.Event()
        self.fail_once: set[str] = set()

    async def reconcile(self, request: Request) -> Result | None:
        self.order.append(request.name)
        await self.gate.wait()
        if request.name in self.fail_once:
            self.fail_once.discard(request.name)
            raise OSError("transient")
        return None


async def run_controller(
    objects: list[dict[str, Any]], *, use_priority_queue: bool = True
) -> tuple[Controller, ReplayingSource, Gate, asyncio.Task[None]]:
    gate = Gate()
    controller = Controller(
        f"unit-priority-{next(_names)}",
        gate,
        use_priority_queue=use_priority_queue,
        rate_limiter=ExponentialFailureRateLimiter(0.001, 0.01),
    )
    source = ReplayingSource(objects)
    controller.watch(source, EnqueueRequestForObject())
    task = asyncio.create_task(controller.run())
    await eventually(lambda: bool(gate.order))  # the first of the initial list is being reconciled
    return controller, source, gate, task


async def test_a_change_during_the_initial_list_is_reconciled_before_the_backlog() -> None:
    objects = [thing(f"o{i}") for i in range(50)]
    controller, source, gate, task = await run_controller(objects)
    assert gate.order == ["o0"]
    assert len(controller.queue) == 49
    source.emit(Event(EventType.MODIFIED, thing("o40", "2"), thing("o40", "1")))
    source.emit(Event(EventType.ADDED, thing("new", "3")))
    gate.gate.set()
    await eventually(lambda: len(gate.order) == 51)
    assert gate.order[:3] == ["o0", "o40", "new"]
    assert gate.order.count("o40") == 1  # moved up, not queued twice
    controller.stop()
    await asyncio.wait_for(task, 5)


async def test_resyncs_and_unchanged_updates_wait_behind_real_changes() -> None:
    controller, source, gate, task = await run_controller([thing("first")])
    source.emit(Event(EventType.RESYNC, thing("r1"), thing("r1")))
    source.emit(Event(EventType.MODIFIED, thing("same", "5"), thing("same", "5")))
    source.emit(Event(EventType.MODIFIED, thing("changed", "6"), thing("changed", "5")))
    source.emit(Event(EventType.DELETED, thing("gone", "7"), thing("gone", "7")))
    gate.gate.set()
    await eventually(lambda: len(gate.order) == 5)
    assert gate.order == ["first", "changed", "gone", "r1", "same"]
    controller.stop()
    await asyncio.wait_for(task, 5)


async def test_a_failed_low_priority_request_is_retried_at_low_priority() -> None:
    controller, source, gate, task = await run_controller([thing("a"), thing("b")])
    gate.fail_once.add("a")
    gate.gate.set()
    await eventually(lambda: gate.order == ["a", "b", "a"])
    gate.gate.clear()
    # Hold the controller on a normal request, retry a low one behind a normal one.
    gate.fail_once.add("x")
    source.emit(Event(EventType.RESYNC, thing("x"), thing("x")))
    await eventually(lambda: gate.order[-1] == "x")
    source.emit(Event(EventType.ADDED, thing("y")))
    # x fails and is requeued (low, after ~1 ms) while y (normal) waits: y goes first.
    gate.gate.set()
    await eventually(lambda: gate.order.count("x") == 2)
    assert gate.order[-3:] == ["x", "y", "x"]
    controller.stop()
    await asyncio.wait_for(task, 5)


async def test_without_the_priority_queue_a_change_waits_behind_the_initial_list() -> None:
    objects = [thing(f"o{i}") for i in range(20)]
    controller, source, gate, task = await run_controller(objects, use_priority_queue=False)
    source.emit(Event(EventType.ADDED, thing("new", "3")))
    gate.gate.set()
    await eventually(lambda: len(gate.order) == 21)
    assert gate.order[-1] == "new"
    controller.stop()
    await asyncio.wait_for(task, 5)
