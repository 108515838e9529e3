"""Predicates: which informer events are worth a reconcile.

A predicate is any ``Callable[[Event], bool]``; a controller enqueues for an event only if every
predicate of its watch says True. The ones here compare an update's old and new object.

What a caller may rely on:

- The "changed" predicates only ever filter ``MODIFIED`` events: adds and deletes always pass, as in
  controller-runtime. ``RESYNC`` events pass too, which is where we part from controller-runtime: there
  a resync is an update with old == new, so ``GenerationChangedPredicate`` silently swallows every
  resync and a configured resync period does nothing. Here a resync you asked for reaches the
  reconciler; drop it explicitly with ``lambda e: e.type is not EventType.RESYNC`` if you must.
- A ``MODIFIED`` event without an old object passes (nothing to compare with).
- ``GenerationChanged``: ``metadata.generation`` differs. The API server bumps it on spec changes
  only, so status writes (including our own) do not wake the controller. Kinds without a generation
  (ConfigMap, Secret) never pass an update through this predicate, exactly like controller-runtime.
- ``and_``, ``or_``, ``not_`` combine predicates; ``and_()`` is True and ``or_()`` is False.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentkube.runtime.informer import Event, EventType

__all__ = [
    "AnnotationsChanged",
    "GenerationChanged",
    "LabelsChanged",
    "Predicate",
    "ResourceVersionChanged",
    "and_",
    "not_",
    "or_",
]

Predicate = Callable[[Event], bool]


class _MetadataChanged:
    """True unless the event is an update whose old and new ``metadata.<field>`` are equal."""

    field = ""
    empty: Any = None

    def __call__(self, event: Event) -> bool:
        if event.type is not EventType.MODIFIED or event.old is None:
            return True
        old = event.old.get("metadata", {}).get(self.field, self.empty)
        new = event.obj.get("metadata", {}).get(self.field, self.empty)
        return bool(old != new)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class GenerationChanged(_MetadataChanged):
    """Updates pass only when ``metadata.generation`` changed: spec changes, not status or metadata."""

    field = "generation"


class LabelsChanged(_MetadataChanged):
    """Updates pass only when ``metadata.labels`` changed."""

    field = "labels"
    empty: Any = {}


class AnnotationsChanged(_MetadataChanged):
    """Updates pass only when ``metadata.annotations`` changed."""

    field = "annotations"
    empty: Any = {}


class ResourceVersionChanged(_MetadataChanged):
    """Updates pass only when ``metadata.resourceVersion`` changed (drops no-op re-deliveries)."""

    field = "resourceVersion"


class _And:
    __slots__ = ("predicates",)

    def __init__(self, predicates: tuple[Predicate, ...]) -> None:
        self.predicates = predicates

    def __call__(self, event: Event) -> bool:
        return all(p(event) for p in self.predicates)

    def __repr__(self) -> str:
        return f"and_({', '.join(map(repr, self.predicates))})"


class _Or:
    __slots__ = ("predicates",)

    def __init__(self, predicates: tuple[Predicate, ...]) -> None:
        self.predicates = predicates

    def __call__(self, event: Event) -> bool:
        return any(p(event) for p in self.predicates)

    def __repr__(self) -> str:
        return f"or_({', '.join(map(repr, self.predicates))})"


class _Not:
    __slots__ = ("predicate",)

    def __init__(self, predicate: Predicate) -> None:
        self.predicate = predicate

    def __call__(self, event: Event) -> bool:
        return not self.predicate(event)

    def __repr__(self) -> str:
        return f"not_({self.predicate!r})"


def and_(*predicates: Predicate) -> Predicate:
    """True when every predicate is (e.g. generation changed *and* a label changed)."""
    return _And(predicates)


def or_(*predicates: Predicate) -> Predicate:
    """True when any predicate is (e.g. the spec *or* the labels changed)."""
    return _Or(predicates)


def not_(predicate: Predicate) -> Predicate:
    """True when ``predicate`` is not."""
    return _Not(predicate)
