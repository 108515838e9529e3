"""Event handlers: which requests an informer event turns into.

An event handler is any ``Callable[[Event], Iterable[Request]]``. It runs inside the informer's
dispatch, so it must be quick and must not do I/O: read the cache, never the API server.

What a caller may rely on:

- ``EnqueueRequestForObject()``: the object itself (the primary kind of a controller).
- ``EnqueueRequestForOwner(owner)``: the owner named by the object's ``ownerReferences`` entry that
  has ``controller: true`` and the owner's group and kind (the version is ignored: an owner reference
  written as ``v1beta1`` still names the same object served as ``v1``). With
  ``controller_only=False`` every owner reference of that group and kind counts. The owner is looked
  up in the object's namespace (owner references cannot cross namespaces), or cluster-wide when the
  owner kind is cluster-scoped (``owner_namespaced=False``; the builder sets it from discovery).
- ``EnqueueRequestsFromMapFunc(map_to)``: whatever ``map_to(obj)`` returns, e.g. the primaries that
  reference a Secret, found through a cache index.
- For an update, owner and mapped requests are computed for the old object too and merged: an
  object that changes owner, or stops matching a mapping, still wakes the one it left.
- A handler returns each request at most once per event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from agentkube.runtime.gvk import GVK
from agentkube.runtime.informer import Event, EventType
from agentkube.runtime.reconcile import Request

__all__ = [
    "EnqueueRequestForObject",
    "EnqueueRequestForOwner",
    "EnqueueRequestsFromMapFunc",
    "EventHandler",
    "MapFunc",
]

EventHandler = Callable[[Event], Iterable[Request]]
MapFunc = Callable[[dict[str, Any]], Iterable[Request]]


def _objects(event: Event) -> Iterator[dict[str, Any]]:
    yield event.obj
    if event.type is EventType.MODIFIED and event.old is not None:
        yield event.old


class EnqueueRequestForObject:
    """Enqueue the object the event is about."""

    def __call__(self, event: Event) -> list[Request]:
        return [Request.of(event.obj)]

    def __repr__(self) -> str:
        return "EnqueueRequestForObject()"


class EnqueueRequestForOwner:
    """Enqueue the owner of kind ``owner`` named by the object's (controller) owner reference."""

    def __init__(self, owner: GVK, *, controller_only: bool = True, owner_namespaced: bool = True) -> None:
        self.owner = owner
        self.controller_only = controller_only
        self.owner_namespaced = owner_namespaced

    def __call__(self, event: Event) -> list[Request]:
        found: dict[Request, None] = {}
        for obj in _objects(event):
            meta = obj.get("metadata", {})
            for ref in meta.get("ownerReferences") or ():
                if self.controller_only and not ref.get("controller"):
                    continue
                if ref.get("kind") != self.owner.kind:
                    continue
                group, _, _version = str(ref.get("apiVersion", "")).rpartition("/")
                if group != self.owner.group:
                    continue
                namespace = (meta.get("namespace") or None) if self.owner_namespaced else None
                found[Request(namespace, ref["name"])] = None
        return list(found)

    def __repr__(self) -> str:
        return f"EnqueueRequestForOwner({self.owner}, controller_only={self.controller_only})"


class EnqueueRequestsFromMapFunc:
    """Enqueue what ``map_to(obj)`` returns for the event's object (and an update's old object)."""

    def __init__(self, map_to: MapFunc) -> None:
        self.map_to = map_to

    def __call__(self, event: Event) -> list[Request]:
        found: dict[Request, None] = {}
        for obj in _objects(event):
            for request in self.map_to(obj):
                found[request] = None
        return list(found)

    def __repr__(self) -> str:
        return f"EnqueueRequestsFromMapFunc({getattr(self.map_to, '__qualname__', self.map_to)!r})"
