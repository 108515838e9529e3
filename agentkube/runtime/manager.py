"""The manager: one process's caches, controllers, leader election, probes and metrics, run together.

What a caller may rely on:

- ``Manager(client, ManagerOptions(...))`` owns one ``Cache`` (``manager.cache``) shared by all its
  controllers; ``manager.controller(name)`` starts a ``Builder``; ``add_runnable`` adds any other
  coroutine function to run alongside.
- ``await manager.run()`` starts, in this order: the HTTP endpoints (``/livez``, ``/healthz``,
  ``/readyz``, ``/metrics``), the event-loop lag gauge, the cache (on every replica, so a new leader
  starts warm), the runnables that do not need leadership, leader election (when enabled), and — only
  while this process leads, or at once without leader election — the controllers and the other
  runnables.
- ``/healthz`` (and ``/livez``, its other name) answers 200 while the event loop runs and every
  ``add_health_check`` check passes. ``/readyz`` answers 503 until every informer of the cache has
  synced (the body names the ones that have not), then 200.
- It runs until ``stop()``, SIGTERM or SIGINT (with ``install_signal_handlers``), or a runnable
  failing. Shutdown is ordered and bounded by ``graceful_shutdown_timeout``: stop taking work, let
  in-flight reconciles finish, stop runnables, write queued events, release the lease (so a
  successor takes over at once), close the watches, stop the HTTP endpoints. Whatever is still
  running at the deadline is cancelled. A second signal cancels everything at once.
- The manager never closes its client: close it after ``run()`` returns. By then every Event the
  recorders of ``event_recorder()`` had queued is written (within ``graceful_shutdown_timeout``).
- Losing the lease is fatal: reconciles are cancelled on the spot (another replica may lead already)
  and the event recorders stop (queued events are dropped, later ones ignored), a clear error line
  is logged, and ``run()`` raises ``LeaderElectionLost`` so the process exits
  non-zero and Kubernetes restarts it as a follower. A runnable that raises makes ``run()`` raise
  that error after the same ordered shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentkube.runtime import metrics
from agentkube.runtime.builder import Builder
from agentkube.runtime.cache import Cache, KindOptions, UncachedReader
from agentkube.runtime.controller import Controller
from agentkube.runtime.events import EventRecorder
from agentkube.runtime.gvk import GVK
from agentkube.runtime.leaderelection import LeaderElectionLost, LeaderElector
from agentkube.runtime.logging import get_logger
from agentkube.runtime.probes import Check, HttpServer, metrics_routes, parse_bind_address, probe_routes

if TYPE_CHECKING:
    from agentkube.runtime.client import Client

__all__ = ["LeaderElectionLost", "Manager", "ManagerOptions", "Runnable"]

_log = get_logger("agentkube.runtime.manager")

Runnable = Callable[[], Coroutine[Any, Any, None]]

_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _pod_namespace() -> str:
    """The namespace this pod runs in: $POD_NAMESPACE, the service account's, else "default"."""
    env = os.environ.get("POD_NAMESPACE")
    if env:
        return env
    try:
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


@dataclass(frozen=True)
class ManagerOptions:
    """How a manager runs. Every default is controller-runtime's unless said otherwise."""

    metrics_bind_address: str = ":8080"
    """Where ``/metrics`` listens: ``":8080"``, ``"127.0.0.1:0"``, ``"0"`` to disable. Default ``:8080``."""
    health_probe_bind_address: str = ":8081"
    """Where ``/livez``, ``/healthz`` and ``/readyz`` listen; same syntax. Default ``:8081``. When equal
    to the metrics address, all of them share one listener."""
    leader_election: bool = False
    """Run controllers only while holding a Lease. Default False (turn it on with replicas > 1)."""
    leader_election_id: str = "agentkube-leader"
    """Name of the Lease. Default ``agentkube-leader``."""
    leader_election_namespace: str = field(default_factory=_pod_namespace)
    """Namespace of the Lease. Default: the pod's namespace ($POD_NAMESPACE, or the service account's),
    ``default`` outside a cluster."""
    lease_duration: float = 15.0
    """Seconds a follower waits after the last observed renewal before taking the lease. Default 15."""
    renew_deadline: float = 10.0
    """Seconds the leader keeps trying to renew before it gives up leadership. Default 10."""
    retry_period: float = 2.0
    """Seconds between attempts to acquire or renew. Default 2."""
    graceful_shutdown_timeout: float = 30.0
    """Seconds the whole ordered shutdown may take before what remains is cancelled. Default 30."""
    namespace: str | None = None
    """Cache (and so watch) only this namespace. Default None: all namespaces."""
    cache_by_kind: Mapping[GVK, KindOptions] = field(default_factory=dict)
    """Per-kind cache options (selectors, namespace, metadata-only, transform), e.g.
    ``{SECRET: KindOptions(label_selector="app.kubernetes.io/managed-by=agentkube")}`` to cache only
    the Secrets we label. Default: none."""
    sync_period: float | None = None
    """Seconds between RESYNC re-deliveries of every cached object. Default None: never (an agentkube
    choice; controller-runtime's 10 h default mostly hides bugs)."""
    install_signal_handlers: bool = True
    """Turn SIGTERM and SIGINT into a graceful shutdown. Default True; False when the caller owns
    the signals (tests, several managers in one process)."""
    event_loop_lag_interval: float = 1.0
    """Seconds between event-loop lag measurements (``agentkube_event_loop_lag_seconds``). Default 1."""


