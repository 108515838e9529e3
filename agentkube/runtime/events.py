"""Kubernetes Events (events.k8s.io/v1) about any object, recorded without ever blocking the caller.

Use::

    recorder = EventRecorder(client, "mcp-controller")
    recorder.event(mcp, "Warning", "SecretNotFound", 'Secret "github-pat" not found', action="Reconcile")

What a caller may rely on:

- ``event()`` is synchronous, never blocks and never raises for API trouble: it queues the event
  (bounded; when full, the event is dropped and a warning logged) and a background task writes it.
  Failed writes are logged, not raised. Call it from code running on the event loop.
- The Event's ``regarding`` is the object's reference (apiVersion, kind, namespace, name, uid); it
  lives in the object's namespace, or in ``default`` for cluster-scoped objects.
- Repeats are folded: the same (object, type, reason, note) seen again within ``series_window``
  seconds (default 10 min) of its last occurrence updates the existing Event's
  ``series {count, lastObservedTime}`` with a patch instead of creating a new object, and repeats
  queued together are written as one update, so a failing retry loop cannot flood etcd.
  ``series.count`` is the total number of occurrences.
- The note is cut to 1 KiB (the API server's limit, in UTF-8 bytes); reason and action to 128
  characters. ``type`` must be ``Normal`` or ``Warning`` (anything else is a bug: ``ValueError``).
- ``await flush()`` returns once everything queued so far has been written (or has failed);
  ``await close()`` flushes (bounded) and stops the background task.
- ``stop()`` ends the recorder's writes at once and for good: what is queued is dropped, a write in
  flight is cancelled, and later ``event()`` calls are ignored. The manager calls it when leadership
  is lost, since another replica may lead already and our term's writes are over.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import re
import socket
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from agentkube.runtime.client import Client
from agentkube.runtime.errors import NotFound
from agentkube.runtime.gvk import GVK
from agentkube.runtime.logging import get_logger

__all__ = ["EventRecorder", "EventType"]

EventType = Literal["Normal", "Warning"]

log = get_logger(__name__)

_EVENT = GVK("events.k8s.io", "v1", "Event")
_NOTE_LIMIT_BYTES = 1024
_FIELD_LIMIT = 128
# reportingController must be a Kubernetes qualified name: [prefix/]name.
_QUALIFIED_NAME = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)


@dataclass(frozen=True)
class _Key:
    regarding: tuple[str, str, str, str, str]  # apiVersion, kind, namespace, name, uid
    type: str
    reason: str
    note: str


@dataclass
class _Pending:
    key: _Key
    regarding: dict[str, Any]
    action: str
    at: datetime


@dataclass
class _Series:
    name: str
    namespace: str
    count: int
    last_seen: float  # monotonic


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _truncate_utf8(text: str, limit: int) -> str:
    raw = text.encode()
    if len(raw) <= limit:
        return text
    marker = "..."
    return raw[: limit - len(marker)].decode("utf-8", errors="ignore") + marker


def _reference(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    ref = {"apiVersion": obj.get("apiVersion", ""), "kind": obj.get("kind", ""), "name": meta.get("name", "")}
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    if meta.get("uid"):
        ref["uid"] = meta["uid"]
    return ref


class EventRecorder:
    """Records events.k8s.io/v1 Events as ``reporting_controller``; see the module docstring."""

    def __init__(
        self,
        client: Client,
        reporting_controller: str,
        reporting_instance: str | None = None,
        *,
        series_window: float = 600.0,
        queue_size: int = 1000,
        max_series: int = 4096,
    ) -> None:
        """
        reporting_controller: who reports, a qualified name such as ``agentkube.io/mcp-controller``.
        reporting_instance: which replica; default ``$POD_NAME``, else the host name (a pod's name).
        series_window: seconds after an event's last occurrence within which a repeat updates it.
        queue_size: events that may wait to be written before new ones are dropped. Default 1000.
        max_series: repeats tracked (least recently seen forgotten first). Default 4096.
        """
        if not _QUALIFIED_NAME.fullmatch(reporting_controller) or len(reporting_controller) > 316:
            raise ValueError(
                f"reporting_controller: {reporting_controller!r} is not a qualified name "
                "(e.g. 'mcp-controller' or 'agentkube.io/mcp-controller')"
            )
        instance = reporting_instance or os.environ.get("POD_NAME") or socket.gethostname()
        if series_window <= 0 or queue_size <= 0 or max_series <= 0:
            raise ValueError("series_window, queue_size and max_series must be positive")
        self._client = client
        self.reporting_controller = reporting_controller
        self.reporting_instance = instance[:_FIELD_LIMIT]
        self.series_window = series_window
        self._queue_size = queue_size
        self._max_series = max_series
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._series: OrderedDict[_Key, _Series] = OrderedDict()
        self._dropped = 0
        self._stopped = False

    # ------------------------------------------------------------------------------------- public

    def event(
        self,
        obj: dict[str, Any],
        type: EventType,
        reason: str,
        note: str,
        *,
        action: str | None = None,
    ) -> None:
        """Record that ``reason`` happened to ``obj`` (queued; never blocks, never raises API errors).

        action: what the controller was doing (``Reconcile``, ``Apply``, ...); default: the reason.
        """
        if type not in ("Normal", "Warning"):
            raise ValueError(f"type: {type!r} must be 'Normal' or 'Warning'")
        if not reason:
            raise ValueError("reason: required (a CamelCase word such as 'SecretNotFound')")
        if self._stopped:
            log.debug("event recorder stopped; event not recorded", reason=reason)
            return
        regarding = _reference(obj)
        note = _truncate_utf8(note, _NOTE_LIMIT_BYTES)
        reason = reason[:_FIELD_LIMIT]
        key = _Key(
            (
                regarding["apiVersion"],
                regarding["kind"],
                regarding.get("namespace", ""),
                regarding["name"],
                regarding.get("uid", ""),
            ),
            type,
            reason,
            note,
        )
        pending = _Pending(key, regarding, (action or reason)[:_FIELD_LIMIT], datetime.now(UTC))
        try:
            queue = self._ensure_worker()
            queue.put_nowait(pending)
        except asyncio.QueueFull:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 100 == 0:
                log.warning(
                    "event queue full; dropping events",
                    dropped=self._dropped,
                    reason=reason,
                    regarding=f"{regarding['kind']} {key.regarding[2]}/{regarding['name']}",
                )
        except RuntimeError as exc:  # no running event loop
            log.warning("cannot record event outside the event loop", reason=reason, error=str(exc))

    def normal(self, obj: dict[str, Any], reason: str, note: str, *, action: str | None = None) -> None:
        self.event(obj, "Normal", reason, note, action=action)

    def warning(self, obj: dict[str, Any], reason: str, note: str, *, action: str | None = None) -> None:
        self.event(obj, "Warning", reason, note, action=action)

    async def flush(self) -> None:
        """Wait until every event queued so far has been written or has failed."""
        if self._queue is not None:
            await self._queue.join()

    @property
    def stopped(self) -> bool:
        """True once ``stop()`` was called: nothing more is written."""
        return self._stopped

    def stop(self) -> None:
        """Stop writing now: drop what is queued, cancel the write in flight, ignore later events.

        Synchronous so that it takes effect before anything else runs on the event loop. Permanent:
        a stopped recorder never writes again (make a new one for a new term).
        """
        self._stopped = True
        queue, worker = self._queue, self._worker
        self._queue = None
        self._worker = None
        if queue is not None:
            dropped = queue.qsize()
            while not queue.empty():
                queue.get_nowait()
                queue.task_done()
            if dropped:
                log.info(
                    "event recorder stopped; queued events dropped",
                    reporting=self.reporting_controller,
                    dropped=dropped,
                )
        if worker is not None:
            worker.cancel()

    async def close(self, grace: float = 5.0) -> None:
        """Flush for at most ``grace`` seconds, then stop the background writer."""
        if self._worker is None:
            return
        try:
            async with asyncio.timeout(grace):
                await self.flush()
        except TimeoutError:
            log.warning("event recorder closed with events unwritten", reporting=self.reporting_controller)
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        self._worker = None
        self._queue = None

    # ------------------------------------------------------------------------------------- writer

    def _ensure_worker(self) -> asyncio.Queue[_Pending]:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = self._queue or asyncio.Queue(maxsize=self._queue_size)
            # A context of its own: started by the first event, often inside a reconcile, it must not
            # carry that reconcile's log fields nor note its writes as that reconcile's (``echo``).
            self._worker = loop.create_task(
                self._work(self._queue),
                name=f"events {self.reporting_controller}",
                context=contextvars.Context(),
            )
        return self._queue

    async def _work(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            try:
                # Repeats queued together become one write carrying their number.
                grouped: dict[_Key, list[_Pending]] = {}
                for pending in batch:
                    grouped.setdefault(pending.key, []).append(pending)
                for occurrences in grouped.values():
                    try:
                        await self._write(occurrences)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        first = occurrences[0]
                        log.warning(
                            "could not record event",
                            reason=first.key.reason,
                            regarding=f"{first.regarding['kind']} {first.key.regarding[2]}/"
                            f"{first.regarding['name']}",
                            error=str(exc),
                        )
            finally:
                for _ in batch:
                    queue.task_done()

    async def _write(self, occurrences: list[_Pending]) -> None:
        first, last = occurrences[0], occurrences[-1]
        key = first.key
        now = time.monotonic()
        series = self._series.get(key)
        if series is not None and now - series.last_seen <= self.series_window:
            series.count += len(occurrences)
            series.last_seen = now
            self._series.move_to_end(key)
            patch = {"series": {"count": series.count, "lastObservedTime": _micro_time(last.at)}}
            try:
                await self._client.patch(_EVENT, series.name, series.namespace, patch)
                return
            except NotFound:
                # The Event expired (the API server keeps Events for an hour) or was deleted.
                del self._series[key]

        namespace = first.regarding.get("namespace") or "default"
        name = f"{first.regarding['name'] or 'event'}.{uuid.uuid4().hex[:16]}"
        event: dict[str, Any] = {
            "apiVersion": _EVENT.api_version,
            "kind": _EVENT.kind,
            "metadata": {"name": name[:253], "namespace": namespace},
            "eventTime": _micro_time(first.at),
            "type": key.type,
            "reason": key.reason,
            "note": key.note,
            "action": first.action,
            "regarding": first.regarding,
            "reportingController": self.reporting_controller,
            "reportingInstance": self.reporting_instance,
        }
        if len(occurrences) > 1:
            event["series"] = {"count": len(occurrences), "lastObservedTime": _micro_time(last.at)}
        created = await self._client.create(event)
        self._series[key] = _Series(created["metadata"]["name"], namespace, len(occurrences), now)
        self._series.move_to_end(key)
        while len(self._series) > self._max_series:
            self._series.popitem(last=False)
