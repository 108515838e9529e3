"""The reconciler contract: a request names an object, the reconciler makes the world match it.

What a caller may rely on:

- ``Request`` is only a namespace and a name: reconcile reads the current state from the cache, never
  the event that woke it (level-triggered). Requests are hashable and are the work-queue keys.
- A reconciler is anything with ``async def reconcile(self, request) -> Result | None``, or a plain
  ``async def`` function of the request (``as_reconciler`` adapts either).
- What the controller does with the outcome (controller-runtime's rules):
  returning ``None`` or ``Result()`` -> done, backoff forgotten;
  ``Result(requeue_after=s)`` -> backoff forgotten, reconciled again in ``s`` seconds;
  ``Result(requeue=True)`` -> reconciled again after the rate limiter's backoff;
  raising ``TerminalError`` -> not retried (until the next event), counted as a terminal error;
  raising anything else -> retried after the rate limiter's backoff.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from agentkube.runtime.gvk import ObjectKey

__all__ = [
    "ReconcileFunc",
    "Reconciler",
    "Request",
    "Result",
    "TerminalError",
    "as_reconciler",
    "is_terminal",
]


@dataclass(frozen=True, slots=True, order=True)
class Request:
    """The object to reconcile; ``namespace`` is None for cluster-scoped kinds."""

    namespace: str | None
    name: str

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Request:
        """The request for ``obj`` itself."""
        meta = obj["metadata"]
        return cls(meta.get("namespace") or None, meta["name"])

    @property
    def key(self) -> ObjectKey:
        """The same name as an ``ObjectKey``, for reading the cache."""
        return ObjectKey(self.namespace, self.name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, slots=True)
class Result:
    """What to do after a successful reconcile; the default means "done until something changes"."""

    requeue_after: float | None = None
    """Reconcile again after this many seconds (and forget the backoff): for polling outside state."""
    requeue: bool = False
    """Reconcile again after the rate limiter's backoff without counting an error."""

    def __post_init__(self) -> None:
        if self.requeue_after is not None and self.requeue_after < 0:
            raise ValueError(f"requeue_after must not be negative, got {self.requeue_after!r}")


class TerminalError(Exception):
    """A failure retrying cannot fix (an invalid spec): not requeued, counted as a terminal error.

    The object is reconciled again when it changes, so a user fixing the spec is picked up.
    """


def is_terminal(err: BaseException) -> bool:
    """Whether ``err`` is a ``TerminalError``, also inside an exception group or as the cause of
    another (``raise ... from TerminalError(...)``: like Go's errors.Is, wrapping keeps the kind)."""
    if isinstance(err, BaseExceptionGroup):
        return any(is_terminal(member) for member in err.exceptions)
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, TerminalError):
            return True
        seen = seen.__cause__
    return False


@runtime_checkable
class Reconciler(Protocol):
    """One method: make the world match the object named by ``request``."""

    async def reconcile(self, request: Request) -> Result | None: ...


ReconcileFunc = Callable[[Request], Awaitable["Result | None"]]


class _FunctionReconciler:
    __slots__ = ("_fn",)

    def __init__(self, fn: ReconcileFunc) -> None:
        self._fn = fn

    async def reconcile(self, request: Request) -> Result | None:
        return await self._fn(request)

    def __repr__(self) -> str:
        return f"reconciler({getattr(self._fn, '__qualname__', self._fn)!r})"


def as_reconciler(reconciler: Reconciler | ReconcileFunc) -> Reconciler:
    """``reconciler`` itself if it has a ``reconcile`` method, else the function wrapped in one."""
    if isinstance(reconciler, Reconciler):
        return reconciler
    if callable(reconciler):
        return _FunctionReconciler(reconciler)
    raise TypeError(f"not a reconciler: {reconciler!r} (need .reconcile(request) or an async function)")
