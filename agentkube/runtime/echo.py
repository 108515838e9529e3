"""Echoes: the watch events of a controller's own writes, told apart so they wake nobody who knew.

A reconcile that applies a child or writes a status gets back the object as the server stored it,
resourceVersion and all. Moments later the watch delivers that same state as an event, and without
care the event enqueues the owner again: a second reconcile that finds nothing to do (no write, but
the CPU of reading, building and comparing everything once more). ``OwnWrites`` remembers what a
controller's reconciles wrote, so that the controller can recognise the echo and not enqueue the
reconcile that wrote it.

What a caller may rely on:

- What is noted: the object returned by a ``Client`` write (``create``, ``replace``, ``patch``,
  ``apply``, a status subresource included; never a dry run, never a delete) sent while a reconcile
  runs inside ``OwnWrites.recording(request)``, which ``Controller`` wraps around every reconcile
  (tasks the reconcile starts inherit it, and stop noting when the reconcile returns). It is noted as
  (API group, kind, namespace, name) at that resourceVersion, written by that request. A write made
  anywhere else (a test, a script, leader election, Events sent after the reconcile returned) is
  never noted, so it always wakes the controller as before.
- ``echo_of(event)`` is the request whose reconcile wrote exactly the state the event carries: an
  ``ADDED`` or ``MODIFIED`` from a watch, of that object, at that resourceVersion. The controller
  then enqueues every request the event maps to except that one: another object the same event
  concerns (an MCP referencing the one whose status was written) is woken as always.
- Never an echo, so enqueued exactly as before: a ``DELETED``; a ``RESYNC``; an event of a (re)list
  (``Event.listed``: a list says where an object is now, not what happened on the way there, so
  someone else's change may hide behind our write); an object at any other resourceVersion
  (someone else's edit of a child, a later change, a Deployment's status from its controller); an
  object recreated under the same name (a new resourceVersion). So drift of a child is still put
  back, and a spec change made while we wrote a status still wakes the reconcile.
- The memory is bounded. A note is dropped when its echo arrives, when the object is seen at a newer
  resourceVersion or deleted, when its reconcile ends and a cache the controller watches already
  holds the object at that resourceVersion or a later one (the echo came before the write's answer:
  ``drop_passed``), and once ``max_age`` seconds old (default 60: an echo may never come, lost to a
  relist; an aged note matches nothing and is swept as notes are made and events pass); at most
  ``max_entries`` notes are kept (default 65536), the oldest dropped first. A dropped note costs at
  most one reconcile that finds nothing to do, never a missed change. "Newer" compares
  resourceVersions as numbers (kube-apiserver's are etcd revisions); a server whose resourceVersions
  are not numbers keeps a superseded note until its age runs out.
- The same ``Event`` object asked about twice in a row gets the same answer, so a controller that
  watches a kind twice (``for_kind`` and a ``watches`` of it) spares the writer on both watches.

Limits: a watch event can reach the process before the answer to the write that caused it. The
controller covers that race by holding the events of a request whose reconcile is still running
until that reconcile ends (see ``Controller``), then asking about them, and dropping with
``drop_passed`` the notes whose event went by unheld. A note names the request, not the
controller: each controller has its own ``OwnWrites``, so a write by one controller still wakes
every other. Only writes through ``Client`` are noted; a reconcile writing by other means gets its
echo as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from agentkube.runtime.reconcile import Request
from agentkube.runtime.reflector import Event, EventType

__all__ = ["ObjectId", "OwnWrites", "Recording", "note_written", "object_id"]

ObjectId = tuple[str, str, str | None, str]
"""(API group, kind, namespace or None, name): one object, whatever version it is served as."""


@dataclass(slots=True)
class _Note:
    resource_version: str
    writer: Request
    at: float


class Recording:
    """The writes of one reconcile: a context manager (``OwnWrites.recording``); ``noted`` lists what
    was noted under it, as (object, resourceVersion)."""

    __slots__ = ("_token", "active", "noted", "request", "writes")

    def __init__(self, writes: OwnWrites, request: Request) -> None:
        self.writes = writes
        self.request = request
        self.active = False
        self.noted: list[tuple[ObjectId, str]] = []
        self._token: Token[Recording | None] | None = None

    def __enter__(self) -> Recording:
        self.active = True
        self._token = _recording.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        # Tasks started inside keep this recording in their context: they stop noting now.
        self.active = False
        if self._token is not None:
            _recording.reset(self._token)
            self._token = None


_recording: ContextVar[Recording | None] = ContextVar("agentkube_own_writes", default=None)


def note_written(obj: Any) -> None:
    """Note ``obj`` (what the server answered a write with) as written by the running reconcile, if
    one is running in this context; otherwise do nothing. ``Client`` calls it after every write."""
    recording = _recording.get()
    if recording is not None and recording.active:
        noted = recording.writes.note(obj, recording.request)
        if noted is not None:
            recording.noted.append(noted)


def object_id(obj: Any) -> ObjectId | None:
    """The identity an object is noted under, or None for something that is not a named object."""
    try:
        meta = obj["metadata"]
        group = str(obj["apiVersion"]).rpartition("/")[0]
        return (group, str(obj["kind"]), meta.get("namespace") or None, str(meta["name"]))
    except (KeyError, TypeError, AttributeError):
        return None


def _resource_version(obj: Any) -> str:
    try:
        return str(obj["metadata"].get("resourceVersion") or "")
    except (KeyError, TypeError, AttributeError):
        return ""


def _newer(candidate: str, than: str) -> bool:
    """``candidate`` is a later resourceVersion than ``than``; False when either is not a number."""
    try:
        return int(candidate) > int(than)
    except ValueError:
        return False


class OwnWrites:
    """What one controller's reconciles wrote, by object and resourceVersion; see the module docstring."""

    def __init__(
        self,
        *,
        max_age: float = 60.0,
        max_entries: int = 65536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        max_age: seconds a note is kept when its echo does not come. Default 60.
        max_entries: notes kept at most; the oldest go first. Default 65536.
        clock: monotonic seconds (for tests). Default ``time.monotonic``.
        """
        if max_age <= 0 or max_entries < 1:
            raise ValueError(f"max_age must be positive and max_entries >= 1, got {max_age}, {max_entries}")
        self.max_age = max_age
        self.max_entries = max_entries
        self._clock = clock
        # Oldest first: a note made again is moved to the end, so expiry pops from the front.
        self._notes: dict[ObjectId, _Note] = {}
        self._last: tuple[Event, Request | None] | None = None

    def __len__(self) -> int:
        return len(self._notes)

    def recording(self, request: Request) -> Recording:
        """``with`` it: the writes made in that block (and tasks started in it) are ``request``'s."""
        return Recording(self, request)

    def note(self, obj: Any, writer: Request) -> tuple[ObjectId, str] | None:
        """Remember ``obj`` (as the server stored it) as written by ``writer``'s reconcile; returns
        what was noted (None for an object without a name or resourceVersion)."""
        oid = object_id(obj)
        rv = _resource_version(obj)
        if oid is None or not rv:
            return None
        now = self._clock()
        previous = self._notes.pop(oid, None)
        if previous is not None and _newer(previous.resource_version, rv):
            # Two writes of one object answered out of order: the later state is the one to expect.
            rv, writer = previous.resource_version, previous.writer
        self._notes[oid] = _Note(rv, writer, now)
        self._last = None
        self._expire(now)
        return oid, rv

    def drop_passed(
        self, noted: Iterable[tuple[ObjectId, str]], cached_version: Callable[[ObjectId], str | None]
    ) -> None:
        """Drop the notes among ``noted`` whose event has gone by already: the watch delivered it
        before the write's answer came back, and no reconcile was held for it (a predicate filtered
        it, or it woke only others). ``cached_version(object)`` is the resourceVersion a cache that
        delivers its events to this controller holds the object at (None: not held); a cache shows a
        change just before delivering its event."""
        notes = self._notes
        for oid, rv in noted:
            note = notes.get(oid)
            if note is None or note.resource_version != rv:
                continue
            seen = cached_version(oid)
            if seen is not None and (seen == rv or _newer(seen, rv)):
                del notes[oid]
                self._last = None

    def echo_of(self, event: Event) -> Request | None:
        """The request whose reconcile wrote exactly the state ``event`` carries, else None.

        Consumes the note it matches (and drops one the event shows superseded); asked again about
        the same event object, answers the same.
        """
        last = self._last
        if last is not None and last[0] is event:
            return last[1]
        writer = self._match(event)
        self._last = (event, writer)
        return writer

    def _match(self, event: Event) -> Request | None:
        if event.type is EventType.RESYNC or not self._notes:
            return None
        # Aged notes go as events pass too, not only as new notes are made.
        self._expire(self._clock())
        oid = object_id(event.obj)
        if oid is None:
            return None
        note = self._notes.get(oid)
        if note is None:
            return None
        if event.type is EventType.DELETED or event.listed:
            del self._notes[oid]
            return None
        rv = _resource_version(event.obj)
        if rv == note.resource_version:
            del self._notes[oid]
            return note.writer
        if _newer(rv, note.resource_version):
            del self._notes[oid]
        return None

    def _expire(self, now: float) -> None:
        notes = self._notes
        while notes:
            oid, note = next(iter(notes.items()))
            if len(notes) <= self.max_entries and now - note.at <= self.max_age:
                return
            del notes[oid]
