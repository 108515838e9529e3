"""The reflector: keeps a ``Store`` equal to what the API server holds for one kind, and says what changed.

What a caller may rely on:

- The first list (and every relist) is a streaming list where the server supports it (WatchList,
  kube-apiserver 1.32 and later by default): one watch with ``sendInitialEvents=true`` and
  ``resourceVersionMatch=NotOlderThan`` that sends every object as ADDED and then a bookmark
  annotated ``k8s.io/initial-events-end``, so the initial state arrives object by object instead of
  as one body to buffer and decode. A server that refuses it (400/422) or ignores it (bookmarks
  without the annotation) gets a paginated consistent list instead (``limit`` pages of 500 followed
  through ``continue``; an expired continue token starts the list over), from then on. Neither has a
  total timeout; each has an inactivity timeout, so a big first sync is never cut off for being big.
  ``initial_list`` forces one way (``"stream"`` or ``"paginate"``); ``last_list_mode`` says which
  the last (re)list used.
- Then one watch after another, each with ``allowWatchBookmarks`` and a random ``timeoutSeconds`` in
  [20, 30] (so watches of many processes do not all end at the same moment), resuming from the last
  resourceVersion seen. Bookmarks move that resourceVersion on even when nothing of ours changes, so a
  resumed watch rarely starts from a version etcd has compacted away. kube-apiserver sends a bookmark
  2 s before ``timeoutSeconds`` ends a watch, so a healthy watch is never silent for longer than
  that; the client's inactivity timeout (``timeoutSeconds`` + 5 s, at most 35 s) ends a watch whose
  connection went silent (half-open TCP, or a stopped server, looks exactly like a quiet watch), the
  reflector counts it (``agentkube_watch_stalls_total{kind}``) and resumes from its resourceVersion.
  Short watches cost a request every half minute per informer and nothing else: they resume from the
  watch cache.
- A watch (or list) answered with 410 Gone means the resourceVersion is compacted away: the reflector
  relists without a resourceVersion (a consistent read) and delivers the difference between the store
  and the fresh list: objects that appeared as ADDED, changed ones as MODIFIED, and objects deleted
  while the watch was down as DELETED (carrying the last state the store knew). Objects whose
  resourceVersion did not change produce nothing, so no event is lost or repeated. An object deleted and
  recreated under the same name while disconnected (new uid) is delivered as DELETED then ADDED.
- The store is updated before the event for a change is delivered, so a handler reading the cache
  sees at least the state its event describes.
- ``run`` never raises for API or connection errors: it logs them, waits a jittered exponential
  backoff (0.8 s doubling to 30 s, forgotten after 2 minutes without failure) and tries again, for as
  long as it runs. A kind the server does not serve (a CRD not installed yet) is retried the same way,
  and discovery is refreshed each time so a CRD installed later is picked up.
- ``run`` may be cancelled and called again: it resumes watching from the last resourceVersion with the
  store it has (and relists if that version is gone by then).

Objects pass through the transform before they are stored: ``strip_managed_fields`` by default, which
drops ``metadata.managedFields`` (often half of an object's bytes, never needed by a controller). A
transform that raises fails closed: the object is left out of the store (a cached earlier state of it
is removed and reported DELETED), counted in ``agentkube_cache_transform_failures_total{kind}`` and
logged by name and resourceVersion only (never its content, nor the exception's text, which may
quote it); the watch goes on past it. The
reflector then shares repeated strings in the metadata (namespace, labels, owner references, ...)
between objects, which is most of what makes a cached object small.
"""

from __future__ import annotations

import asyncio
import enum
import random
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import structlog

from agentkube.runtime import metrics
from agentkube.runtime.errors import (
    BadRequest,
    Gone,
    Invalid,
    KindNotServed,
    NotFound,
    TooManyRequests,
    WatchStalled,
    retry_after,
)
from agentkube.runtime.gvk import GVK, ObjectKey
from agentkube.runtime.store import Store

if TYPE_CHECKING:
    from agentkube.runtime.client import Client

__all__ = [
    "INITIAL_EVENTS_END",
    "Backoff",
    "Event",
    "EventType",
    "InitialList",
    "Reflector",
    "Transform",
    "relist_events",
    "retry_delay",
    "strip_managed_fields",
]

log = structlog.get_logger(__name__)

Transform = Callable[[dict[str, Any]], dict[str, Any]]
InitialList = Literal["auto", "stream", "paginate"]

# The bookmark that ends the initial state of a streaming list (WatchList).
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
# timeoutSeconds of a streaming list: long, since the initial state of a big kind takes a while; the
# stream is closed as soon as that state is in, and ordinary (short) watches take over.
_STREAM_TIMEOUT = (300, 600)


