"""The in-memory store behind an informer: objects by key, plus indexes over them.

What a caller may rely on:

- Objects are the plain dicts the reflector decoded; the store hands out the stored dict itself, not a
  copy (copying every read would double the cost of a cache). Treat what you get as read-only: change
  a ``copy.deepcopy`` of it, never the original, or the cache and its indexes disagree.
- ``replace`` builds the new object map and every index aside and then swaps one reference, so a
  reader (even one on another thread) sees the old contents or the new, never half a list.
  ``upsert`` and ``remove`` change the store in place and keep every index current; the store is
  meant for one event loop, and reads between two awaits always see a consistent store.
- Two indexes are always present: ``INDEX_NAMESPACE`` (value: the namespace, ``""`` for
  cluster-scoped objects) and ``INDEX_OWNER_UID`` (value: the uid of every owner reference, controller
  or not; filter on ``controller: true`` in the handler when only the controller matters).
- An indexer returns the values an object is indexed under (an iterable of strings; a lone string is
  taken as one value, not as its characters). An indexer that raises is logged and the object is left
  out of that index; the store stays usable.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import structlog

from agentkube.runtime.gvk import ObjectKey

__all__ = [
    "INDEX_NAMESPACE",
    "INDEX_OWNER_UID",
    "Indexer",
    "Store",
    "index_namespace",
    "index_owner_uid",
]

log = structlog.get_logger(__name__)

Indexer = Callable[[dict[str, Any]], Iterable[str]]

INDEX_NAMESPACE = "namespace"
INDEX_OWNER_UID = "owner-uid"

# index name -> indexed value -> keys under that value. A dict used as an ordered set keeps by_index
# results in insertion order (deterministic for tests and logs) at the size of a set.
_Index = dict[str, dict[ObjectKey, None]]


def index_namespace(obj: dict[str, Any]) -> Iterable[str]:
    """The object's namespace; ``""`` for cluster-scoped objects."""
    return (obj["metadata"].get("namespace") or "",)


def index_owner_uid(obj: dict[str, Any]) -> Iterable[str]:
    """The uid of every owner reference of the object."""
    refs = obj["metadata"].get("ownerReferences")
    if not refs:
        return ()
    return [ref["uid"] for ref in refs if ref.get("uid")]


class _Contents:
    """Everything ``replace`` swaps at once; one reference, so the swap is a single assignment."""

    __slots__ = ("indexes", "objects", "resource_version")

    def __init__(self, objects: dict[ObjectKey, dict[str, Any]], indexes: dict[str, _Index], rv: str) -> None:
        self.objects = objects
        self.indexes = indexes
        self.resource_version = rv


