"""The controller: events in, a work queue in the middle, workers calling the reconciler.

What a caller may rely on:

- ``watch(source, handler, *predicates)``: every event of ``source`` (an ``Informer``, or anything
  with ``add_handler`` and ``wait_for_sync``) that passes all predicates is mapped by ``handler`` to
  requests, which go into the controller's work queue. Handlers are attached once the sources have
  synced, so the first thing the reconciler sees is a complete cache (the informer replays what it
  holds as ``ADDED``).
- ``run()`` waits for every source to sync (``cache_sync_timeout``, default 120 s; ``TimeoutError``
  naming the sources that did not sync), runs ``max_concurrent_reconciles`` workers (default 1) and
  returns after ``stop()`` once in-flight reconciles have finished. Cancelling ``run()`` cancels the
  reconciles in flight. A controller runs once.
- A request is never reconciled by two workers at once (the queue's exclusivity).
- Priority (``use_priority_queue``, default True, as controller-runtime 0.23): requests from events
  that are not changes go into the queue at ``LOW_PRIORITY``, behind every real change: the replay of
  the cache when the handlers are attached (the initial list; the informer delivers it inside
  ``add_handler``), ``RESYNC`` events, and updates whose resourceVersion did not move. Every other
  event is ``NORMAL_PRIORITY``, and moves a request already waiting at low priority to the front. So
  after a restart with 10,000 objects an edit waits for the reconciles in flight, not for the
  backlog. A retry (error, ``requeue``, ``requeue_after``) keeps the priority its request was taken
  with. Priorities order only what waits; they never delay a request that no other one waits for.
- The name labels every metric of the controller and its queue: keep it unique in the process.
- Outcome handling is controller-runtime's, with ``result`` the label of
  ``controller_runtime_reconcile_total``:
  success -> ``forget`` (backoff reset), "success";
  ``Result(requeue_after=s)`` -> ``forget`` and ``add_after(s)``, "requeue_after";
  ``Result(requeue=True)`` -> ``add_rate_limited``, "requeue";
  ``TerminalError`` -> no retry, ``controller_runtime_terminal_reconcile_errors_total`` and
  ``..._reconcile_errors_total`` + 1, "error";
  any other ``Exception`` -> ``add_rate_limited``, ``..._reconcile_errors_total`` + 1, "error".
  An error carrying the server's ``Retry-After`` (``errors.retry_after``) waits at least that long.
  ``reconcile_time_seconds`` observes every reconcile; ``active_workers`` counts running ones.
- Panics. Go separates errors (returned) from panics (bugs); Python raises both. A *panic* here is an
  exception that is not one of ``expected_errors`` — by default ``ApiError`` (the API server said
  no), ``OSError`` and ``TimeoutError`` (the network failed), ``aiohttp.ClientError`` — nor a
  ``TerminalError``: a ``KeyError`` or ``TypeError`` from the reconciler's own code. A panic is
  logged with its traceback, counted in ``controller_runtime_reconcile_panics_total`` *and* handled
  as an error (counted, retried with backoff), as controller-runtime does with a recovered panic.
  Expected errors are logged in one line without a traceback. The worker survives both.
  Exception groups (from ``asyncio.TaskGroup``) are looked into: terminal if any member is a
  ``TerminalError``, a panic if any member is unexpected.
- Every reconcile runs inside ``reconcile_context``: its log lines carry a fresh ``reconcile_id``
  with ``controller``, ``namespace`` and ``name``.
- An event handler or predicate that raises is logged and the event dropped; the informer goes on.
- Own writes do not wake their writer (``agentkube.runtime.echo``): what a reconcile writes through
  a ``Client`` is noted in the controller's ``own_writes``, and the watch event carrying exactly that
  state (same object, same resourceVersion) enqueues every request it maps to except the one whose
  reconcile wrote it. So an object converges in one reconcile, not one plus one per child and status
  it wrote. Any other event (someone else's change, a later resourceVersion, a delete, a relist, a
  resync) enqueues as before. An ``ADDED`` or ``MODIFIED`` event for a request whose reconcile is
  running is held until that reconcile ends (the watch may beat the answer to the write that caused
  it) and then enqueued unless it was the echo of one of that reconcile's writes: the queue would
  have reconciled the request again after it finished anyway, so only the echo's reconcile is saved.
  A note whose event went by before the write's answer, held for nobody (a predicate filtered it),
  is dropped when the reconcile ends if a source of the controller already caches that state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol

import aiohttp

from agentkube.runtime import metrics
from agentkube.runtime.echo import ObjectId, OwnWrites, Recording
from agentkube.runtime.errors import ApiError, retry_after
from agentkube.runtime.gvk import ObjectKey
from agentkube.runtime.handler import EventHandler
from agentkube.runtime.informer import Event, EventType
from agentkube.runtime.logging import get_logger, reconcile_context
from agentkube.runtime.predicate import Predicate
from agentkube.runtime.ratelimiter import RateLimiter
from agentkube.runtime.reconcile import (
    ReconcileFunc,
    Reconciler,
    Request,
    as_reconciler,
    is_terminal,
)
from agentkube.runtime.workqueue import LOW_PRIORITY, NORMAL_PRIORITY, RateLimitingQueue, ShutDown

__all__ = ["DEFAULT_EXPECTED_ERRORS", "Controller", "Source"]

_log = get_logger("agentkube.runtime.controller")

DEFAULT_EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ApiError,
    OSError,
    TimeoutError,
    aiohttp.ClientError,
)

_RESULTS = ("success", "error", "requeue", "requeue_after")


class Source(Protocol):
    """Where a controller's events come from; ``Informer`` is one."""

    def add_handler(self, handler: Callable[[Event], None]) -> None: ...

    def remove_handler(self, handler: Callable[[Event], None]) -> None: ...

    async def wait_for_sync(self, timeout: float | None = None) -> bool: ...  # noqa: ASYNC109


