"""The cache: the informers of one process, and reads that never touch the API server.

What a caller may rely on:

- ``informer(gvk, ...)`` returns the one informer for that kind and scope (namespace, selectors,
  metadata-only), creating it on first use; the same arguments always give the same informer.
  Informers created after ``start`` start at once.
- ``get`` and ``list`` read from the stores without I/O and return the stored dicts themselves: treat
  them as read-only (``copy.deepcopy`` before changing one). A read of a kind no informer caches raises
  ``NotCached`` instead of quietly starting a cluster-wide watch: declare what you read.
- When several informers cache a kind, reads use the one with full objects over a metadata-only one,
  an unfiltered one over one with selectors, and a namespace-scoped one only for its namespace.
- ``start`` returns once the informers are running (it does not wait for them to sync; that is
  ``wait_for_sync``). ``stop`` cancels them and waits until they have ended.
- Objects are stored after a transform: the cache's (``strip_managed_fields`` by default) unless
  ``informer`` is given another. Every informer of one kind uses the same transform, so a read has the
  same shape whichever informer serves it; asking for a kind with a transform other than the one
  its informers already use raises ``ValueError`` naming the kind and both transforms (compared by
  identity: pass the same function, not an equal lambda).
- Per-kind options (``by_kind={gvk: KindOptions(...)}``, controller-runtime's ``ByObject``) hold for
  every informer of the kind, whoever declares it (a controller's ``for_kind``/``owns``/``watches``,
  ``Children``, a direct ``informer`` call): the kind's label and field selectors are always applied
  (a caller's selector narrows them further, joined with ``,``), its namespace is the only one
  cached (asking for another raises ``ValueError``), ``metadata_only=True`` makes every informer of
  it metadata-only, and its transform is the kind's one. So an operator can watch only the Secrets
  it labels, and keep only what it needs of them. ``namespaces`` caches a kind in a set of
  namespaces (an informer each); ``source(gvk)`` gives them as one watch source, ``list`` reads
  across them, and ``informer(gvk)`` then needs one of them named.
- ``cache.uncached`` (an ``UncachedReader``) reads from the API server itself, for the rare read of
  something not worth caching; it has the cache's ``get``/``list`` (as coroutines) and applies the
  kind's transform, so an object read either way has the same shape.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import structlog

from agentkube.runtime.errors import NotFound
from agentkube.runtime.gvk import GVK, ObjectKey
from agentkube.runtime.informer import Handler, Informer, NamespacedInformers
from agentkube.runtime.reflector import Event, EventType, Transform, strip_managed_fields
from agentkube.runtime.store import INDEX_NAMESPACE, INDEX_OWNER_UID, Indexer

if TYPE_CHECKING:
    from agentkube.runtime.client import Client

__all__ = [
    "INDEX_NAMESPACE",
    "INDEX_OWNER_UID",
    "Cache",
    "Event",
    "EventType",
    "Handler",
    "Indexer",
    "Informer",
    "KindOptions",
    "NamespacedInformers",
    "NotCached",
    "UncachedReader",
    "parse_label_selector",
    "strip_managed_fields",
]

log = structlog.get_logger(__name__)


class NotCached(LookupError):
    """A read asked for a kind (or namespace) that no informer of this cache holds."""


@dataclass(frozen=True)
class KindOptions:
    """How the cache holds one kind, whoever asks for it (see the module docstring).

    label_selector, field_selector: always applied to this kind's informers. Default: none.
    namespace: the one namespace cached for this kind (``""``: all). Default None: the cache's
        ``default_namespace``.
    namespaces: several namespaces cached for this kind, one informer each (``source`` gives them
        as one ``NamespacedInformers``; ``list`` without a namespace reads them all). Default: none.
        Not together with ``namespace``.
    metadata_only: True caches this kind metadata-only everywhere. Default False: as each caller asks.
    transform: this kind's transform. Default ``"cache"``: the cache's transform; None stores objects
        as sent.
    """

    label_selector: str | None = None
    field_selector: str | None = None
    namespace: str | None = None
    namespaces: tuple[str, ...] = ()
    metadata_only: bool = False
    transform: Transform | Literal["cache"] | None = "cache"

    def __post_init__(self) -> None:
        if self.namespaces and self.namespace is not None:
            raise ValueError("KindOptions: give namespace or namespaces, not both")
        if any(not ns for ns in self.namespaces):
            raise ValueError(f"KindOptions.namespaces: empty namespace name in {self.namespaces!r}")
        if self.label_selector:
            try:
                parse_label_selector(self.label_selector)
            except ValueError as exc:
                raise ValueError(f"KindOptions.label_selector: {exc}") from None


def _joined(kind: str | None, call: str | None) -> str | None:
    parts = [p for p in (kind, call) if p]
    if len(parts) == 2 and parts[0] == parts[1]:
        return parts[0]
    return ",".join(parts) or None


@dataclass(frozen=True, slots=True)
class _Scope:
    gvk: GVK
    namespace: str | None
    label_selector: str | None
    field_selector: str | None
    metadata_only: bool


class Cache:
    """Informers by kind and scope, started and stopped together, read without I/O."""

    def __init__(
        self,
        client: Client,
        *,
        default_namespace: str | None = None,
        transform: Transform | None = strip_managed_fields,
        resync_period: float | None = None,
        watch_timeout: tuple[int, int] = (20, 30),
        inactivity_timeout: float | None = None,
        by_kind: Mapping[GVK, KindOptions] | None = None,
    ) -> None:
        """
        default_namespace: the namespace informers watch when ``informer`` is not given one.
            Default None: all namespaces.
        by_kind: options of particular kinds (``KindOptions``). Default: none.
        transform: applied to each object before it is stored. Default ``strip_managed_fields``.
        resync_period: seconds between RESYNC re-deliveries in every informer. Default None (never).
        watch_timeout, inactivity_timeout: see ``Reflector``. Defaults (20, 30) and the client's.
        """
        self._client = client
        self.default_namespace = default_namespace or None
        self.transform = transform
        self.resync_period = resync_period
        self._watch_timeout = watch_timeout
        self._inactivity_timeout = inactivity_timeout
        self._informers: dict[_Scope, Informer] = {}
        self._transforms: dict[GVK, Transform | None] = {}
        self._indexers: dict[GVK, dict[str, Indexer]] = {}
        self._tasks: dict[_Scope, asyncio.Task[None]] = {}
        self._started = False
        self.by_kind: dict[GVK, KindOptions] = dict(by_kind or {})
        self._namespaced: dict[tuple[int, ...], NamespacedInformers] = {}
        self.uncached = UncachedReader(client, self._transform_of)

    # ----------------------------------------------------------------------------------- informers

    def informer(
        self,
        gvk: GVK,
        *,
        metadata_only: bool = False,
        label_selector: str | None = None,
        field_selector: str | None = None,
        namespace: str | None = None,
        transform: Transform | None = None,
    ) -> Informer:
        """The informer for this kind and scope, created (and started, if the cache runs) on first use.

        namespace: None means the cache's ``default_namespace``; ``""`` means all namespaces.
        transform: applied to each object before it is stored. Default None: the cache's
            transform. Every informer of a kind stores objects transformed one way (reads may be
            served by any of them), so asking for ``gvk`` with a transform other than the one its
            informers already use raises ``ValueError``; transforms are compared by identity.
        """
        options = self.by_kind.get(gvk)
        if options is not None and options.namespaces:
            wanted = None if namespace is None else (namespace or None)
            if wanted is None:
                raise ValueError(
                    f"{gvk} is cached in namespaces {', '.join(options.namespaces)} (KindOptions); name"
                    " one, or use cache.source() for all of them"
                )
            if wanted not in options.namespaces:
                raise ValueError(
                    f"{gvk} is cached in namespaces {', '.join(options.namespaces)} only (KindOptions);"
                    f" namespace {wanted!r} is asked for: add it there or read it uncached"
                )
        if options is not None:
            if transform is None and options.transform != "cache":
                transform = options.transform
            if options.namespace is not None:
                wanted = None if namespace is None else (namespace or None)
                kind_ns = options.namespace or None
                if wanted is not None and kind_ns is not None and wanted != kind_ns:
                    raise ValueError(
                        f"{gvk} is cached in namespace {kind_ns!r} only (KindOptions); "
                        f"namespace {wanted!r} is asked for: widen the kind's namespace or read it uncached"
                    )
                # The kind's namespace, or (all namespaces for the kind) the caller's, if any.
                namespace = kind_ns if kind_ns is not None else ("" if namespace is None else namespace)
            label_selector = _joined(options.label_selector, label_selector)
            field_selector = _joined(options.field_selector, field_selector)
            metadata_only = metadata_only or options.metadata_only
        chosen = self.transform if transform is None else transform
        kept = self._transforms.get(gvk, chosen)
        if kept is not chosen:
            raise ValueError(
                f"{gvk} is already cached with transform {_name(kept)}; this asks for {_name(chosen)}."
                " Every informer of a kind stores objects transformed one way: pass"
                f" transform={_name(kept)} wherever {gvk.kind} is declared"
            )
        if options is not None and options.transform != "cache" and chosen is not options.transform:
            raise ValueError(
                f"{gvk} is cached with transform {_name(options.transform)} (KindOptions); this asks for"
                f" {_name(chosen)}: leave transform unset where {gvk.kind} is declared"
            )
        scope_ns = self.default_namespace if namespace is None else (namespace or None)
        scope = _Scope(gvk, scope_ns, label_selector or None, field_selector or None, metadata_only)
        existing = self._informers.get(scope)
        if existing is not None:
            return existing
        informer = Informer(
            self._client,
            gvk,
            namespace=scope.namespace,
            label_selector=scope.label_selector,
            field_selector=scope.field_selector,
            metadata_only=metadata_only,
            transform=chosen,
            resync_period=self.resync_period,
            indexers=self._indexers.get(gvk),
            watch_timeout=self._watch_timeout,
            inactivity_timeout=self._inactivity_timeout,
        )
        self._informers[scope] = informer
        self._transforms[gvk] = chosen
        if self._started:
            self._run(scope, informer)
        return informer

    def source(
        self,
        gvk: GVK,
        *,
        metadata_only: bool = False,
        label_selector: str | None = None,
        field_selector: str | None = None,
        namespace: str | None = None,
        transform: Transform | None = None,
    ) -> Informer | NamespacedInformers:
        """What caches ``gvk`` in this scope: ``informer(...)``, except for a kind cached in several
        namespaces (``KindOptions.namespaces``) asked for without a namespace, which gets the
        informers of all of them as one ``NamespacedInformers``. Either serves as a controller's
        watch source and has ``store`` reads."""
        options = self.by_kind.get(gvk)
        if options is None or not options.namespaces or namespace is not None:
            return self.informer(
                gvk,
                metadata_only=metadata_only,
                label_selector=label_selector,
                field_selector=field_selector,
                namespace=namespace,
                transform=transform,
            )
        members = [
            self.informer(
                gvk,
                metadata_only=metadata_only,
                label_selector=label_selector,
                field_selector=field_selector,
                namespace=ns,
                transform=transform,
            )
            for ns in options.namespaces
        ]
        key = tuple(id(m) for m in members)
        found = self._namespaced.get(key)
        if found is None:
            found = self._namespaced[key] = NamespacedInformers(gvk, members)
        return found

    def _transform_of(self, gvk: GVK) -> Transform | None:
        if gvk in self._transforms:
            return self._transforms[gvk]
        options = self.by_kind.get(gvk)
        if options is not None and options.transform != "cache":
            return options.transform
        return self.transform

    @property
    def informers(self) -> builtins.list[Informer]:
        return list(self._informers.values())

    def add_indexer(self, gvk: GVK, name: str, fn: Indexer) -> None:
        """Index every informer of ``gvk``, present and future, by ``fn``."""
        by_name = self._indexers.setdefault(gvk, {})
        if name in by_name:
            raise ValueError(f"index {name!r} is already defined for {gvk}")
        by_name[name] = fn
        for scope, informer in self._informers.items():
            if scope.gvk == gvk:
                informer.add_indexer(name, fn)

    # --------------------------------------------------------------------------------------- reads

    def _reader(self, gvk: GVK, namespace: str | None) -> Informer:
        candidates = [
            (scope, informer)
            for scope, informer in self._informers.items()
            if scope.gvk == gvk
            and (scope.namespace is None or namespace is None or scope.namespace == namespace)
        ]
        if not candidates:
            where = f" in namespace {namespace!r}" if namespace else ""
            raise NotCached(
                f"no informer caches {gvk}{where}; call cache.informer({gvk!r}) (or declare the kind"
                " on the controller) before reading it"
            )
        # min() keeps the first-created among equals: dicts iterate in insertion order.
        _, best = min(
            candidates,
            key=lambda c: (
                c[0].metadata_only,
                c[0].label_selector is not None or c[0].field_selector is not None,
                c[0].namespace is not None,
            ),
        )
        return best

    def get(self, gvk: GVK, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The cached object, or None when the cache does not hold it."""
        return self._reader(gvk, namespace).store.get(ObjectKey(namespace or None, name))

    def list(
        self,
        gvk: GVK,
        namespace: str | None = None,
        *,
        index: tuple[str, str] | None = None,
        label_selector: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Cached objects of ``gvk``, narrowed by namespace, an index ``(name, value)`` and a label
        selector (the API's string syntax), all at once when several are given. Without a namespace,
        a kind cached in several namespaces (``KindOptions.namespaces``) is read in all of them."""
        options = self.by_kind.get(gvk)
        if namespace is None and options is not None and options.namespaces:
            return [
                obj
                for ns in options.namespaces
                for obj in self.list(gvk, ns, index=index, label_selector=label_selector)
            ]
        store = self._reader(gvk, namespace).store
        if index is not None:
            objs = store.by_index(*index)
            if namespace:
                objs = [o for o in objs if o["metadata"].get("namespace") == namespace]
        elif namespace:
            objs = store.by_index(INDEX_NAMESPACE, namespace)
        else:
            objs = store.list()
        if label_selector:
            matches = parse_label_selector(label_selector)
            objs = [o for o in objs if matches(o["metadata"].get("labels") or {})]
        return objs

    # ----------------------------------------------------------------------------------- lifecycle

    def _run(self, scope: _Scope, informer: Informer) -> None:
        task = asyncio.get_running_loop().create_task(informer.run(), name=f"informer {informer!r}")
        task.add_done_callback(_log_unexpected_end)
        self._tasks[scope] = task

    async def start(self) -> None:
        """Start every informer (and, from now on, each one created later); returns at once."""
        if self._started:
            return
        self._started = True
        for scope, informer in self._informers.items():
            self._run(scope, informer)

    async def wait_for_sync(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """Wait until every informer created so far has synced; False when ``timeout`` passes first."""
        informers = list(self._informers.values())
        try:
            await asyncio.wait_for(asyncio.gather(*(i.wait_for_sync() for i in informers)), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def synced(self) -> bool:
        return all(i.synced for i in self._informers.values())

    async def stop(self) -> None:
        """Cancel every informer and wait until all have ended. The stores keep their last contents."""
        self._started = False
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class UncachedReader:
    """Reads straight from the API server, with the cache's read surface (``get`` and ``list``, as
    coroutines): for the rare read not worth an informer. Each call is a request; objects pass
    through the kind's transform (so they have the shape the cache would give them; a transform that
    raises raises here, and nothing is returned)."""

    def __init__(self, client: Client, transform_of: Callable[[GVK], Transform | None]) -> None:
        self._client = client
        self._transform_of = transform_of

    async def get(self, gvk: GVK, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object as the API server holds it now, or None when it does not exist."""
        try:
            obj = await self._client.get(gvk, name, namespace)
        except NotFound:
            return None
        transform = self._transform_of(gvk)
        return transform(obj) if transform is not None else obj

    async def list(
        self,
        gvk: GVK,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """The objects as the API server holds them now (a consistent, paginated list)."""
        items, _ = await self._client.list(
            gvk, namespace, label_selector=label_selector, field_selector=field_selector
        )
        transform = self._transform_of(gvk)
        return [transform(o) for o in items] if transform is not None else items


def _name(transform: Transform | None) -> str:
    if transform is None:
        return "None (objects stored as sent)"
    return str(getattr(transform, "__qualname__", None) or repr(transform))


def _log_unexpected_end(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    # Informer.run only ends by cancellation; anything else is a bug worth a loud log line.
    log.error("informer ended unexpectedly", task=task.get_name(), exc_info=exc)


# ----------------------------------------------------------------------------------- label selectors

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_REQUIREMENT = re.compile(
    rf"""\s*(?:
        (?P<not_exists>!\s*(?P<k1>{_KEY}))
      | (?P<k2>{_KEY})\s+(?P<set_op>in|notin)\s*\(\s*(?P<values>[^)]*)\)
      | (?P<k3>{_KEY})\s*(?P<op>==|=|!=|>|<)\s*(?P<value>{_VALUE})
      | (?P<k4>{_KEY})
    )\s*(?:,|$)""",
    re.VERBOSE,
)

LabelMatcher = Callable[[dict[str, str]], bool]


@functools.lru_cache(maxsize=256)
def parse_label_selector(selector: str) -> LabelMatcher:
    """Compile a label selector in the API's string syntax (``a=b,c!=d,e in (f,g),!h,i``) into a test
    of a label dict. Raises ValueError naming the part that does not parse."""
    tests: list[LabelMatcher] = []
    pos = 0
    text = selector.strip()
    while pos < len(text):
        m = _REQUIREMENT.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"label selector {selector!r}: cannot parse {text[pos:]!r}")
        pos = m.end()
        tests.append(_requirement(m, selector))
    return lambda labels: all(test(labels) for test in tests)


def _requirement(m: re.Match[str], selector: str) -> LabelMatcher:
    if m["not_exists"]:
        key = m["k1"]
        return lambda labels: key not in labels
    if m["set_op"]:
        key = m["k2"]
        values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
        if m["set_op"] == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m["op"]:
        key, op, value = m["k3"], m["op"], m["value"]
        if op in ("=", "=="):
            return lambda labels: labels.get(key) == value
        if op == "!=":
            return lambda labels: labels.get(key) != value
        try:
            bound = int(value)
        except ValueError:
            raise ValueError(f"label selector {selector!r}: {op} needs an integer, got {value!r}") from None
        greater = op == ">"
        return lambda labels: _compare(labels.get(key), bound, greater)
    key = m["k4"]
    return lambda labels: key in labels


def _compare(value: str | None, bound: int, greater: bool) -> bool:
    if value is None:
        return False
    try:
        number = int(value)
    except ValueError:
        return False
    return number > bound if greater else number < bound
