"""The controller builder: wiring that reads like a sentence.

    (manager.controller("mcp")
        .for_kind(GVK("agentkube.io", "v1alpha1", "MCP"), predicates=[GenerationChanged()])
        .owns(GVK("apps", "v1", "Deployment"))
        .watches(GVK("", "v1", "Secret"), map_to=secret_to_mcps)
        .with_options(max_concurrent_reconciles=2)
        .complete(reconciler))

What a caller may rely on:

- ``for_kind``: the primary kind; each of its events enqueues the object itself.
- ``owns``: a child kind; each event enqueues the primary named by the child's controller owner
  reference (``controller: true``, the primary's group and kind). Owned kinds may be cached
  metadata-only (``metadata_only=True``): owner references live in the metadata.
- ``watches``: any kind; each event enqueues what ``map_to(obj)`` returns (or what a custom
  ``handler`` returns).
- ``owns`` and ``watches`` take ``transform=``: what is stored of each object (default: the cache's
  transform, which drops ``metadata.managedFields``). A kind is cached one way for the whole manager,
  so every declaration of a kind must name the same transform: ``complete`` raises ``ValueError``
  naming the controller, the kind and both transforms otherwise.
- ``with_event_filter``: predicates applied to every watch, before the watch's own.
- ``with_options``: ``max_concurrent_reconciles`` (default 1), ``rate_limiter`` (default per-key
  5 ms -> 1000 s with a 10/s, burst 100 bucket), ``cache_sync_timeout`` (default 120 s),
  ``expected_errors`` (default ``DEFAULT_EXPECTED_ERRORS``; see ``controller``),
  ``use_priority_queue`` (default True: initial-list and resync events wait behind real changes),
  set all at once.
- ``complete(reconciler)`` creates the informers in the manager's cache, builds the ``Controller``,
  registers it with the manager (names must be unique per manager: they label metrics) and returns it.
  Nothing runs until ``manager.run()``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agentkube.runtime.controller import DEFAULT_EXPECTED_ERRORS, Controller
from agentkube.runtime.gvk import GVK
from agentkube.runtime.handler import (
    EnqueueRequestForObject,
    EnqueueRequestForOwner,
    EnqueueRequestsFromMapFunc,
    EventHandler,
    MapFunc,
)
from agentkube.runtime.predicate import Predicate
from agentkube.runtime.ratelimiter import RateLimiter
from agentkube.runtime.reconcile import ReconcileFunc, Reconciler
from agentkube.runtime.reflector import Transform

if TYPE_CHECKING:
    from agentkube.runtime.manager import Manager

__all__ = ["Builder"]


@dataclass
class _Watch:
    gvk: GVK
    handler: EventHandler | None  # None: filled in at complete() (the owner handler needs the primary)
    predicates: tuple[Predicate, ...]
    metadata_only: bool = False
    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None
    transform: Transform | None = None  # None: the cache's


@dataclass
class _Options:
    max_concurrent_reconciles: int = 1
    rate_limiter: RateLimiter | None = None
    cache_sync_timeout: float | None = 120.0
    expected_errors: tuple[type[BaseException], ...] = field(default=DEFAULT_EXPECTED_ERRORS)
    use_priority_queue: bool = True


class Builder:
    """Collects what a controller watches; ``complete`` builds it. Get one from ``manager.controller``."""

    def __init__(self, manager: Manager, name: str) -> None:
        self._manager = manager
        self._name = name
        self._primary: _Watch | None = None
        self._owned: list[_Watch] = []
        self._watches: list[_Watch] = []
        self._filters: tuple[Predicate, ...] = ()
        self._options = _Options()
        self._completed = False

    def for_kind(
        self,
        gvk: GVK,
        *,
        predicates: Sequence[Predicate] = (),
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> Builder:
        """Reconcile objects of ``gvk``: each event enqueues the object itself.

        namespace: cache only this namespace. Default None: the manager's cache scope.
        label_selector, field_selector: cache only matching objects. Default: all.
        """
        if self._primary is not None:
            raise ValueError(f"controller {self._name!r}: for_kind was already called ({self._primary.gvk})")
        self._primary = _Watch(
            gvk,
            EnqueueRequestForObject(),
            tuple(predicates),
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
        )
        return self

    def owns(
        self,
        gvk: GVK,
        *,
        predicates: Sequence[Predicate] = (),
        metadata_only: bool = False,
        transform: Transform | None = None,
    ) -> Builder:
        """Watch children of ``gvk``; each event enqueues the primary that controls the child.

        metadata_only: cache only the children's metadata (less memory; reads return metadata
            only). Default False.
        transform: applied to each child before it is cached. Default None: the cache's transform
            (drops ``metadata.managedFields``). Must be the same function wherever ``gvk`` is declared.
        """
        self._owned.append(
            _Watch(gvk, None, tuple(predicates), metadata_only=metadata_only, transform=transform)
        )
        return self

    def watches(
        self,
        gvk: GVK,
        *,
        map_to: MapFunc | None = None,
        handler: EventHandler | None = None,
        predicates: Sequence[Predicate] = (),
        metadata_only: bool = False,
        namespace: str | None = None,
        label_selector: str | None = None,
        transform: Transform | None = None,
    ) -> Builder:
        """Watch ``gvk``; each event enqueues ``map_to(obj)`` (or ``handler(event)``: give one of them).

        map_to must read only the cache (e.g. ``cache.list(primary, index=("secret", key))``).
        transform: applied to each object before it is cached (e.g. to keep no Secret values).
            Default None: the cache's transform (drops ``metadata.managedFields``). Must be the same
            function wherever ``gvk`` is declared.
        """
        chosen: EventHandler
        if map_to is not None and handler is None:
            chosen = EnqueueRequestsFromMapFunc(map_to)
        elif handler is not None and map_to is None:
            chosen = handler
        else:
            raise ValueError(
                f"controller {self._name!r}: watches({gvk}) needs exactly one of map_to, handler"
            )
        self._watches.append(
            _Watch(
                gvk,
                chosen,
                tuple(predicates),
                metadata_only=metadata_only,
                namespace=namespace,
                label_selector=label_selector,
                transform=transform,
            )
        )
        return self

    def with_event_filter(self, *predicates: Predicate) -> Builder:
        """Apply ``predicates`` to the events of every watch of this controller."""
        self._filters = (*self._filters, *predicates)
        return self

    def with_options(
        self,
        *,
        max_concurrent_reconciles: int = 1,
        rate_limiter: RateLimiter | None = None,
        cache_sync_timeout: float | None = 120.0,
        expected_errors: Iterable[type[BaseException]] = DEFAULT_EXPECTED_ERRORS,
        use_priority_queue: bool = True,
    ) -> Builder:
        """Set the controller's options, all at once (as controller-runtime's ``WithOptions``).

        max_concurrent_reconciles: workers reconciling different objects in parallel. Default 1.
        rate_limiter: backoff of failed requests. Default None: per-key 5 ms doubling to 1000 s,
            and 10/s with a burst of 100 over all keys.
        cache_sync_timeout: seconds to wait for the watched kinds to sync before ``run`` fails.
            Default 120; None waits forever.
        expected_errors: exceptions that are failures of the world, not bugs (logged without a
            traceback, not counted as panics). Default ``DEFAULT_EXPECTED_ERRORS``.
        use_priority_queue: events of the initial list and of resyncs (no change) are queued at low
            priority, behind every real change. Default True (controller-runtime 0.23's default);
            False queues every event first come, first served.
        """
        self._options = _Options(
            max_concurrent_reconciles,
            rate_limiter,
            cache_sync_timeout,
            tuple(expected_errors),
            use_priority_queue,
        )
        return self

    def complete(self, reconciler: Reconciler | ReconcileFunc) -> Controller:
        """Build the controller, register it with the manager and return it."""
        if self._completed:
            raise RuntimeError(f"controller {self._name!r}: complete() was already called")
        if self._primary is None and self._owned:
            raise ValueError(f"controller {self._name!r}: owns() needs for_kind() to know the owner kind")
        if self._primary is None and not self._watches:
            raise ValueError(f"controller {self._name!r}: nothing to watch; call for_kind() or watches()")
        options = self._options
        controller = Controller(
            self._name,
            reconciler,
            max_concurrent_reconciles=options.max_concurrent_reconciles,
            rate_limiter=options.rate_limiter,
            cache_sync_timeout=options.cache_sync_timeout,
            expected_errors=options.expected_errors,
            use_priority_queue=options.use_priority_queue,
        )
        cache = self._manager.cache
        watches = [self._primary] if self._primary is not None else []
        if self._primary is not None:
            primary = self._primary.gvk
            for owned in self._owned:
                owner_handler = EnqueueRequestForOwner(primary)
                owned.handler = owner_handler
                controller.add_startup_hook(self._owner_scope_hook(owner_handler))
                watches.append(owned)
        watches.extend(self._watches)
        for watch in watches:
            try:
                informer = cache.source(
                    watch.gvk,
                    metadata_only=watch.metadata_only,
                    namespace=watch.namespace,
                    label_selector=watch.label_selector,
                    field_selector=watch.field_selector,
                    transform=watch.transform,
                )
            except ValueError as exc:
                raise ValueError(f"controller {self._name!r}: {exc}") from exc
            assert watch.handler is not None
            controller.watch(informer, watch.handler, *self._filters, *watch.predicates)
        self._manager.add_controller(controller)
        self._completed = True
        return controller

    def _owner_scope_hook(self, handler: EnqueueRequestForOwner) -> Callable[[], Awaitable[None]]:
        client = self._manager.client

        async def resolve_owner_scope() -> None:
            # A cluster-scoped owner of namespaced children is named without the child's namespace.
            # Runs after the caches synced, so discovery already knows the primary kind.
            handler.owner_namespaced = (await client.resource(handler.owner)).namespaced

        return resolve_owner_scope