class EventType(enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    # The informer's periodic re-delivery of an unchanged object; never produced by the reflector.
    RESYNC = "RESYNC"


@dataclass(frozen=True, slots=True)
class Event:
    """One change to the cache.

    ``obj`` is the object as stored now (for DELETED: its last state: the final one from a watch, the
    last one the cache knew when the delete was found by a relist). ``old`` is the object it replaced
    (MODIFIED) or removed (DELETED), when the store held one. ``listed`` is True for the events of
    a (re)list's difference: the state the object is in now, with any states in between skipped
    (an event from a watch follows the one before it, so nothing is skipped).
    """

    type: EventType
    obj: dict[str, Any]
    old: dict[str, Any] | None = None
    listed: bool = False


def strip_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The default transform: drop ``metadata.managedFields`` (server-side apply bookkeeping)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


_intern = sys.intern


def _intern_metadata(obj: dict[str, Any]) -> None:
    """Share the strings that repeat across objects of a kind (dict keys are shared by orjson already).

    Only values that repeat are worth it: a unique string costs an entry in the intern table and saves
    nothing. Interned strings are freed when no object uses them any more.
    """
    for field in ("apiVersion", "kind"):
        value = obj.get(field)
        if type(value) is str:
            obj[field] = _intern(value)
    meta = obj.get("metadata")
    if type(meta) is not dict:
        return
    for field in ("namespace", "generateName", "creationTimestamp"):
        value = meta.get(field)
        if type(value) is str:
            meta[field] = _intern(value)
    labels = meta.get("labels")
    if type(labels) is dict:
        for k, v in labels.items():
            if type(v) is str:
                labels[k] = _intern(v)
    finalizers = meta.get("finalizers")
    if type(finalizers) is list:
        meta["finalizers"] = [_intern(f) if type(f) is str else f for f in finalizers]
    refs = meta.get("ownerReferences")
    if type(refs) is list:
        for ref in refs:
            if type(ref) is dict:
                for field in ("apiVersion", "kind", "name", "uid"):
                    value = ref.get(field)
                    if type(value) is str:
                        ref[field] = _intern(value)


class Backoff:
    """Jittered exponential backoff: ``initial`` doubling up to ``cap``, forgotten after ``reset_after``
    seconds without a failure.

    Each delay is drawn from ``[base * (1 - jitter), base]``: the stated figures are upper bounds (a
    reflector never waits more than 30 s once the server is back), and processes that failed together
    do not retry together. ``clock`` and ``rng`` are injectable for tests.
    """

    def __init__(
        self,
        *,
        initial: float = 0.8,
        cap: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.2,
        reset_after: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not 0 < initial <= cap:
            raise ValueError(f"backoff needs 0 < initial <= cap, got initial={initial} cap={cap}")
        if factor < 1:
            raise ValueError(f"backoff factor must be >= 1, got {factor}")
        if not 0 <= jitter < 1:
            raise ValueError(f"backoff jitter must be in [0, 1), got {jitter}")
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self.reset_after = reset_after
        self._clock = clock
        self._rng = rng
        self._base = initial
        self._retry_at: float | None = None

    @property
    def base(self) -> float:
        """The upper bound of the next delay (before any reset for a healthy stretch)."""
        return self._base

    def next_delay(self) -> float:
        """Record a failure now and return how long to wait before the next attempt."""
        now = self._clock()
        # Healthy time counts from the moment the previous retry was due, not from the failure, so a
        # long wait is not mistaken for a long healthy stretch.
        if self._retry_at is not None and now - self._retry_at >= self.reset_after:
            self._base = self.initial
        delay = self._base * (1.0 - self.jitter * self._rng())
        self._base = min(self.cap, self._base * self.factor)
        self._retry_at = now + delay
        return delay

    def reset(self) -> None:
        self._base = self.initial
        self._retry_at = None


# A 429 that names no wait still means "not now": never retried sooner than this.
_THROTTLED_MIN_WAIT = 1.0


def retry_delay(backoff: Backoff, error: BaseException) -> float:
    """The wait before the next try after ``error``: the backoff's next delay, but never less than
    the ``Retry-After`` the server gave (``errors.retry_after``), nor less than 1 s after a 429."""
    delay = backoff.next_delay()
    asked = retry_after(error)
    if asked is None and isinstance(error, TooManyRequests):
        asked = _THROTTLED_MIN_WAIT
    return max(delay, asked or 0.0)


def relist_events(
    old: Mapping[ObjectKey, dict[str, Any]], new: Mapping[ObjectKey, dict[str, Any]]
) -> list[Event]:
    """What changed between two store contents: the events a relist delivers to handlers.

    Same key and resourceVersion: nothing. Same key, other resourceVersion: MODIFIED. Same key, other
    uid (deleted and recreated meanwhile): DELETED of the old, then ADDED of the new. Keys only in
    ``new``: ADDED; keys only in ``old``: DELETED with the old object. Every one is ``listed``.
    """
    events: list[Event] = []
    for key, obj in new.items():
        prev = old.get(key)
        if prev is None:
            events.append(Event(EventType.ADDED, obj, listed=True))
            continue
        meta, prev_meta = obj["metadata"], prev["metadata"]
        if meta.get("resourceVersion") == prev_meta.get("resourceVersion"):
            continue
        if meta.get("uid") != prev_meta.get("uid"):
            events.append(Event(EventType.DELETED, prev, prev, listed=True))
            events.append(Event(EventType.ADDED, obj, listed=True))
        else:
            events.append(Event(EventType.MODIFIED, obj, prev, listed=True))
    for key, prev in old.items():
        if key not in new:
            events.append(Event(EventType.DELETED, prev, prev, listed=True))
    return events


class _StreamingUnsupported(Exception):
    """The server took a streaming list for an ordinary watch (it ignored ``sendInitialEvents``)."""


class _WatchEndedEarly(Exception):
    """The server closed a watch at once without sending anything: treated as a failure, so a server
    that keeps doing so is retried with backoff instead of in a hot loop."""


class Reflector:
    """List, then watch, one kind into one store; report every change to ``emit``."""

    def __init__(
        self,
        client: Client,
        gvk: GVK,
        store: Store,
        emit: Callable[[Event], None],
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        metadata_only: bool = False,
        transform: Transform | None = strip_managed_fields,
        watch_timeout: tuple[int, int] = (20, 30),
        inactivity_timeout: float | None = None,
        page_size: int = 500,
        backoff: Backoff | None = None,
        initial_list: InitialList = "auto",
    ) -> None:
        """
        namespace: watch only this namespace (ignored for cluster-scoped kinds). Default: all.
        label_selector, field_selector: server-side filters, in the API's string syntax.
        metadata_only: list and watch PartialObjectMetadata; objects keep apiVersion, kind, metadata.
        transform: applied to every object before it is stored. Default ``strip_managed_fields``.
        watch_timeout: bounds of the random ``timeoutSeconds`` of each watch. Default (20, 30).
        inactivity_timeout: seconds without a byte after which a watch is considered dead and
            resumed. Default: the client's (``timeoutSeconds`` + 5 s with bookmarks, at most 65 s).
        page_size: ``limit`` of each list page of a paginated list. Default 500.
        backoff: retry policy after failures. Default ``Backoff()`` (0.8 s doubling to 30 s).
        initial_list: how to (re)list: ``"auto"`` (stream where the server can, else paginate),
            ``"stream"`` or ``"paginate"``. Default ``"auto"``.
        """
        if initial_list not in ("auto", "stream", "paginate"):
            raise ValueError(f"initial_list must be 'auto', 'stream' or 'paginate', got {initial_list!r}")
        lo, hi = watch_timeout
        if not 0 < lo <= hi:
            raise ValueError(f"watch_timeout needs 0 < low <= high, got {watch_timeout}")
        self.gvk = gvk
        self.store = store
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.metadata_only = metadata_only
        self._client = client
        self._emit = emit
        self._transform = transform
        self._watch_timeout = (lo, hi)
        self._inactivity_timeout = inactivity_timeout
        self._page_size = page_size
        self._backoff = backoff or Backoff()
        self._synced = asyncio.Event()
        self._transform_failures = metrics.CACHE_TRANSFORM_FAILURES.labels(kind=str(gvk))
        # Where the next watch starts. Empty until the first list; then moved by every event and bookmark.
        self.resource_version = ""
        self.initial_list: InitialList = initial_list
        # Whether the server streams lists: None until the first try tells.
        self._streams: bool | None = {"auto": None, "stream": True, "paginate": False}[initial_list]
        self.last_list_mode: Literal["", "stream", "paginate"] = ""
        self._must_list = True
        self._stalls = metrics.WATCH_STALLS.labels(kind=str(gvk))
        # True while the watch running is the first after a list: a 410 then is not the usual "too old
        # after a disconnect" but a server that cannot serve its own list's version, and relisting at
        # once would loop hot.
        self._list_is_fresh = False
        self._first_watch_after_list = False
        self._scope: str | None = None
        self._scope_known = False
        self.lists = 0
        self.watches = 0
        self._log = log.bind(
            kind=str(gvk),
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            metadata_only=metadata_only,
        )

    @property
    def synced(self) -> bool:
        """True once the first list is in the store and its events are delivered."""
        return self._synced.is_set()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until synced; False when ``timeout`` seconds pass first."""
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def resume_from(self, resource_version: str) -> None:
        """Make the next ``run`` watch from ``resource_version`` instead of listing first.

        For a store that already holds the state at that version (one kept from an earlier run, or a
        benchmark replaying history). If the version is gone by then, the usual relist follows.
        """
        self.resource_version = resource_version
        self._must_list = False

    async def run(self) -> None:
        """List and watch until cancelled. Never raises for API or connection errors."""
        while True:
            delay: float
            try:
                if self._must_list:
                    if self._streams is False:
                        await self._list()
                    else:
                        await self._stream_list()
                await self._watch()
                continue
            except Gone as exc:
                listing = self._must_list
                self._must_list = True
                if not listing and not self._first_watch_after_list:
                    # The usual case: the watch's resourceVersion was compacted away while we were
                    # disconnected. Nothing is wrong with the server, so relist at once.
                    self._log.info("watch resourceVersion expired, relisting", error=str(exc))
                    continue
                # A 410 from the list itself, or from a watch straight after a list.
                delay = self._backoff.next_delay()
                self._log.warning("list expired, relisting", error=str(exc), retry_in=round(delay, 3))
            except (KindNotServed, NotFound) as exc:
                # The CRD may be installed later (or was removed and discovery is stale): forget what
                # discovery said so the next try asks again.
                self._client.forget_discovery(self.gvk)
                self._scope_known = False
                delay = self._backoff.next_delay()
                self._log.warning("kind not served yet", error=str(exc), retry_in=round(delay, 3))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._must_list and self._streams is None and _refuses_streaming(exc):
                    # Decided once: this server pages its lists, and the next try does so at once.
                    self._streams = False
                    self._log.info(
                        "the API server does not stream lists; using paginated lists",
                        error=str(exc) or type(exc).__name__,
                    )
                    continue
                if isinstance(exc, WatchStalled):
                    self._stalls.inc()
                delay = retry_delay(self._backoff, exc)
                phase = "list" if self._must_list else "watch"
                self._log.warning(
                    f"{phase} failed",
                    error=str(exc) or type(exc).__name__,
                    error_type=type(exc).__name__,
                    resource_version=self.resource_version,
                    retry_in=round(delay, 3),
                )
            await asyncio.sleep(delay)

    async def _resolve_scope(self) -> str | None:
        """The namespace to list and watch in: ours for namespaced kinds, None for cluster-scoped ones."""
        if not self._scope_known:
            resource = await self._client.resource(self.gvk)
            self._scope = self.namespace if resource.namespaced else None
            self._scope_known = True
        return self._scope

    def _prepare(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """The object as it is to be stored, or None when the transform raised on it."""
        if self.metadata_only and (len(obj) != 3 or obj.get("kind") != self.gvk.kind):
            # The server sends PartialObjectMetadata; name the kind it stands for, as controller-runtime
            # does, so a cached object says what it is (the client does this already; keep it certain).
            obj = {"apiVersion": self.gvk.api_version, "kind": self.gvk.kind, "metadata": obj["metadata"]}
        if self._transform is not None:
            try:
                obj = self._transform(obj)
            except Exception as exc:
                # Fail closed: the transform is often what keeps secret values out of memory, so an
                # object it could not handle is not cached at all. Neither the object nor the
                # exception's text is logged (either may hold the value); where it was raised is.
                self._transform_failures.inc()
                self._log.error(
                    "transform failed; object left out of the cache",
                    object=_key_of(obj),
                    resource_version=_rv_of(obj),
                    error_type=type(exc).__name__,
                    raised_at=_raised_at(exc),
                )
                return None
        _intern_metadata(obj)
        return obj

    def _prepare_all(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        prepare = self._prepare
        return [obj for obj in map(prepare, items) if obj is not None]

    async def _list(self) -> None:
        """A paginated consistent list (``limit`` + ``continue``), then the store swapped in whole."""
        namespace = await self._resolve_scope()
        self.lists += 1
        items, rv = await self._client.list(
            self.gvk,
            namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            limit=self._page_size,
            resource_version=None,
            metadata_only=self.metadata_only,
        )
        self._listed(self._prepare_all(items), rv, "paginate")

    async def _stream_list(self) -> None:
        """A streaming list (WatchList): ADDED events up to the initial-events-end bookmark, then the
        store swapped in whole. The stream is closed there; ordinary watches go on from its version."""
        namespace = await self._resolve_scope()
        self.lists += 1
        fresh: dict[ObjectKey, dict[str, Any]] = {}
        prepare = self._prepare
        stream = self._client.watch(
            self.gvk,
            namespace,
            resource_version="",
            timeout_seconds=random.randint(*_STREAM_TIMEOUT),
            allow_bookmarks=True,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            metadata_only=self.metadata_only,
            inactivity_timeout=self._inactivity_timeout,
            send_initial_events=True,
        )
        try:
            async for event in stream:
                kind = event.get("type")
                sent = event["object"]
                if kind == "BOOKMARK":
                    annotations = (sent.get("metadata") or {}).get("annotations") or {}
                    if annotations.get(INITIAL_EVENTS_END) != "true":
                        raise _StreamingUnsupported(
                            "a bookmark without the initial-events-end annotation came before the "
                            "initial state was complete"
                        )
                    self._streams = True
                    self._listed(list(fresh.values()), str(sent["metadata"]["resourceVersion"]), "stream")
                    return
                key = ObjectKey.of(sent)
                obj = prepare(sent) if kind != "DELETED" else None
                if obj is None:
                    fresh.pop(key, None)
                else:
                    fresh[key] = obj
        finally:
            await _close(stream)
        raise _WatchEndedEarly("the streaming list ended before the initial state was complete")

    def _listed(self, objs: list[dict[str, Any]], rv: str, mode: Literal["stream", "paginate"]) -> None:
        before = self.store.snapshot()
        self.store.replace(objs, rv)
        self.resource_version = rv
        self.last_list_mode = mode
        self._must_list = False
        self._list_is_fresh = True
        events = relist_events(before, self.store.snapshot())
        self._log.debug("listed", mode=mode, objects=len(objs), resource_version=rv, changes=len(events))
        emit = self._emit
        for event in events:
            emit(event)
        self._synced.set()

    async def _watch(self) -> None:
        namespace = await self._resolve_scope()
        timeout = random.randint(*self._watch_timeout)
        self.watches += 1
        self._first_watch_after_list, self._list_is_fresh = self._list_is_fresh, False
        started = time.monotonic()
        received = 0
        stream = self._client.watch(
            self.gvk,
            namespace,
            resource_version=self.resource_version,
            timeout_seconds=timeout,
            allow_bookmarks=True,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            metadata_only=self.metadata_only,
            inactivity_timeout=self._inactivity_timeout,
        )
        try:
            async for event in stream:
                received += 1
                self._apply(event)
        finally:
            await _close(stream)
        if received == 0 and time.monotonic() - started < 1.0:
            raise _WatchEndedEarly("the server closed the watch at once without sending anything")

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        sent = event["object"]
        rv = sent["metadata"]["resourceVersion"]
        if kind == "BOOKMARK":
            self.resource_version = rv
            return
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            self._log.warning("ignoring watch event of unknown type", type=kind)
            return
        obj = self._prepare(sent)
        store = self.store
        if obj is None:
            # Left out of the cache; a stale earlier state must not stand in for it either. The watch
            # moves past it, so one bad object never stalls the others.
            old = store.remove(ObjectKey.of(sent))
            self.resource_version = rv
            if old is not None:
                self._emit(Event(EventType.DELETED, old, old))
            return
        if kind == "DELETED":
            old = store.remove(ObjectKey.of(obj))
            change = Event(EventType.DELETED, obj, old)
        else:
            old = store.upsert(obj)
            change = Event(EventType.ADDED if old is None else EventType.MODIFIED, obj, old)
        self.resource_version = rv
        self._emit(change)


def _refuses_streaming(exc: BaseException) -> bool:
    """The server said no to ``sendInitialEvents`` (WatchList off or unknown), or ignored it."""
    return isinstance(exc, _StreamingUnsupported | BadRequest | Invalid)


def _rv_of(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata")
    return str(meta.get("resourceVersion") or "") if isinstance(meta, dict) else ""


def _raised_at(exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame that raised ``exc``: where, never what."""
    tb = exc.__traceback__
    if tb is None:
        return "?"
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return f"{code.co_filename}:{tb.tb_lineno} in {code.co_name}"


def _key_of(obj: dict[str, Any]) -> str:
    try:
        return str(ObjectKey.of(obj))
    except (KeyError, TypeError, AttributeError):
        return "<unnamed>"


async def _close(stream: AsyncIterator[dict[str, Any]]) -> None:
    # An async generator left suspended keeps its connection until garbage collection; close it now.
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