def _leaves(err: BaseException) -> Iterator[BaseException]:
    if isinstance(err, BaseExceptionGroup):
        for member in err.exceptions:
            yield from _leaves(member)
    else:
        yield err


class Controller:
    """Runs a reconciler over the requests its watches produce; see the module docstring."""

    def __init__(
        self,
        name: str,
        reconciler: Reconciler | ReconcileFunc,
        *,
        max_concurrent_reconciles: int = 1,
        rate_limiter: RateLimiter | None = None,
        cache_sync_timeout: float | None = 120.0,
        expected_errors: tuple[type[BaseException], ...] = DEFAULT_EXPECTED_ERRORS,
        use_priority_queue: bool = True,
    ) -> None:
        if not name:
            raise ValueError("a controller needs a name (it labels its metrics and logs)")
        if max_concurrent_reconciles < 1:
            raise ValueError(f"max_concurrent_reconciles must be >= 1, got {max_concurrent_reconciles}")
        self.name = name
        self.reconciler = as_reconciler(reconciler)
        self.max_concurrent_reconciles = max_concurrent_reconciles
        self.cache_sync_timeout = cache_sync_timeout
        self.expected_errors = expected_errors
        self.queue: RateLimitingQueue[Request] = RateLimitingQueue(
            name, rate_limiter, use_priority=use_priority_queue
        )
        # True while a source replays its cache into a handler being attached: the initial list.
        self._replaying = False
        self.own_writes = OwnWrites()
        # Requests being reconciled -> the events held for them until their reconcile ends.
        self._held: dict[Request, list[tuple[Event, int]]] = {}
        self._watches: list[tuple[Source, Callable[[Event], None]]] = []
        self._startup_hooks: list[Callable[[], Awaitable[None]]] = []
        self._started = False
        self._watching = False
        self._stopping = asyncio.Event()

        # controller-runtime initialises every series of a controller to 0 up front, so a rate() over
        # errors works before the first error and dashboards show the controller at all.
        self._total = {r: metrics.RECONCILE_TOTAL.labels(controller=name, result=r) for r in _RESULTS}
        for child in self._total.values():
            child.inc(0)
        self._errors = metrics.RECONCILE_ERRORS.labels(controller=name)
        self._terminal = metrics.TERMINAL_RECONCILE_ERRORS.labels(controller=name)
        self._panics = metrics.RECONCILE_PANICS.labels(controller=name)
        for counter in (self._errors, self._terminal, self._panics):
            counter.inc(0)
        self._time = metrics.RECONCILE_TIME.labels(controller=name)
        self._active = metrics.ACTIVE_WORKERS.labels(controller=name)
        self._active.set(0)
        metrics.MAX_CONCURRENT_RECONCILES.labels(controller=name).set(max_concurrent_reconciles)

    def __repr__(self) -> str:
        return f"Controller({self.name!r})"

    # -- wiring -----------------------------------------------------------------------------------

    def watch(self, source: Source, handler: EventHandler, *predicates: Predicate) -> None:
        """Enqueue ``handler(event)`` for every event of ``source`` that passes all ``predicates``."""
        dispatch = self._dispatcher(handler, predicates)
        self._watches.append((source, dispatch))
        if self._watching:
            self._attach(source, dispatch)

    def add_startup_hook(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Await ``hook()`` in ``run()`` after the sources synced and before handlers are attached."""
        self._startup_hooks.append(hook)

    def _dispatcher(self, handler: EventHandler, predicates: Sequence[Predicate]) -> Callable[[Event], None]:
        add = self.queue.add
        name = self.name
        echo_of = self.own_writes.echo_of
        held = self._held

        def dispatch(event: Event) -> None:
            try:
                # Before the predicates, so a note is consumed even by an event they filter out.
                writer = echo_of(event)
                for predicate in predicates:
                    if not predicate(event):
                        return
                priority = LOW_PRIORITY if self._replaying or not _is_change(event) else NORMAL_PRIORITY
                holdable = _may_echo(event)
                for request in handler(event):
                    if request == writer:
                        continue
                    waiting = held.get(request) if holdable else None
                    if waiting is not None and len(waiting) < _HELD_PER_RECONCILE:
                        waiting.append((event, priority))
                        continue
                    add(request, priority)
            except Exception:
                # A broken mapping must not take the informer's dispatch down with it.
                _log.exception(
                    "event handler failed; event dropped",
                    controller=name,
                    handler=repr(handler),
                    event_type=event.type.name,
                    object=_describe(event.obj),
                )

        return dispatch

    def _attach(self, source: Source, dispatch: Callable[[Event], None]) -> None:
        # An informer that has synced replays its store into a new handler before add_handler
        # returns: those events are the initial list, not changes, and go in at low priority.
        self._replaying = True
        try:
            source.add_handler(dispatch)
        finally:
            self._replaying = False

    # -- running ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Sync, then reconcile until ``stop()``; returns once in-flight reconciles finished."""
        if self._started:
            raise RuntimeError(f"controller {self.name!r} was already started")
        self._started = True
        try:
            if not await self._wait_for_sources():
                return
            for hook in self._startup_hooks:
                await hook()
            if self._stopping.is_set():
                return
            self._watching = True
            for source, dispatch in self._watches:
                self._attach(source, dispatch)
            _log.info("starting workers", controller=self.name, workers=self.max_concurrent_reconciles)
            workers = [
                asyncio.create_task(self._worker(), name=f"{self.name}-worker-{i}")
                for i in range(self.max_concurrent_reconciles)
            ]
            try:
                await asyncio.gather(*workers)
            finally:
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
        finally:
            self.queue.shutdown()
            if self._watching:
                for source, dispatch in self._watches:
                    source.remove_handler(dispatch)
        _log.info("workers stopped", controller=self.name)

    async def _wait_for_sources(self) -> bool:
        """Wait for every source to sync; False if stopped first; TimeoutError past the deadline."""
        sources = list({id(s): s for s, _ in self._watches}.values())
        if not sources:
            return not self._stopping.is_set()

        async def synced(source: Source) -> bool:
            return await source.wait_for_sync(self.cache_sync_timeout)

        sync = asyncio.ensure_future(asyncio.gather(*(synced(s) for s in sources)))
        stopped = asyncio.ensure_future(self._stopping.wait())
        racers: set[asyncio.Future[Any]] = {sync, stopped}
        try:
            await asyncio.wait(racers, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not sync.done():
                sync.cancel()
        if not sync.done() or sync.cancelled():
            return False
        results = sync.result()
        missing = [_source_name(s) for s, ok in zip(sources, results, strict=True) if not ok]
        if missing:
            raise TimeoutError(
                f"controller {self.name!r}: caches did not sync within {self.cache_sync_timeout}s: "
                + ", ".join(missing)
            )
        return True

    def stop(self) -> None:
        """Stop taking work; ``run()`` returns once the reconciles in flight have finished."""
        self._stopping.set()
        self.queue.shutdown()

    async def _worker(self) -> None:
        queue = self.queue
        while True:
            try:
                request, priority = await queue.get_with_priority()
            except ShutDown:
                return
            self._held[request] = []
            recording = self.own_writes.recording(request)
            try:
                with recording:
                    await self._reconcile(request, priority)
            finally:
                self._release(request, recording)
                queue.done(request)

    def _release(self, request: Request, recording: Recording) -> None:
        """Enqueue what was held for ``request`` while it was reconciled, less its own writes' echoes."""
        writes = self.own_writes
        wake: int | None = None
        for event, priority in self._held.pop(request, ()):
            # Every held event is asked about, so each echo's note is consumed.
            if writes.echo_of(event) != request and (wake is None or priority > wake):
                wake = priority
        if wake is not None:
            self.queue.add(request, wake)
        if recording.noted:
            writes.drop_passed(recording.noted, self._cached_version)

    def _cached_version(self, oid: ObjectId) -> str | None:
        """The resourceVersion at which a source of this controller caches the object, if one does."""
        group, kind, namespace, name = oid
        for source, _ in self._watches:
            gvk = getattr(source, "gvk", None)
            store = getattr(source, "store", None)
            if gvk is None or store is None or gvk.kind != kind or gvk.group != group:
                continue
            obj = store.get(ObjectKey(namespace, name))
            if obj is not None:
                return str((obj.get("metadata") or {}).get("resourceVersion") or "") or None
        return None

    async def _reconcile(self, request: Request, priority: int = NORMAL_PRIORITY) -> None:
        queue = self.queue
        with reconcile_context(self.name, request.namespace, request.name):
            self._active.inc()
            started = time.perf_counter()
            try:
                result = await self.reconciler.reconcile(request)
            except Exception as err:
                self._errors.inc()
                self._total["error"].inc()
                if is_terminal(err):
                    self._terminal.inc()
                    _log.error("reconcile failed with a terminal error; not retrying", error=str(err))
                    return
                wait = retry_after(err)
                if wait is None:
                    queue.add_rate_limited(request, priority)
                else:
                    # The server said when to come back (429, Retry-After): never sooner than that.
                    queue.add_after(request, max(wait, queue.rate_limiter.when(request)), priority)
                if all(isinstance(leaf, self.expected_errors) for leaf in _leaves(err)):
                    _log.error(
                        "reconcile failed; retrying with backoff",
                        error=f"{type(err).__name__}: {err}",
                        retries=queue.num_requeues(request),
                    )
                else:
                    self._panics.inc()
                    _log.exception(
                        "reconcile raised an unexpected exception; retrying with backoff",
                        retries=queue.num_requeues(request),
                    )
                return
            finally:
                self._time.observe(time.perf_counter() - started)
                self._active.dec()
            if result is not None and result.requeue_after:
                queue.forget(request)
                queue.add_after(request, result.requeue_after, priority)
                self._total["requeue_after"].inc()
            elif result is not None and result.requeue:
                queue.add_rate_limited(request, priority)
                self._total["requeue"].inc()
            else:
                queue.forget(request)
                self._total["success"].inc()


# Events held for one running reconcile at most; past that they are enqueued at once (a reconcile
# again after it, as without holding), so a slow reconcile under a storm of events holds no more.
_HELD_PER_RECONCILE = 64


def _may_echo(event: Event) -> bool:
    """The event could be the echo of a write still being answered: a watch's add or update."""
    if event.listed or event.type not in (EventType.ADDED, EventType.MODIFIED):
        return False
    return bool((event.obj.get("metadata") or {}).get("resourceVersion"))


def _is_change(event: Event) -> bool:
    """False for events that report no change: a resync, or an update at the same resourceVersion."""
    if event.type is EventType.RESYNC:
        return False
    if event.type is EventType.MODIFIED and event.old is not None:
        new_rv = (event.obj.get("metadata") or {}).get("resourceVersion")
        old_rv = (event.old.get("metadata") or {}).get("resourceVersion")
        return new_rv is None or new_rv != old_rv
    return True


def _describe(obj: object) -> str:
    if isinstance(obj, dict):
        meta = obj.get("metadata") or {}
        ns, name = meta.get("namespace"), meta.get("name")
        return f"{obj.get('kind', '?')} {ns}/{name}" if ns else f"{obj.get('kind', '?')} {name}"
    return repr(obj)


def _source_name(source: Source) -> str:
    gvk = getattr(source, "gvk", None)
    return str(gvk) if gvk is not None else repr(source)