@dataclass
class _Runnable:
    name: str
    fn: Runnable
    needs_leader: bool
    task: asyncio.Task[None] | None = None


class Manager:
    """Runs a cache, controllers and runnables with probes, metrics and optional leader election."""

    def __init__(self, client: Client, options: ManagerOptions | None = None) -> None:
        self.options = options or ManagerOptions()
        self._client = client
        self._cache = Cache(
            client,
            default_namespace=self.options.namespace,
            resync_period=self.options.sync_period,
            by_kind=self.options.cache_by_kind,
        )
        self._controllers: dict[str, Controller] = {}
        self._controller_tasks: list[asyncio.Task[None]] = []
        self._runnables: list[_Runnable] = []
        self._healthz: dict[str, Check] = {"ping": lambda: None}
        self._readyz: dict[str, Check] = {"informers": self._informers_synced}
        self._servers: list[HttpServer] = []
        self._recorders: dict[str, EventRecorder] = {}
        self._stop = asyncio.Event()
        self._hard_stop = asyncio.Event()
        self._error: BaseException | None = None
        self._started = False
        self._cache_started = False
        self._leading = False
        self._leader_started = False
        self._elector: LeaderElector | None = None
        self._elector_task: asyncio.Task[None] | None = None
        self._releasing = False
        if self.options.leader_election:
            # Built now so invalid durations fail at construction, not minutes into a rollout.
            self._elector = LeaderElector(
                client,
                self.options.leader_election_id,
                self.options.leader_election_namespace,
                lease_duration=self.options.lease_duration,
                renew_deadline=self.options.renew_deadline,
                retry_period=self.options.retry_period,
            )
        self._signals: list[signal.Signals] = []

    # -- wiring -----------------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        return self._client

    @property
    def api_reader(self) -> UncachedReader:
        """Reads straight from the API server (``cache.uncached``), for what is not worth caching."""
        return self._cache.uncached

    @property
    def cache(self) -> Cache:
        return self._cache

    @property
    def controllers(self) -> list[Controller]:
        return list(self._controllers.values())

    @property
    def leading(self) -> bool:
        """True while this manager runs its leader work (always, once started, without election)."""
        return self._leading

    def controller(self, name: str) -> Builder:
        """Start building a controller called ``name`` (unique per manager: it labels metrics)."""
        return Builder(self, name)

    def add_controller(self, controller: Controller) -> None:
        """Run ``controller`` while leading. The builder calls this; call it for hand-built ones."""
        if controller.name in self._controllers:
            raise ValueError(f"a controller named {controller.name!r} is already registered")
        if self._leader_started:
            raise RuntimeError("controllers must be added before the manager starts leading")
        self._controllers[controller.name] = controller

    def add_runnable(self, fn: Runnable, *, needs_leader: bool = True, name: str | None = None) -> None:
        """Run ``fn()`` with the manager. It is cancelled on shutdown; if it raises, the manager
        shuts down and ``run()`` raises that error. Returning early is fine.

        needs_leader: run only while leading (anything that writes). Default True.
        """
        if self._started:
            raise RuntimeError("runnables must be added before manager.run()")
        label = name or str(getattr(fn, "__qualname__", None) or repr(fn))
        self._runnables.append(_Runnable(label, fn, needs_leader))

    def add_health_check(self, name: str, check: Check) -> None:
        """Add a ``/healthz`` (and ``/livez``) check: None when healthy, else a reason."""
        self._healthz[name] = check

    def add_ready_check(self, name: str, check: Check) -> None:
        """Add a ``/readyz`` check: None when ready, else a reason."""
        self._readyz[name] = check

    def event_recorder(self, name: str) -> EventRecorder:
        """The event recorder reporting as ``name`` (usually the controller's name); one per name,
        flushed on shutdown before the lease is released."""
        recorder = self._recorders.get(name)
        if recorder is None:
            recorder = self._recorders[name] = EventRecorder(self._client, name)
        return recorder

    @property
    def metrics_port(self) -> int | None:
        """The port ``/metrics`` listens on once running (useful with port 0), else None."""
        return self._port_of(self.options.metrics_bind_address)

    @property
    def health_probe_port(self) -> int | None:
        """The port ``/livez``, ``/healthz`` and ``/readyz`` listen on once running, else None."""
        return self._port_of(self.options.health_probe_bind_address)

    def _port_of(self, address: str) -> int | None:
        parsed = parse_bind_address(address)
        for server in self._servers:
            if parsed is not None and server.address == parsed:
                return server.port
        return None

    def _informers_synced(self) -> str | None:
        if not self._cache_started:
            return "cache not started"
        waiting = [repr(i) for i in self._cache.informers if not i.synced]
        return f"not synced: {', '.join(waiting)}" if waiting else None

    # -- running ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Begin the graceful shutdown; ``run()`` returns once it is complete."""
        self._stop.set()

    async def run(self) -> None:
        """Run until stopped; see the module docstring for the order of things."""
        if self._started:
            raise RuntimeError("a manager runs once")
        self._started = True
        self._install_signal_handlers()
        lag = asyncio.create_task(
            metrics.watch_event_loop_lag(self.options.event_loop_lag_interval), name="event-loop-lag"
        )
        try:
            await self._start_http()
            await self._cache.start()
            self._cache_started = True
            for runnable in self._runnables:
                if not runnable.needs_leader:
                    self._start_runnable(runnable)
            if self._elector is not None:
                self._start_election(self._elector)
            else:
                self._start_leading()
            _log.info(
                "manager started",
                leader_election=self.options.leader_election,
                controllers=list(self._controllers),
                metrics_port=self.metrics_port,
                health_probe_port=self.health_probe_port,
            )
            await self._stop.wait()
        finally:
            try:
                await self._shutdown()
            finally:
                lag.cancel()
                await asyncio.gather(lag, return_exceptions=True)
                self._remove_signal_handlers()
        if self._error is not None:
            raise self._error

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._stop.set()

    def _watch_task(self, task: asyncio.Task[None], what: str) -> None:
        def done(task: asyncio.Task[None]) -> None:
            # Errors count even mid-shutdown (a lease lost while draining must still exit non-zero);
            # only our own cancellations and the release of the lease are quiet.
            if task.cancelled():
                return
            error = task.exception()
            if error is None:
                return
            if isinstance(error, LeaderElectionLost):
                # The elector logged why; say what happens now, without a pointless traceback.
                _log.error(
                    "leader election lost; shutting down and exiting so this replica restarts as a follower",
                    lease=f"{self.options.leader_election_namespace}/{self.options.leader_election_id}",
                    error=str(error),
                )
            else:
                _log.error(f"{what} failed; stopping the manager", exc_info=error)
            self._fail(error)

        task.add_done_callback(done)

    def _start_runnable(self, runnable: _Runnable) -> None:
        runnable.task = asyncio.create_task(runnable.fn(), name=f"runnable {runnable.name}")
        self._watch_task(runnable.task, f"runnable {runnable.name}")

    def _start_leading(self) -> None:
        if self._leader_started or self._stop.is_set():
            return
        self._leader_started = True
        self._leading = True
        for controller in self._controllers.values():
            task = asyncio.create_task(controller.run(), name=f"controller {controller.name}")
            self._watch_task(task, f"controller {controller.name}")
            self._controller_tasks.append(task)
        for runnable in self._runnables:
            if runnable.needs_leader:
                self._start_runnable(runnable)

    def _stop_leading(self) -> None:
        """The elector's ``on_stopped``: when we release the lease our writers are done already; on a
        lost lease (the elector then raises ``LeaderElectionLost``, which stops the manager) another
        replica may lead already, so nothing of ours may write a moment longer, even mid-drain."""
        self._leading = False
        if self._releasing:
            return
        # Events are writes of the term too: what is queued (or recorded by a reconcile as it is
        # cancelled) must not reach the API server under a lease that is someone else's now.
        for recorder in self._recorders.values():
            recorder.stop()
        for task in self._controller_tasks:
            task.cancel()
        for runnable in self._runnables:
            if runnable.needs_leader and runnable.task is not None:
                runnable.task.cancel()

    def _start_election(self, elector: LeaderElector) -> None:
        self._elector_task = asyncio.create_task(
            elector.run(on_started=self._start_leading, on_stopped=self._stop_leading),
            name="leader-election",
        )
        self._watch_task(self._elector_task, "leader election")

    async def _start_http(self) -> None:
        probes = parse_bind_address(self.options.health_probe_bind_address)
        metrics_at = parse_bind_address(self.options.metrics_bind_address)
        routes_by_address: dict[tuple[str | None, int], list[Any]] = {}
        if probes is not None:
            routes_by_address.setdefault(probes, []).extend(probe_routes(self._healthz, self._readyz))
        if metrics_at is not None:
            routes_by_address.setdefault(metrics_at, []).extend(metrics_routes(metrics.REGISTRY))
        for address, routes in routes_by_address.items():
            server = HttpServer(address, routes)
            await server.start()
            self._servers.append(server)

    # -- stopping ---------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        timeout = self.options.graceful_shutdown_timeout
        _log.info("shutting down", graceful_shutdown_timeout=timeout)
        try:
            async with asyncio.timeout(timeout):
                await self._until_hard_stop(self._graceful())
        except TimeoutError:
            _log.warning("graceful shutdown timed out; cancelling what is left", timeout=timeout)
        # Whatever the graceful path left running (or a timeout / second signal interrupted).
        await self._cancel_all()
        _log.info("manager stopped")

    async def _until_hard_stop(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        hard = asyncio.ensure_future(self._hard_stop.wait())
        try:
            await asyncio.wait({task, hard}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hard.cancel()
            if not task.done():
                task.cancel()
                _log.warning("second signal: cancelling everything now")
            await asyncio.gather(task, hard, return_exceptions=True)

    async def _graceful(self) -> None:
        # 1. Stop taking work; let the reconciles in flight finish.
        for controller in self._controllers.values():
            controller.stop()
        if self._controller_tasks:
            await asyncio.gather(*self._controller_tasks, return_exceptions=True)
        # 2. Runnables have no stop protocol but cancellation.
        await self._cancel_runnables()
        # 3. Write the events still queued: they are writes too, and belong to our term as leader.
        for recorder in self._recorders.values():
            await recorder.close()
        # 4. Release the lease: nothing of ours writes any more, so a successor may start at once.
        await self._stop_election()
        # 5. Close the watches.
        await self._cache.stop()
        # 6. Stop serving probes and metrics last, so they answer while the rest shuts down.
        await self._stop_http()

    async def _cancel_runnables(self) -> None:
        tasks = [r.task for r in self._runnables if r.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _stop_http(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            with contextlib.suppress(Exception):
                await server.stop()

    async def _cancel_all(self) -> None:
        for task in self._controller_tasks:
            task.cancel()
        await asyncio.gather(*self._controller_tasks, return_exceptions=True)
        await self._cancel_runnables()
        for recorder in self._recorders.values():
            await recorder.close(grace=0)
        await self._stop_election()
        await self._cache.stop()
        await self._stop_http()

    async def _stop_election(self) -> None:
        if self._elector_task is not None:
            self._releasing = True
            self._elector_task.cancel()
            await asyncio.gather(self._elector_task, return_exceptions=True)
        self._leading = False

    # -- signals ----------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        if not self.options.install_signal_handlers:
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                _log.warning("cannot install a signal handler here", signal=sig.name)
                continue
            self._signals.append(sig)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        self._signals.clear()

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stop.is_set():
            self._hard_stop.set()
            return
        _log.info("signal received; shutting down gracefully", signal=sig.name)
        self._stop.set()
