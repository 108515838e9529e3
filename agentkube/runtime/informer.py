"""An informer: one reflector, one store, and the handlers told about every change.

What a caller may rely on:

- One informer serves one kind under one scope (namespace, label and field selector, metadata-only or
  full objects). ``run`` keeps it current until cancelled and never raises for API errors.
- Handlers are plain functions called on the event loop, in the order they were added, after the store
  already shows the change. They must not block: enqueue a key and return. A handler that raises is
  logged with its traceback and the others (and the reflector) carry on.
- A handler added after the informer synced first gets every object in the store as ADDED, so a late
  joiner misses nothing; one added before gets the initial list as ADDED events like everyone else.
- With ``resync_period`` set, every object in the store is re-delivered that often as an event of type
  ``RESYNC`` (with ``old`` the same object), which handlers can tell apart from real changes. A resync is
  not a relist: it costs the API server nothing.
- ``agentkube_cache_objects{kind}`` counts the objects held by running informers of each kind.
- ``NamespacedInformers`` puts the informers of one kind in several namespaces behind the surface of
  one (handlers, sync, ``store`` reads), for a kind cached in a set of namespaces rather than one or
  all; it does not run them (the cache does).
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from agentkube.runtime.gvk import GVK, ObjectKey
from agentkube.runtime.metrics import CACHE_OBJECTS
from agentkube.runtime.reflector import (
    Backoff,
    Event,
    EventType,
    InitialList,
    Reflector,
    Transform,
    strip_managed_fields,
)
from agentkube.runtime.store import Indexer, Store

if TYPE_CHECKING:
    from agentkube.runtime.client import Client

__all__ = ["Event", "EventType", "Handler", "Informer", "NamespacedInformers"]

log = structlog.get_logger(__name__)

Handler = Callable[[Event], None]

# A resync of a large store yields to the event loop this often, so it never stalls other work.
_RESYNC_CHUNK = 1000


class Informer:
    """Caches one kind (in one scope) and tells handlers what changed."""

    def __init__(
        self,
        client: Client,
        gvk: GVK,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        metadata_only: bool = False,
        transform: Transform | None = strip_managed_fields,
        resync_period: float | None = None,
        indexers: Mapping[str, Indexer] | None = None,
        watch_timeout: tuple[int, int] = (20, 30),
        inactivity_timeout: float | None = None,
        backoff: Backoff | None = None,
        initial_list: InitialList = "auto",
    ) -> None:
        """
        namespace: cache only this namespace (ignored for cluster-scoped kinds). Default: all.
        label_selector, field_selector: server-side filters in the API's string syntax. Default: none.
        metadata_only: cache PartialObjectMetadata (apiVersion, kind, metadata only). Default False.
        transform: applied to each object before it is stored. Default ``strip_managed_fields``;
            None stores objects as the server sent them.
        resync_period: seconds between RESYNC re-deliveries of the whole store. Default None (never).
        indexers: extra indexes beyond namespace and owner uid. Default none.
        watch_timeout, inactivity_timeout, backoff, initial_list: see ``Reflector``.
        """
        if resync_period is not None and resync_period <= 0:
            raise ValueError(f"resync_period must be positive, got {resync_period}")
        self.gvk = gvk
        self.store = Store(indexers)
        self.resync_period = resync_period
        self.reflector = Reflector(
            client,
            gvk,
            self.store,
            self._dispatch,
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            metadata_only=metadata_only,
            transform=transform,
            watch_timeout=watch_timeout,
            inactivity_timeout=inactivity_timeout,
            backoff=backoff,
            initial_list=initial_list,
        )
        # A tuple, replaced on change: a handler that adds another while being called does not
        # disturb the loop delivering the current event.
        self._handlers: tuple[Handler, ...] = ()
        self._gauge = CACHE_OBJECTS.labels(kind=str(gvk))
        self._counted = 0
        self._running = False
        self._log = log.bind(kind=str(gvk), namespace=namespace)

    def __repr__(self) -> str:
        r = self.reflector
        scope = ", ".join(
            f"{name}={value!r}"
            for name, value in (
                ("namespace", r.namespace),
                ("label_selector", r.label_selector),
                ("field_selector", r.field_selector),
            )
            if value
        )
        flavour = " metadata-only" if r.metadata_only else ""
        return f"<Informer {self.gvk}{flavour}{' ' + scope if scope else ''}>"

    @property
    def namespace(self) -> str | None:
        return self.reflector.namespace

    @property
    def label_selector(self) -> str | None:
        return self.reflector.label_selector

    @property
    def field_selector(self) -> str | None:
        return self.reflector.field_selector

    @property
    def metadata_only(self) -> bool:
        return self.reflector.metadata_only

    @property
    def synced(self) -> bool:
        """True once the first list is in the store and delivered to the handlers."""
        return self.reflector.synced

    @property
    def resource_version(self) -> str:
        """The last resourceVersion seen (list, event or bookmark)."""
        return self.reflector.resource_version

    def add_handler(self, handler: Handler) -> None:
        self._handlers = (*self._handlers, handler)
        if self.synced:
            for obj in self.store.list():
                self._call(handler, Event(EventType.ADDED, obj))

    def remove_handler(self, handler: Handler) -> None:
        """Stop calling ``handler`` (a no-op when it was never added)."""
        self._handlers = tuple(h for h in self._handlers if h is not handler)

    def add_indexer(self, name: str, fn: Indexer) -> None:
        self.store.add_indexer(name, fn)

    async def wait_for_sync(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until synced; False when ``timeout`` seconds pass first."""
        return await self.reflector.wait_for_sync(timeout)

    async def run(self) -> None:
        """Keep the store current and deliver events until cancelled."""
        if self._running:
            raise RuntimeError(f"{self!r} is already running")
        self._running = True
        self._count()
        try:
            if self.resync_period is None:
                await self.reflector.run()
            else:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self.reflector.run())
                    tasks.create_task(self._resync(self.resync_period))
        finally:
            # The gauge counts what running informers keep current; a stopped one's store is stale.
            self._gauge.dec(self._counted)
            self._counted = 0
            self._running = False

    def _count(self) -> None:
        n = len(self.store)
        if n != self._counted:
            self._gauge.inc(n - self._counted)
            self._counted = n

    def _dispatch(self, event: Event) -> None:
        self._count()
        for handler in self._handlers:
            self._call(handler, event)

    def _call(self, handler: Handler, event: Event) -> None:
        try:
            handler(event)
        except Exception:
            self._log.exception(
                "event handler failed",
                handler=getattr(handler, "__qualname__", repr(handler)),
                change=event.type.value,
                object=_describe(event.obj),
            )

    async def _resync(self, period: float) -> None:
        await self.reflector.wait_for_sync()
        while True:
            await asyncio.sleep(period)
            objs = self.store.list()
            for start in range(0, len(objs), _RESYNC_CHUNK):
                if start:
                    await asyncio.sleep(0)
                for obj in objs[start : start + _RESYNC_CHUNK]:
                    # The store may have moved on while we yielded: re-deliver only what it holds now.
                    if start and self.store.get(ObjectKey.of(obj)) is not obj:
                        continue
                    event = Event(EventType.RESYNC, obj, obj)
                    for handler in self._handlers:
                        self._call(handler, event)


