"""The work queue between event handlers and workers: deduplicating, exclusive, delaying, rate limiting.

What a caller may rely on (client-go's workqueue semantics, on one asyncio event loop):

- Dedupe: a key added any number of times before a worker takes it is handed out once.
- Exclusivity: a key taken by ``get()`` is never handed to a second worker until ``done(key)``. A
  key added while it is being processed is queued again, once, when ``done`` is called.
- Priority: every add carries a ``priority`` (an int, default ``NORMAL_PRIORITY`` = 0; higher is
  handed out first). Keys of equal priority are handed out in the order they were first added. A key
  added again with a higher priority while it waits is moved up (keeping its place among keys first
  added before it); a lower one never moves it down. Controllers add the events of an initial list
  or a resync at ``LOW_PRIORITY`` (-100), so a user's change jumps a backlog of thousands.
  ``get_with_priority()`` also returns the priority a key was handed out with, so a retry keeps it.
  With ``use_priority=False`` every priority counts as ``NORMAL_PRIORITY``: a plain FIFO queue.
- ``add_after(key, delay, priority)``: the key is added after ``delay`` seconds; if it is already
  waiting, the earlier time and the higher priority win. All delayed keys share one timer on the event
  loop (a heap), not a task each.
- ``add_rate_limited(key, priority)`` = ``add_after(key, rate_limiter.when(key), priority)``;
  ``forget(key)`` resets the key's backoff; ``num_requeues(key)`` reads it.
- ``shutdown()``: adds are ignored from then on, ``get()`` raises ``ShutDown`` (waiting callers at
  once), and keys still queued or waiting are dropped. Unlike client-go, queued keys are not handed
  out after shutdown: a stopping controller should stop taking work, and the keys are not lost for
  good, since the next leader's informers replay every object. ``await shutdown_with_drain()`` also
  waits until every key handed out is ``done``.
- ``len(queue)`` is the number of keys ready to be handed out now (not the delayed ones).
- Metrics, when the queue has a ``name``: ``workqueue_depth``, ``workqueue_adds_total``,
  ``workqueue_queue_duration_seconds``, ``workqueue_work_duration_seconds``,
  ``workqueue_unfinished_work_seconds``, ``workqueue_longest_running_processor_seconds`` and
  ``workqueue_retries_total``, labelled ``name`` and ``controller`` (both the queue's name, as
  controller-runtime does). The gauges are computed when scraped, so they cost nothing per add.
- Not thread-safe: call it from the event loop that runs the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from agentkube.runtime import metrics
from agentkube.runtime.ratelimiter import RateLimiter, default_controller_rate_limiter

__all__ = ["LOW_PRIORITY", "NORMAL_PRIORITY", "RateLimitingQueue", "ShutDown"]

K = TypeVar("K", bound=Hashable)

_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution

NORMAL_PRIORITY = 0
"""The priority of a real change (and of every add that names none)."""
LOW_PRIORITY = -100
"""The priority of an event from an initial list or a resync: behind every real change (the value
controller-runtime's priority queue uses)."""


class ShutDown(Exception):
    """``get()`` on a queue that was shut down: the worker should return."""


class _Metrics:
    """The queue's label children, looked up once; the gauges read the queue when scraped."""

    __slots__ = ("adds", "queue_duration", "retries", "work_duration")

    def __init__(self, name: str, queue: RateLimitingQueue[K]) -> None:
        self.adds = metrics.WORKQUEUE_ADDS.labels(name=name, controller=name)
        self.retries = metrics.WORKQUEUE_RETRIES.labels(name=name, controller=name)
        self.queue_duration = metrics.WORKQUEUE_QUEUE_DURATION.labels(name=name, controller=name)
        self.work_duration = metrics.WORKQUEUE_WORK_DURATION.labels(name=name, controller=name)
        # client-go's depth counts keys added and not yet taken, including a key re-added while it
        # is processed: exactly the dirty set.
        metrics.WORKQUEUE_DEPTH.labels(name=name, controller=name).set_function(queue._depth)
        metrics.WORKQUEUE_UNFINISHED_WORK.labels(name=name, controller=name).set_function(
            queue._unfinished_work_seconds
        )
        metrics.WORKQUEUE_LONGEST_RUNNING.labels(name=name, controller=name).set_function(
            queue._longest_running_seconds
        )


class _Dirty:
    """A key added and not yet taken: when it was first added, in which order, at which priority."""

    __slots__ = ("added", "order", "priority")

    def __init__(self, added: float, order: int, priority: int) -> None:
        self.added = added
        self.order = order
        self.priority = priority


class RateLimitingQueue(Generic[K]):
    """An asyncio work queue with client-go's semantics and priorities; see the module docstring."""

    def __init__(
        self,
        name: str | None = None,
        rate_limiter: RateLimiter | None = None,
        *,
        use_priority: bool = True,
    ) -> None:
        """
        name: labels the queue's metrics; None records none. Default None.
        rate_limiter: delays of ``add_rate_limited``. Default ``default_controller_rate_limiter()``.
        use_priority: hand out higher priorities first. Default True; False ignores every priority.
        """
        self.name = name
        self.rate_limiter: RateLimiter = rate_limiter or default_controller_rate_limiter()
        self.use_priority = use_priority
        # Keys ready to be handed out: a heap of (-priority, seq, key), seq being the key's first-add
        # order. A key moved up leaves its old entry behind; _ready holds each key's live
        # (-priority, seq), so a stale entry is recognised and skipped when it surfaces.
        self._queue: list[tuple[int, int, K]] = []
        self._ready: dict[K, tuple[int, int]] = {}
        # Keys added and not yet taken by a worker (queued, or re-added while processing), with the
        # time of their first add (for the queue-duration histogram), their first-add order and the
        # highest priority they were added with.
        self._dirty: dict[K, _Dirty] = {}
        # Keys handed out and not yet done, with the time they were handed out.
        self._processing: dict[K, float] = {}
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False
        self._drained: asyncio.Event | None = None
        self._order = 0
        # Delayed adds: heap of (ready_at, seq, key); _waiting holds each key's current ready_at, so
        # a superseded heap entry is recognised and skipped when it surfaces.
        self._heap: list[tuple[float, int, K]] = []
        self._waiting: dict[K, float] = {}
        self._waiting_priority: dict[K, int] = {}
        self._seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._metrics = _Metrics(name, self) if name else None

    # -- adding -----------------------------------------------------------------------------------

    def add(self, key: K, priority: int = NORMAL_PRIORITY) -> None:
        """Queue ``key`` unless it is already queued; a key being processed is queued once done.

        A key already queued with a lower priority is moved up to ``priority``.
        """
        if self._shutting_down:
            return
        if not self.use_priority:
            priority = NORMAL_PRIORITY
        entry = self._dirty.get(key)
        if entry is not None:
            if priority > entry.priority:
                entry.priority = priority
                if key in self._ready:
                    self._push(key, priority, entry.order)
            return
        self._order += 1
        self._dirty[key] = _Dirty(time.perf_counter(), self._order, priority)
        if self._metrics is not None:
            self._metrics.adds.inc()
        if key in self._processing:
            return
        self._push(key, priority, self._order)
        self._wake_one()

    def _push(self, key: K, priority: int, order: int) -> None:
        self._ready[key] = (-priority, order)
        heapq.heappush(self._queue, (-priority, order, key))

    def add_after(self, key: K, delay: float, priority: int = NORMAL_PRIORITY) -> None:
        """Add ``key`` in ``delay`` seconds; if it already waits, the earlier of the two times and the
        higher of the two priorities win."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key, priority)
            return
        loop = asyncio.get_running_loop()
        ready_at = loop.time() + delay
        current = self._waiting.get(key)
        if current is not None:
            if priority > self._waiting_priority[key]:
                self._waiting_priority[key] = priority
            if current <= ready_at:
                return
        else:
            self._waiting_priority[key] = priority
        self._waiting[key] = ready_at
        self._seq += 1
        heapq.heappush(self._heap, (ready_at, self._seq, key))
        if self._timer is None or ready_at < self._timer_at:
            self._arm(loop)

    def add_rate_limited(self, key: K, priority: int = NORMAL_PRIORITY) -> None:
        """Add ``key`` after the delay the rate limiter asks for, counting one more retry."""
        if self._shutting_down:
            return
        if self._metrics is not None:
            self._metrics.retries.inc()
        self.add_after(key, self.rate_limiter.when(key), priority)

    def forget(self, key: K) -> None:
        """Reset the backoff of ``key`` (it succeeded). Does not remove it from the queue."""
        self.rate_limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self.rate_limiter.num_requeues(key)

    # -- the delay timer --------------------------------------------------------------------------

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = self._heap[0][0]
        self._timer = loop.call_at(self._timer_at, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._shutting_down:
            return
        loop = asyncio.get_running_loop()
        # The loop may run a timer up to one clock tick early; count such entries as due.
        now = loop.time() + _CLOCK_RESOLUTION
        heap, waiting = self._heap, self._waiting
        while heap and heap[0][0] <= now:
            ready_at, _, key = heapq.heappop(heap)
            if waiting.get(key) == ready_at:
                del waiting[key]
                self.add(key, self._waiting_priority.pop(key, NORMAL_PRIORITY))
        # Superseded entries at the top would arm a timer for nothing; drop them now.
        while heap and waiting.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        if heap:
            self._arm(loop)

    # -- taking -----------------------------------------------------------------------------------

    async def get(self) -> K:
        """The next key, waiting for one; raises ``ShutDown`` once the queue is shut down."""
        key, _ = await self.get_with_priority()
        return key

    async def get_with_priority(self) -> tuple[K, int]:
        """The next key and the priority it was queued with (the highest first, then the oldest)."""
        while not self._ready:
            if self._shutting_down:
                raise ShutDown
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                with contextlib.suppress(ValueError):
                    self._getters.remove(getter)
                # Woken and cancelled in the same breath: pass the wake-up on to another getter.
                if self._ready and not self._shutting_down:
                    self._wake_one()
                raise
        if self._shutting_down:
            raise ShutDown
        queue, ready = self._queue, self._ready
        while True:
            neg_priority, order, key = heapq.heappop(queue)
            if ready.get(key) == (neg_priority, order):
                break
        del ready[key]
        now = time.perf_counter()
        added = self._dirty.pop(key).added
        self._processing[key] = now
        if self._metrics is not None:
            self._metrics.queue_duration.observe(now - added)
        return key, -neg_priority

    def done(self, key: K) -> None:
        """Mark ``key`` finished; if it was added meanwhile, it is queued again now."""
        started = self._processing.pop(key, None)
        if started is None:
            return
        if self._metrics is not None:
            self._metrics.work_duration.observe(time.perf_counter() - started)
        entry = self._dirty.get(key)
        if entry is not None and not self._shutting_down:
            self._push(key, entry.priority, entry.order)
            self._wake_one()
        elif not self._processing and self._drained is not None:
            self._drained.set()

    def _wake_one(self) -> None:
        getters = self._getters
        while getters:
            getter = getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    # -- stopping ---------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop: ignore adds, drop queued and delayed keys, make ``get()`` raise ``ShutDown``."""
        if self._shutting_down:
            return
        self._shutting_down = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap.clear()
        self._waiting.clear()
        self._waiting_priority.clear()
        self._queue.clear()
        self._ready.clear()
        # Keys being processed stay "dirty" only until done; nothing re-queues after shutdown.
        self._dirty.clear()
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)

    async def shutdown_with_drain(self) -> None:
        """``shutdown()``, then wait until every key handed out is done.

        Bound the wait with ``asyncio.timeout``: keys still in flight when it fires stay processing.
        """
        self.shutdown()
        if not self._processing:
            return
        if self._drained is None:
            self._drained = asyncio.Event()
        await self._drained.wait()

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    # -- reading ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ready)

    @property
    def processing(self) -> int:
        """Keys handed out and not yet done."""
        return len(self._processing)

    @property
    def waiting(self) -> int:
        """Keys waiting for their ``add_after`` time."""
        return len(self._waiting)

    def _depth(self) -> float:
        return float(len(self._dirty))

    def _unfinished_work_seconds(self) -> float:
        now = time.perf_counter()
        return sum(now - started for started in list(self._processing.values()))

    def _longest_running_seconds(self) -> float:
        if not self._processing:
            return 0.0
        return time.perf_counter() - min(list(self._processing.values()))
