"""The controller driven by an in-memory event source: outcome handling, metrics, logging context."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest
import structlog

from agentkube.runtime import metrics
from agentkube.runtime.controller import Controller
from agentkube.runtime.echo import note_written
from agentkube.runtime.errors import Conflict
from agentkube.runtime.handler import EnqueueRequestForObject
from agentkube.runtime.informer import Event, EventType
from agentkube.runtime.predicate import GenerationChanged
from agentkube.runtime.ratelimiter import ExponentialFailureRateLimiter
from agentkube.runtime.reconcile import Request, Result, TerminalError

_names = itertools.count()


def unique(prefix: str) -> str:
    return f"unit-{prefix}-{next(_names)}"


class MemorySource:
    """An event source that delivers what the test emits; synced when the test says so."""

    def __init__(self, synced: bool = True) -> None:
        self.handlers: list[Callable[[Event], None]] = []
        self.synced = asyncio.Event()
        if synced:
            self.synced.set()

    def add_handler(self, handler: Callable[[Event], None]) -> None:
        self.handlers.append(handler)

    def remove_handler(self, handler: Callable[[Event], None]) -> None:
        self.handlers.remove(handler)

    async def wait_for_sync(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                await self.synced.wait()
        except TimeoutError:
            return False
        return True

    def emit(self, event: Event) -> None:
        for handler in self.handlers:
            handler(event)

    def add(self, name: str, namespace: str = "ns", generation: int = 1) -> None:
        self.emit(Event(EventType.ADDED, thing(name, namespace, generation)))


def thing(name: str, namespace: str = "ns", generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Thing",
        "metadata": {"name": name, "namespace": namespace, "generation": generation},
    }


def sample(metric: str, controller: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(metric, {"controller": controller, **labels})
    assert value is not None, f"{metric} has no series for controller {controller}"
    return value


def total(controller: str, result: str) -> float:
    return sample("controller_runtime_reconcile_total", controller, result=result)


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.002)


class Recorder:
    """A reconciler that records calls and answers with what the test scripted per call."""

    def __init__(self, *outcomes: Result | BaseException | None) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[Request, float]] = []
        self.contexts: list[dict[str, Any]] = []

    async def reconcile(self, request: Request) -> Result | None:
        self.calls.append((request, asyncio.get_running_loop().time()))
        self.contexts.append(structlog.contextvars.get_contextvars())
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


async def started(controller: Controller) -> tuple[MemorySource, asyncio.Task[None]]:
    """Run ``controller`` on a synced in-memory source; return the source to emit on, and the run."""
    source = MemorySource()
    controller.watch(source, EnqueueRequestForObject())
    task = asyncio.create_task(controller.run())
    await eventually(lambda: bool(source.handlers))
    return source, task


async def stopped(controller: Controller, task: asyncio.Task[None]) -> None:
    controller.stop()
    await asyncio.wait_for(task, 5)


def fast_backoff() -> ExponentialFailureRateLimiter:
    return ExponentialFailureRateLimiter(0.02, 1.0)


async def test_every_series_is_initialised_to_zero() -> None:
    name = unique("init")
    Controller(name, Recorder(), max_concurrent_reconciles=3)
    for result in ("success", "error", "requeue", "requeue_after"):
        assert total(name, result) == 0
    for metric in (
        "controller_runtime_reconcile_errors_total",
        "controller_runtime_terminal_reconcile_errors_total",
        "controller_runtime_reconcile_panics_total",
        "controller_runtime_active_workers",
    ):
        assert sample(metric, name) == 0
    assert sample("controller_runtime_max_concurrent_reconciles", name) == 3


async def test_success_reconciles_once_and_counts_success() -> None:
    name = unique("success")
    reconciler = Recorder()
    controller = Controller(name, reconciler)
    source, task = await started(controller)
    source.add("a")
    await eventually(lambda: total(name, "success") == 1)
    assert [r for r, _ in reconciler.calls] == [Request("ns", "a")]
    assert controller.queue.num_requeues(Request("ns", "a")) == 0
    assert sample("controller_runtime_reconcile_time_seconds_count", name) == 1
    await stopped(controller, task)


async def test_error_retries_with_growing_delays_and_is_counted() -> None:
    name = unique("error")
    conflict = Conflict(409, "Conflict", "the object has been modified")
    reconciler = Recorder(conflict, conflict, conflict, None)
    controller = Controller(name, reconciler, rate_limiter=fast_backoff())
    source, task = await started(controller)
    source.add("a")
    await eventually(lambda: total(name, "success") == 1)
    times = [t for _, t in reconciler.calls]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 3
    for gap, backoff in zip(gaps, [0.02, 0.04, 0.08], strict=True):
        assert gap >= backoff
    assert gaps[2] > gaps[0]
    assert total(name, "error") == 3
    assert sample("controller_runtime_reconcile_errors_total", name) == 3
    assert sample("controller_runtime_reconcile_panics_total", name) == 0  # an ApiError is expected
    assert (
        metrics.REGISTRY.get_sample_value("workqueue_retries_total", {"name": name, "controller": name}) == 3
    )
    # Success forgot the backoff.
    assert controller.queue.num_requeues(Request("ns", "a")) == 0
    await stopped(controller, task)


async def test_unexpected_exception_is_a_panic_retried_and_the_worker_survives() -> None:
    name = unique("panic")
    reconciler = Recorder(KeyError("spec"), None, None)
    controller = Controller(name, reconciler, rate_limiter=fast_backoff())
    source, task = await started(controller)
    source.add("a")
    await eventually(lambda: total(name, "success") == 1)
    source.add("b")
    await eventually(lambda: total(name, "success") == 2)
    assert sample("controller_runtime_reconcile_panics_total", name) == 1
    assert sample("controller_runtime_reconcile_errors_total", name) == 1
    assert total(name, "error") == 1
    assert [r.name for r, _ in reconciler.calls] == ["a", "a", "b"]
    await stopped(controller, task)


async def test_terminal_error_is_not_retried() -> None:
    name = unique("terminal")
    reconciler = Recorder(TerminalError("spec.port: must be 1-65535"))
    controller = Controller(name, reconciler, rate_limiter=fast_backoff())
    source, task = await started(controller)
    source.add("a")
    await eventually(lambda: total(name, "error") == 1)
    assert sample("controller_runtime_terminal_reconcile_errors_total", name) == 1
    assert sample("controller_runtime_reconcile_errors_total", name) == 1
    assert sample("controller_runtime_reconcile_panics_total", name) == 0
    # Nothing is scheduled: no delayed retry, nothing queued.
    await asyncio.sleep(0.1)
    assert len(reconciler.calls) == 1
    assert controller.queue.waiting == 0 and len(controller.queue) == 0
    # The next change to the object is reconciled again.
    source.add("a", generation=2)
    await eventually(lambda: total(name, "success") == 1)
    await stopped(controller, task)


async def test_terminal_error_wrapped_in_a_task_group_is_terminal() -> None:
    name = unique("terminal-group")

    async def reconcile(request: Request) -> None:
        async def fail() -> None:
            raise TerminalError("bad spec")

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(fail())

    controller = Controller(name, reconcile, rate_limiter=fast_backoff())
    source, task = await started(controller)
    source.add("a")
    await eventually(lambda: total(name, "error") == 1)
    assert sample("controller_runtime_terminal_reconcile_errors_total", name) == 1
    assert controller.queue.waiting == 0
    await stopped(controller, task)


async def test_requeue_after_forgets_backoff_and_reconciles_again_later() -> None:
    name = unique("requeue-after")
    reconciler = Recorder(RuntimeError("boom"), Result(requeue_after=0.1), None)
    controller = Controller(name, reconciler, rate_limiter=fast_backoff())
    source, task = await started(controller)
    source.add("a")
    await eventually(lambda: total(name, "success") == 1)
    assert total(name, "requeue_after") == 1
    _, (_, t1), (_, t2) = reconciler.calls
    assert t2 - t1 >= 0.1
    assert controller.queue.num_requeues(Request("ns", "a")) == 0
    await stopped(controller, task)


async def test_requeue_uses_the_rate_limiter_and_its_own_label() -> None:
    name = unique("requeue")
    reconciler = Recorder(Result(requeue=True), None)
    controller = Controller(name, reconciler, rate_limiter=fast_backoff())
    source, task = await started(controller)
    source.add("a")
    await eventually(lambda: total(name, "success") == 1)
    assert total(name, "requeue") == 1
    assert total(name, "error") == 0
    await stopped(controller, task)


async def test_each_reconcile_binds_a_fresh_reconcile_id_with_its_object() -> None:
    name = unique("logctx")
    reconciler = Recorder(RuntimeError("again"), None, None)
    controller = Controller(name, reconciler, rate_limiter=fast_backoff())
    source, task = await started(controller)
    source.add("a", namespace="team-a")
    await eventually(lambda: total(name, "success") == 1)
    source.add("b", namespace="team-b")
    await eventually(lambda: total(name, "success") == 2)
    ids = [c["reconcile_id"] for c in reconciler.contexts]
    assert len(set(ids)) == 3 and all(len(i) == 32 for i in ids)
    assert [(c["controller"], c["namespace"], c["name"]) for c in reconciler.contexts] == [
        (name, "team-a", "a"),
        (name, "team-a", "a"),
        (name, "team-b", "b"),
    ]
    # Nothing leaks into the context outside a reconcile.
    assert "reconcile_id" not in structlog.contextvars.get_contextvars()
    await stopped(controller, task)


async def test_workers_run_concurrently_but_never_on_the_same_request() -> None:
    name = unique("concurrency")
    running: set[Request] = set()
    peak = 0
    overlap = False
    release = asyncio.Event()
    done: list[Request] = []

    async def reconcile(request: Request) -> None:
        nonlocal peak, overlap
        overlap = overlap or request in running
        running.add(request)
        peak = max(peak, len(running))
        await release.wait()
        running.discard(request)
        done.append(request)

    controller = Controller(name, reconcile, max_concurrent_reconciles=3)
    source, task = await started(controller)
    for n in ("a", "b", "c", "d"):
        source.add(n)
    await eventually(lambda: len(running) == 3)
    assert sample("controller_runtime_active_workers", name) == 3
    source.add("a")  # while "a" runs: queued again for after it
    release.set()
    await eventually(lambda: len(done) == 5)
    assert peak == 3 and not overlap
    assert sorted(r.name for r in done) == ["a", "a", "b", "c", "d"]
    assert sample("controller_runtime_active_workers", name) == 0
    await stopped(controller, task)


async def test_predicates_filter_events_before_the_queue() -> None:
    name = unique("predicates")
    reconciler = Recorder()
    controller = Controller(name, reconciler)
    source = MemorySource()
    controller.watch(source, EnqueueRequestForObject(), GenerationChanged())
    task = asyncio.create_task(controller.run())
    await eventually(lambda: bool(source.handlers))
    source.emit(
        Event(EventType.MODIFIED, thing("status-only", generation=1), thing("status-only", generation=1))
    )
    source.emit(Event(EventType.MODIFIED, thing("spec", generation=2), thing("spec", generation=1)))
    await eventually(lambda: total(name, "success") == 1)
    assert [r.name for r, _ in reconciler.calls] == ["spec"]
    await stopped(controller, task)


async def test_a_failing_handler_drops_the_event_and_dispatch_goes_on() -> None:
    name = unique("bad-handler")
    reconciler = Recorder()
    controller = Controller(name, reconciler)
    source = MemorySource()

    def broken(event: Event) -> list[Request]:
        raise ValueError("mapping bug")

    controller.watch(source, broken)
    controller.watch(source, EnqueueRequestForObject())
    task = asyncio.create_task(controller.run())
    await eventually(lambda: len(source.handlers) == 2)
    source.add("a")  # would raise out of the first handler if not contained
    await eventually(lambda: total(name, "success") == 1)
    await stopped(controller, task)


async def test_handlers_attach_only_after_sources_sync_and_startup_hooks() -> None:
    name = unique("sync")
    order: list[str] = []
    controller = Controller(name, Recorder())
    source = MemorySource(synced=False)
    controller.watch(source, EnqueueRequestForObject())

    async def hook() -> None:
        order.append(f"hook, handlers={len(source.handlers)}")

    controller.add_startup_hook(hook)
    task = asyncio.create_task(controller.run())
    await asyncio.sleep(0.02)
    assert source.handlers == [] and order == []
    source.synced.set()
    await eventually(lambda: bool(source.handlers))
    assert order == ["hook, handlers=0"]
    await stopped(controller, task)
    assert source.handlers == []  # detached on stop


async def test_sources_that_never_sync_fail_run_with_their_names() -> None:
    controller = Controller(unique("no-sync"), Recorder(), cache_sync_timeout=0.05)
    controller.watch(MemorySource(synced=False), EnqueueRequestForObject())
    with pytest.raises(TimeoutError, match="did not sync"):
        await asyncio.wait_for(controller.run(), 5)


async def test_stop_while_waiting_for_sync_returns() -> None:
    controller = Controller(unique("stop-unsynced"), Recorder())
    controller.watch(MemorySource(synced=False), EnqueueRequestForObject())
    task = asyncio.create_task(controller.run())
    await asyncio.sleep(0.01)
    await stopped(controller, task)


async def test_stop_finishes_the_reconcile_in_flight_and_takes_no_more_work() -> None:
    name = unique("graceful")
    entered = asyncio.Event()
    release = asyncio.Event()
    finished: list[str] = []

    async def reconcile(request: Request) -> None:
        entered.set()
        await release.wait()
        finished.append(request.name)

    controller = Controller(name, reconcile)
    source, task = await started(controller)
    source.add("a")
    source.add("b")
    await asyncio.wait_for(entered.wait(), 5)
    controller.stop()
    await asyncio.sleep(0.02)
    assert not task.done()  # waits for "a"
    release.set()
    await asyncio.wait_for(task, 5)
    assert finished == ["a"]


async def test_a_controller_runs_once() -> None:
    controller = Controller(unique("once"), Recorder())
    task = asyncio.create_task(controller.run())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already started"):
        await controller.run()
    await stopped(controller, task)


def test_options_are_validated() -> None:
    with pytest.raises(ValueError):
        Controller(unique("bad"), Recorder(), max_concurrent_reconciles=0)
    with pytest.raises(ValueError):
        Controller("", Recorder())


# ----------------------------------------------------------------------------- own writes' echoes


def at(name: str, rv: str) -> dict[str, Any]:
    obj = thing(name)
    obj["metadata"]["resourceVersion"] = rv
    return obj


class Writer:
    """A reconciler whose first reconcile of each request "writes" its object at resourceVersion 2:
    it notes what a ``Client`` write would have returned, first calling ``before_answer`` (what the
    watch delivers before the write's answer comes back, when it wins the race)."""

    def __init__(self, before_answer: Callable[[Request], None] | None = None) -> None:
        self.calls: list[Request] = []
        self.before_answer = before_answer

    async def reconcile(self, request: Request) -> None:
        first = request not in self.calls
        self.calls.append(request)
        if first:
            await asyncio.sleep(0)
            if self.before_answer is not None:
                self.before_answer(request)
            note_written(at(request.name, "2"))


async def reconciled_after(controller: Controller, source: MemorySource, name: str, writer: Writer) -> None:
    """Emit an add of a fresh object ``name`` and wait for its reconcile: with one worker, every request
    queued before it has been reconciled by then."""
    source.emit(Event(EventType.ADDED, at(name, "1")))
    await eventually(lambda: Request("ns", name) in writer.calls)
    await eventually(lambda: not controller.queue.processing)


async def test_the_echo_of_a_reconciles_own_write_does_not_reconcile_it_again() -> None:
    writer = Writer()
    controller = Controller(unique("echo"), writer)
    source, task = await started(controller)
    source.emit(Event(EventType.ADDED, at("a", "1")))
    await eventually(lambda: writer.calls == [Request("ns", "a")] and not controller.queue.processing)
    source.emit(Event(EventType.MODIFIED, at("a", "2"), at("a", "1")))
    await reconciled_after(controller, source, "b", writer)
    assert writer.calls == [Request("ns", "a"), Request("ns", "b")]
    assert len(controller.own_writes) == 1  # b's write; its echo never came
    # A change made by someone else after ours reconciles again.
    source.emit(Event(EventType.MODIFIED, at("a", "3"), at("a", "2")))
    await eventually(lambda: writer.calls.count(Request("ns", "a")) == 2)
    await stopped(controller, task)


async def test_an_echo_that_beats_the_answer_to_its_write_is_held_and_dropped() -> None:
    source = MemorySource()
    writer = Writer(lambda r: source.emit(Event(EventType.MODIFIED, at(r.name, "2"), at(r.name, "1"))))
    controller = Controller(unique("echo-race"), writer)
    controller.watch(source, EnqueueRequestForObject())
    task = asyncio.create_task(controller.run())
    await eventually(lambda: bool(source.handlers))
    source.emit(Event(EventType.ADDED, at("a", "1")))
    await eventually(lambda: writer.calls == [Request("ns", "a")] and not controller.queue.processing)
    writer.before_answer = None
    await reconciled_after(controller, source, "b", writer)
    assert writer.calls == [Request("ns", "a"), Request("ns", "b")]
    await stopped(controller, task)


async def test_someone_elses_change_during_a_reconcile_still_reconciles_again_after_it() -> None:
    source = MemorySource()
    # A foreign change (resourceVersion 5) lands while the reconcile runs; the reconcile's own write
    # (resourceVersion 2) is answered after it.
    writer = Writer(lambda r: source.emit(Event(EventType.MODIFIED, at(r.name, "5"), at(r.name, "1"))))
    controller = Controller(unique("echo-foreign"), writer)
    controller.watch(source, EnqueueRequestForObject())
    task = asyncio.create_task(controller.run())
    await eventually(lambda: bool(source.handlers))
    source.emit(Event(EventType.ADDED, at("a", "1")))
    await eventually(lambda: writer.calls == [Request("ns", "a")] * 2 and not controller.queue.processing)
    await stopped(controller, task)


async def test_an_echo_still_wakes_the_other_requests_its_object_maps_to() -> None:
    source = MemorySource()
    writer = Writer()
    controller = Controller(unique("echo-others"), writer)

    def also_watcher(event: Event) -> list[Request]:
        # Every event of "a" concerns "a" and "watcher" (say, an object referencing it).
        named = event.obj["metadata"]["name"]
        return [Request.of(event.obj)] + ([Request("ns", "watcher")] if named == "a" else [])

    controller.watch(source, also_watcher)
    task = asyncio.create_task(controller.run())
    await eventually(lambda: bool(source.handlers))
    source.emit(Event(EventType.ADDED, at("a", "1")))
    await eventually(lambda: Request("ns", "watcher") in writer.calls and not controller.queue.processing)
    writer.calls.clear()
    source.emit(Event(EventType.MODIFIED, at("a", "2"), at("a", "1")))
    await reconciled_after(controller, source, "b", writer)
    assert writer.calls == [Request("ns", "watcher"), Request("ns", "b")]
    await stopped(controller, task)


async def test_a_delete_or_a_resync_of_a_written_object_reconciles_its_writer() -> None:
    writer = Writer()
    controller = Controller(unique("echo-delete"), writer)
    source, task = await started(controller)
    source.emit(Event(EventType.ADDED, at("a", "1")))
    await eventually(lambda: writer.calls == [Request("ns", "a")] and not controller.queue.processing)
    source.emit(Event(EventType.RESYNC, at("a", "2"), at("a", "2")))
    await eventually(lambda: writer.calls.count(Request("ns", "a")) == 2)
    source.emit(Event(EventType.DELETED, at("a", "2"), at("a", "2")))
    await eventually(lambda: writer.calls.count(Request("ns", "a")) == 3)
    await stopped(controller, task)


async def test_a_spec_change_landing_while_our_status_is_written_still_reconciles_again() -> None:
    source = MemorySource()
    spec_change = at("a", "2")
    spec_change["metadata"]["generation"] = 2
    written = at("a", "3")  # our status write, made over the spec change we never read
    written["metadata"]["generation"] = 2
    calls: list[Request] = []

    async def reconcile(request: Request) -> None:
        calls.append(request)
        if len(calls) == 1:
            source.emit(Event(EventType.MODIFIED, spec_change, at("a", "1")))
            note_written(written)
            source.emit(Event(EventType.MODIFIED, written, spec_change))

    controller = Controller(unique("echo-generation"), reconcile)
    controller.watch(source, EnqueueRequestForObject(), GenerationChanged())
    task = asyncio.create_task(controller.run())
    await eventually(lambda: bool(source.handlers))
    source.emit(Event(EventType.ADDED, at("a", "1")))
    await eventually(lambda: calls == [Request("ns", "a")] * 2 and not controller.queue.processing)
    await stopped(controller, task)