def _describe(obj: dict[str, Any]) -> str:
    try:
        return str(ObjectKey.of(obj))
    except (KeyError, TypeError):
        return "<unnamed>"


class _UnionStore:
    """Reads over the stores of several namespace-scoped informers of one kind (disjoint by namespace)."""

    def __init__(self, members: Sequence[Informer]) -> None:
        self._by_namespace = {str(i.namespace): i.store for i in members}

    def get(self, key: ObjectKey) -> dict[str, Any] | None:
        store = self._by_namespace.get(str(key.namespace))
        return store.get(key) if store is not None else None

    def list(self) -> builtins.list[dict[str, Any]]:
        return [obj for store in self._by_namespace.values() for obj in store.list()]

    def keys(self) -> builtins.list[ObjectKey]:
        return [key for store in self._by_namespace.values() for key in store.keys()]  # noqa: SIM118

    def by_index(self, index: str, value: str) -> builtins.list[dict[str, Any]]:
        return [obj for store in self._by_namespace.values() for obj in store.by_index(index, value)]

    def snapshot(self) -> Mapping[ObjectKey, dict[str, Any]]:
        merged: dict[ObjectKey, dict[str, Any]] = {}
        for store in self._by_namespace.values():
            merged.update(store.snapshot())
        return merged

    def add_indexer(self, name: str, fn: Indexer) -> None:
        for store in self._by_namespace.values():
            store.add_indexer(name, fn)

    def __len__(self) -> int:
        return sum(len(store) for store in self._by_namespace.values())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, ObjectKey) and self.get(key) is not None


class NamespacedInformers:
    """One kind cached in a set of namespaces: the members' events reach every handler, ``store``
    reads across them, and it is synced once all of them are. Built by the cache for a kind whose
    ``KindOptions.namespaces`` names several; the cache runs the members."""

    def __init__(self, gvk: GVK, members: Sequence[Informer]) -> None:
        if not members or any(m.gvk != gvk or m.namespace is None for m in members):
            raise ValueError(f"{gvk}: NamespacedInformers needs namespace-scoped informers of that kind")
        self.gvk = gvk
        self.members = tuple(members)
        self.store = _UnionStore(self.members)

    def __repr__(self) -> str:
        return f"<NamespacedInformers {self.gvk} in {', '.join(str(m.namespace) for m in self.members)}>"

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(str(m.namespace) for m in self.members)

    @property
    def namespace(self) -> str | None:
        return None

    @property
    def label_selector(self) -> str | None:
        return self.members[0].label_selector

    @property
    def field_selector(self) -> str | None:
        return self.members[0].field_selector

    @property
    def metadata_only(self) -> bool:
        return self.members[0].metadata_only

    @property
    def synced(self) -> bool:
        return all(m.synced for m in self.members)

    def add_handler(self, handler: Handler) -> None:
        for member in self.members:
            member.add_handler(handler)

    def remove_handler(self, handler: Handler) -> None:
        for member in self.members:
            member.remove_handler(handler)

    def add_indexer(self, name: str, fn: Indexer) -> None:
        self.store.add_indexer(name, fn)

    async def wait_for_sync(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until every member synced; False when ``timeout`` seconds pass first."""
        try:
            async with asyncio.timeout(timeout):
                for member in self.members:
                    await member.wait_for_sync()
        except TimeoutError:
            return False
        return True