class Store:
    """Objects by ``ObjectKey``, with named indexes kept current on every change."""

    def __init__(self, indexers: Mapping[str, Indexer] | None = None) -> None:
        self._indexers: dict[str, Indexer] = {
            INDEX_NAMESPACE: index_namespace,
            INDEX_OWNER_UID: index_owner_uid,
        }
        for name, fn in (indexers or {}).items():
            self._check_new_index(name)
            self._indexers[name] = fn
        self._contents = _Contents({}, {name: {} for name in self._indexers}, "")

    # ------------------------------------------------------------------------------------- indexes

    def _check_new_index(self, name: str) -> None:
        if name in self._indexers:
            raise ValueError(f"index {name!r} is already defined")

    def add_indexer(self, name: str, fn: Indexer) -> None:
        """Add an index. Allowed at any time: the index is built over the current contents at once."""
        self._check_new_index(name)
        index: _Index = {}
        for key, obj in self._contents.objects.items():
            self._index_one(index, name, fn, key, obj)
        self._indexers[name] = fn
        self._contents.indexes[name] = index

    @property
    def index_names(self) -> builtins.list[str]:
        return list(self._indexers)

    @staticmethod
    def _values(name: str, fn: Indexer, key: ObjectKey, obj: dict[str, Any]) -> tuple[str, ...]:
        try:
            values = fn(obj)
            if isinstance(values, str):
                return (values,)
            return tuple(values)
        except Exception:
            # A broken indexer must not take the cache down with it; the object is simply not found
            # through this index, and the log says which object and index.
            log.exception("indexer failed", index=name, key=str(key))
            return ()

    @staticmethod
    def _add(index: _Index, key: ObjectKey, values: tuple[str, ...]) -> None:
        for value in values:
            bucket = index.get(value)
            if bucket is None:
                index[value] = {key: None}
            else:
                bucket[key] = None

    @staticmethod
    def _discard(index: _Index, key: ObjectKey, values: tuple[str, ...]) -> None:
        for value in values:
            bucket = index.get(value)
            if bucket is None:
                continue
            bucket.pop(key, None)
            if not bucket:
                del index[value]

    def _index_one(self, index: _Index, name: str, fn: Indexer, key: ObjectKey, obj: dict[str, Any]) -> None:
        self._add(index, key, self._values(name, fn, key, obj))

    # --------------------------------------------------------------------------------------- reads

    @property
    def resource_version(self) -> str:
        """The resourceVersion of the list that last replaced the contents (``""`` before any)."""
        return self._contents.resource_version

    def get(self, key: ObjectKey) -> dict[str, Any] | None:
        return self._contents.objects.get(key)

    def list(self) -> builtins.list[dict[str, Any]]:
        return list(self._contents.objects.values())

    def keys(self) -> builtins.list[ObjectKey]:
        return list(self._contents.objects)

    def snapshot(self) -> Mapping[ObjectKey, dict[str, Any]]:
        """A read-only view of the current object map.

        After ``replace`` the view keeps showing the contents from before it (``replace`` swaps in a
        new map); ``upsert``/``remove`` do show through. The reflector diffs a relist against it.
        """
        return MappingProxyType(self._contents.objects)

    def by_index(self, index: str, value: str) -> builtins.list[dict[str, Any]]:
        contents = self._contents
        try:
            buckets = contents.indexes[index]
        except KeyError:
            raise KeyError(f"no index {index!r}; the store has {sorted(contents.indexes)}") from None
        keys = buckets.get(value)
        if not keys:
            return []
        objects = contents.objects
        # .get: an indexer that raised on an object's old version cannot have it removed from the
        # old value's bucket; such a stale key must not turn into a KeyError for the reader.
        return [obj for k in keys if (obj := objects.get(k)) is not None]

    def index_keys(self, index: str, value: str) -> builtins.list[ObjectKey]:
        """The keys under ``value`` in ``index``: what a mapping function needs, without the objects."""
        try:
            buckets = self._contents.indexes[index]
        except KeyError:
            raise KeyError(f"no index {index!r}; the store has {sorted(self._contents.indexes)}") from None
        return list(buckets.get(value, ()))

    def __len__(self) -> int:
        return len(self._contents.objects)

    def __contains__(self, key: object) -> bool:
        return key in self._contents.objects

    # -------------------------------------------------------------------------------------- writes

    def replace(self, objs: Iterable[dict[str, Any]], resource_version: str) -> None:
        """Make the store hold exactly ``objs``; readers switch from the old contents to the new at once."""
        objects: dict[ObjectKey, dict[str, Any]] = {}
        for obj in objs:
            objects[ObjectKey.of(obj)] = obj
        indexes: dict[str, _Index] = {}
        for name, fn in self._indexers.items():
            index: _Index = {}
            for key, obj in objects.items():
                self._index_one(index, name, fn, key, obj)
            indexes[name] = index
        self._contents = _Contents(objects, indexes, resource_version)

    def upsert(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Insert or replace one object; returns the object it replaced, if any."""
        key = ObjectKey.of(obj)
        contents = self._contents
        old = contents.objects.get(key)
        for name, fn in self._indexers.items():
            index = contents.indexes[name]
            values = self._values(name, fn, key, obj)
            if old is not None:
                old_values = self._values(name, fn, key, old)
                # Most updates (status, spec) leave index values alone; skipping them keeps the
                # key's place in its buckets and saves the churn.
                if old_values == values:
                    continue
                self._discard(index, key, old_values)
            self._add(index, key, values)
        contents.objects[key] = obj
        return old

    def remove(self, key: ObjectKey) -> dict[str, Any] | None:
        """Remove one object; returns it, or None when the store did not hold it."""
        contents = self._contents
        old = contents.objects.pop(key, None)
        if old is not None:
            for name, fn in self._indexers.items():
                self._discard(contents.indexes[name], key, self._values(name, fn, key, old))
        return old
