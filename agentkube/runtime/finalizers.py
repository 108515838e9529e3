"""Finalizers: run a cleanup before an object goes away, without ever clobbering anyone else's.

A finalizer is a name in ``metadata.finalizers``; while any name is there, deleting the object only
marks it (``deletionTimestamp``) and the API server keeps it until every finalizer is removed. The
usual ways to get this wrong leak external state (a side effect made before the finalizer was on),
hang objects in Terminating (a cleanup that gives up, a finalizer nobody removes) or break other
controllers (a merge patch or update that writes the whole list from a stale copy). ``Finalizer``
makes the safe order the only one::

    finalizer = Finalizer(manager.client, "example.com/bucket", recorder=manager.event_recorder("buckets"))

    async def reconcile(request: Request) -> Result | None:
        bucket = manager.cache.get(BUCKET, request.name, request.namespace)

        async def apply(bucket: dict) -> Result | None:
            await storage.ensure_bucket(bucket["spec"]["name"])  # our finalizer is on by now
            return None

        async def cleanup(bucket: dict) -> Result | None:
            await storage.delete_bucket(bucket["spec"]["name"])  # idempotent: may run again
            return None  # done: the finalizer comes off

        return await finalizer.reconcile(bucket, apply=apply, cleanup=cleanup)

What a caller may rely on:

- ``reconcile(obj, apply=..., cleanup=...)`` with the object read from the cache (None when it is
  gone):
  - None: nothing is called, returns None (the object and our finalizer are gone already).
  - Not being deleted, our finalizer absent: it is added first, then ``apply`` is called with the
    object as the server returned it (finalizer on), in the same call: no reliance on a watch event
    that a ``GenerationChanged`` predicate would filter out. ``apply`` is therefore never called
    before the finalizer is stored: the first external side effect always has its cleanup.
  - Not being deleted, our finalizer present: ``apply(obj)``; its result is returned.
  - Being deleted with our finalizer: ``cleanup(obj)``. When it returns None or ``Result()`` the
    cleanup is done and our finalizer is removed; ``Result(requeue=True)`` or
    ``Result(requeue_after=s)`` means "not finished yet" (say, waiting for an external delete): the
    finalizer stays and the result is returned. ``apply`` is never called on an object being deleted.
  - Being deleted without our finalizer (deleted before we ever added it, or cleaned up already):
    nothing is called, returns None: there is nothing of ours to clean up.
- Only our name is ever written. Adding is a JSON patch that tests the object's uid and the whole
  finalizer list as read, then appends; removing tests the uid and that our name is at the index
  read, then removes that index. If anything changed meanwhile the server rejects the patch, the
  object is read again from the API server and the step retried (up to ``max_attempts``, then the
  error is raised and the controller retries with backoff). Another controller's finalizer is never
  removed or reordered, and a deleted-and-recreated object of the same name is never touched.
- A cleanup that raises is reported: a Warning Event ``FinalizerCleanupFailed`` on the object (when a
  ``recorder`` is given) and an error log line, then the exception propagates, so the controller
  retries with backoff and counts the error. A ``TerminalError`` from the cleanup cannot stop the
  retries (nothing else would wake an object in Terminating, and it would hang there for good): it is
  reported the same way and answered with ``Result(requeue=True)``, a retry after the rate limiter's
  backoff. To give up on a cleanup on purpose, return None from it.
- ``cleanup`` must be idempotent: it runs again if removing the finalizer fails, or the process
  stops in between.
- An object removed while we patch (404) counts as done.

Limits: the finalizer is only as safe as the controller runs. While no replica runs, objects carrying
it stay in Terminating (``kubectl patch`` it away by hand if the controller is gone for good).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from agentkube.runtime.client import Client
from agentkube.runtime.errors import Conflict, Invalid, NotFound
from agentkube.runtime.events import EventRecorder
from agentkube.runtime.gvk import GVK
from agentkube.runtime.logging import get_logger
from agentkube.runtime.reconcile import Result, is_terminal

__all__ = ["Finalizer", "FinalizerFunc", "has_finalizer"]

_log = get_logger("agentkube.runtime.finalizers")

FinalizerFunc = Callable[[dict[str, Any]], Awaitable["Result | None"]]

# A domain-qualified Kubernetes name: "<DNS subdomain>/<name>"; the API server warns about others.
_QUALIFIED = re.compile(
    r"(?=.{1,253}/)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+"
    r"/(?=.{1,63}$)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)


def has_finalizer(obj: dict[str, Any], name: str) -> bool:
    """True when ``obj`` carries the finalizer ``name``."""
    return name in ((obj.get("metadata") or {}).get("finalizers") or ())


def _describe(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    name = meta.get("name")
    return f"{obj.get('kind', '?')} {ns}/{name}" if ns else f"{obj.get('kind', '?')} {name}"


class Finalizer:
    """Adds, honours and removes one finalizer of ours; see the module docstring."""

    def __init__(
        self,
        client: Client,
        name: str,
        *,
        recorder: EventRecorder | None = None,
        max_attempts: int = 5,
    ) -> None:
        """
        client: writes the finalizer (JSON patches) and re-reads an object whose patch was rejected.
        name: the finalizer, domain-qualified (``example.com/cleanup``), unique to this controller.
        recorder: where a failed cleanup is reported as a Warning Event. Default None: logs only.
        max_attempts: patches tried per step when the object keeps changing underneath. Default 5.
        """
        if not _QUALIFIED.fullmatch(name):
            raise ValueError(
                f"finalizer name {name!r} must be domain-qualified, '<dns-subdomain>/<name>' "
                "(e.g. 'example.com/cleanup'), with a name part of at most 63 characters"
            )
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.client = client
        self.name = name
        self.recorder = recorder
        self.max_attempts = max_attempts

    def __repr__(self) -> str:
        return f"Finalizer({self.name!r})"

    async def reconcile(
        self,
        obj: dict[str, Any] | None,
        *,
        apply: FinalizerFunc,
        cleanup: FinalizerFunc,
    ) -> Result | None:
        """Run ``apply`` or ``cleanup`` for ``obj`` with our finalizer handled; see the module docstring."""
        if obj is None:
            return None
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            if not has_finalizer(obj, self.name):
                return None
            return await self._finalize(obj, cleanup)
        if not has_finalizer(obj, self.name):
            current = await self.add(obj)
            if current is None:
                return None  # gone meanwhile
            if (current.get("metadata") or {}).get("deletionTimestamp"):
                # Deleted before our finalizer could go on: nothing of ours exists to clean up.
                return None
            obj = current
        return await apply(obj)

    async def _finalize(self, obj: dict[str, Any], cleanup: FinalizerFunc) -> Result | None:
        try:
            result = await cleanup(obj)
        except Exception as err:
            self._report(obj, err)
            if is_terminal(err):
                return Result(requeue=True)
            raise
        if result is not None and (result.requeue or result.requeue_after):
            return result
        await self.remove(obj)
        return None

    def _report(self, obj: dict[str, Any], err: BaseException) -> None:
        text = f"{type(err).__name__}: {err}"
        _log.error(
            "finalizer cleanup failed; the object stays until it succeeds, retrying with backoff",
            finalizer=self.name,
            object=_describe(obj),
            error=text,
        )
        if self.recorder is not None:
            self.recorder.warning(
                obj,
                "FinalizerCleanupFailed",
                f"cleanup for finalizer {self.name} failed: {text}; retrying with backoff "
                "(the object is deleted once the cleanup succeeds)",
                action="Finalize",
            )

    # -- the two writes ---------------------------------------------------------------------------

    async def add(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Add our finalizer to ``obj`` (no-op if present); the object as stored after, None if gone.

        Never adds to an object being deleted (the API server forbids it): such an object comes back
        unchanged, with ``deletionTimestamp`` set.
        """
        return await self._patch_tested(obj, self._add_ops, "add", "add")

    async def remove(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Remove our finalizer (and nothing else) from ``obj``; the object after, None if it is gone
        (which removing the last finalizer of a deleted object does)."""
        return await self._patch_tested(obj, self._remove_ops, "remove", "removal")

    def _add_ops(self, current: dict[str, Any]) -> list[dict[str, Any]] | None:
        meta = current.get("metadata") or {}
        if has_finalizer(current, self.name) or meta.get("deletionTimestamp"):
            return None
        finalizers = meta.get("finalizers") or None
        ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/uid", "value": meta.get("uid")}]
        if finalizers is None:
            return [
                *ops,
                {"op": "test", "path": "/metadata/finalizers", "value": None},
                {"op": "add", "path": "/metadata/finalizers", "value": [self.name]},
            ]
        return [
            *ops,
            {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
            {"op": "add", "path": "/metadata/finalizers/-", "value": self.name},
        ]

    def _remove_ops(self, current: dict[str, Any]) -> list[dict[str, Any]] | None:
        meta = current.get("metadata") or {}
        finalizers = list(meta.get("finalizers") or ())
        if self.name not in finalizers:
            return None
        path = f"/metadata/finalizers/{finalizers.index(self.name)}"
        return [
            {"op": "test", "path": "/metadata/uid", "value": meta.get("uid")},
            {"op": "test", "path": path, "value": self.name},
            {"op": "remove", "path": path},
        ]

    async def _patch_tested(
        self,
        obj: dict[str, Any],
        ops_for: Callable[[dict[str, Any]], list[dict[str, Any]] | None],
        verb: str,
        noun: str,
    ) -> dict[str, Any] | None:
        """Send ``ops_for(current)`` (None: nothing to do, ``current`` is the answer); when one of its
        tests fails (the object changed since it was read), read it again and retry, at most
        ``max_attempts`` times. None when the object is gone (or is another one of that name now)."""
        current = obj
        last: Invalid | None = None
        for attempt in range(1, self.max_attempts + 1):
            ops = ops_for(current)
            if ops is None:
                return current
            try:
                return await self._patch(current, ops)
            except NotFound:
                return None
            except Invalid as err:
                last = err
                fresh = await self._reread(current)
                if fresh is None:
                    return None
                current = fresh
                _log.debug(f"finalizer {noun} raced a change; retrying", finalizer=self.name, attempt=attempt)
        raise Conflict(
            409,
            "Conflict",
            f"{_describe(obj)}: metadata.finalizers: could not {verb} {self.name!r} in "
            f"{self.max_attempts} attempts, the object kept changing (last answer: {last}); "
            "retrying with backoff",
        )

    async def _patch(self, obj: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
        meta = obj["metadata"]
        return await self.client.patch(
            GVK.from_object(obj), meta["name"], meta.get("namespace") or None, ops, patch_type="json"
        )

    async def _reread(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """The object as the API server holds it now; None if it is gone or is another object now."""
        meta = obj["metadata"]
        try:
            fresh = await self.client.get(GVK.from_object(obj), meta["name"], meta.get("namespace") or None)
        except NotFound:
            return None
        if meta.get("uid") and (fresh.get("metadata") or {}).get("uid") != meta.get("uid"):
            return None  # deleted and recreated: the one we were finalizing is gone
        return fresh
