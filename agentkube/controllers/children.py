"""Children: the objects a controller creates for one of our objects, applied and pruned in one place.

Every controller shares these, so every child looks the same to users and to the garbage collector:

- ``standard_labels(app, instance)``: ``app.kubernetes.io/{name,instance,managed-by,part-of}``;
  ``selector_labels`` is the part (name + instance) that selects a workload's pods, kept small so a
  label added later never changes an immutable Deployment selector.
- ``owner_reference(owner)``: ``controller: true`` (exactly one controller per child, so the owner's
  controller is woken by the child's events) and ``blockOwnerDeletion: true`` (a foreground deletion
  of the owner waits for its children).
- ``child_metadata(owner, name, app)``: name, namespace, labels and owner reference of a child.
- ``Children``: applies a controller's desired children with server-side apply (one field manager,
  force on; a child the server refuses for what it is raises ``ChildRejected`` with its message)
  and deletes the children of its kinds that the owner no longer wants, found through the
  cache's owner-uid index. It writes nothing when the world already matches (see ``Children`` for
  how that is decided), and emits one Normal event per reconcile that created, changed or deleted
  children.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

from agentkube.controllers import FIELD_MANAGER
from agentkube.runtime.errors import ApiError, Invalid, NotFound, is_rejection
from agentkube.runtime.gvk import GVK, ObjectKey
from agentkube.runtime.store import INDEX_OWNER_UID

__all__ = [
    "DESIRED_HASH_ANNOTATION",
    "ChildChanges",
    "ChildConflict",
    "ChildRejected",
    "Children",
    "EventRecorder",
    "child_metadata",
    "controller_of",
    "desired_hash",
    "owner_reference",
    "resource_version_number",
    "selector_labels",
    "standard_labels",
]


DESIRED_HASH_ANNOTATION = "agentkube.io/desired-hash"
SYNC_TIMEOUT = 30.0
"""Seconds the drift check waits for its full copies of ConfigMaps and Services to sync; past that, a
child it cannot compare is applied again (a write, never a missed drift)."""

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"


def selector_labels(app: str, instance: str) -> dict[str, str]:
    """The labels that select the pods of one workload: which program, for which object."""
    return {LABEL_NAME: app, LABEL_INSTANCE: instance}


def standard_labels(app: str, instance: str) -> dict[str, str]:
    """The label set every child carries. ``app`` names the program or role (``mcp-proxy``),
    ``instance`` the object the child belongs to."""
    return {**selector_labels(app, instance), LABEL_MANAGED_BY: "agentkube", LABEL_PART_OF: "agentkube"}


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    """The controller owner reference to ``owner`` (a whole object as the API server returns it)."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(owner: Mapping[str, Any], name: str, app: str) -> dict[str, Any]:
    """Metadata of a child called ``name`` of ``owner``, in the owner's namespace."""
    meta = owner["metadata"]
    child: dict[str, Any] = {"name": name}
    if meta.get("namespace"):
        child["namespace"] = meta["namespace"]
    child["labels"] = standard_labels(app, meta["name"])
    child["ownerReferences"] = [owner_reference(owner)]
    return child


def controller_of(obj: Mapping[str, Any]) -> str | None:
    """The uid of the object's controller (the owner reference with ``controller: true``), or None."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def desired_hash(obj: Mapping[str, Any]) -> str:
    """A digest of ``obj`` as we would apply it (its own hash annotation left out).

    Keys are sorted, so two dicts that serialise the same way hash the same whatever their insertion
    order.
    """
    meta = dict(obj.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != DESIRED_HASH_ANNOTATION}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    body = orjson.dumps({**obj, "metadata": meta}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()


def resource_version_number(obj: Mapping[str, Any] | None) -> int | None:
    """The object's resourceVersion as a number, or None when it is not one.

    kube-apiserver's resourceVersions are etcd revisions, one global counter, and KEP-5504 made
    comparing them supported; an API server with other resourceVersions gets None, and every
    decision that would compare falls back to writing (correct, only not free).
    """
    if obj is None:
        return None
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


class EventRecorder(Protocol):
    """What ``Children`` needs from ``agentkube.runtime.events.EventRecorder``."""

    def event(
        self, obj: dict[str, Any], type: Literal["Normal", "Warning"], reason: str, note: str
    ) -> None: ...


class ChildConflict(Exception):
    """A child's name is taken by an object that this owner does not control."""

    def __init__(self, gvk: GVK, key: ObjectKey, holder: str | None) -> None:
        self.gvk, self.key, self.holder = gvk, key, holder
        who = f"controlled by another object (uid {holder})" if holder else "not managed by agentkube"
        super().__init__(
            f"{gvk.kind} {key} already exists and is {who}; delete or rename it so agentkube can own it"
        )


class ChildRejected(Invalid):
    """The API server refused a child for what it is (``errors.is_rejection``): sending it again
    would be refused again, so it is a problem of the owner to report, not a failure to retry.

    An ``Invalid`` so that handlers of rejected children (``status.CHILD_ERRORS``) take it as one,
    whatever HTTP status the server used (server-side apply answers 500 for a body that does not
    fit the schema). ``error`` is the server's answer; the message is the server's own.
    """

    def __init__(self, gvk: GVK, key: ObjectKey, error: ApiError) -> None:
        self.gvk, self.key, self.error = gvk, key, error
        super().__init__(error.status, error.reason, error.message, error.causes, error.body)

    def _describe(self) -> str:
        text = f"{self.gvk.kind} {self.key}: {self.message or self.reason or self.status}"
        missing = [c for c in self.causes if str(c.get("message") or "") not in self.message]
        if missing:
            text += " [" + "; ".join(f"{c.get('field')}: {c.get('message')}" for c in missing) + "]"
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.gvk, self.key, self.error))


@dataclass
class ChildChanges:
    """What one ``Children.apply`` call wrote."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    applied: dict[tuple[GVK, ObjectKey], dict[str, Any]] = field(default_factory=dict)
    """What the API server answered to each apply: fresher than the cache until the watch catches up."""

    def __bool__(self) -> bool:
        return bool(self.created or self.updated or self.deleted)

    @property
    def reason(self) -> str:
        if self.created and not (self.updated or self.deleted):
            return "Created"
        if self.deleted and not (self.created or self.updated):
            return "Deleted"
        return "Updated"

    @property
    def message(self) -> str:
        parts = [
            f"{verb} {', '.join(names)}"
            for verb, names in (
                ("created", self.created),
                ("updated", self.updated),
                ("deleted", self.deleted),
            )
            if names
        ]
        text = "; ".join(parts)
        return text[:1].upper() + text[1:]


@dataclass(frozen=True, slots=True)
class _Applied:
    """What our last apply of one child returned: the hash we sent, and the version it produced."""

    digest: str
    resource_version: int | None
    generation: int | None


@dataclass
class _Memory:
    """What we remember about one owner's children."""

    applied: dict[tuple[GVK, ObjectKey], _Applied] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    """Uids we deleted that the cache may still show: not deleted (nor reported) twice."""


class Children:
    """Applies the children of one controller's owners and prunes the ones they no longer want.

    Zero writes at rest. Each child carries the hash of what we applied in the annotation
    ``agentkube.io/desired-hash``; the apply is skipped when the cached child carries the hash of what
    we want now. Comparing a hash rather than the fields themselves is deliberate: the API server
    defaults and normalises what we send (``cpu: 0.5`` comes back as ``500m``, a Service gains a
    clusterIP, probes gain timeouts), so any field-by-field "does live contain desired" check is
    either fragile or a write on every reconcile. The hash also lives in metadata, so a child whose
    spec moves its ``generation`` can be cached metadata-only.

    A hash alone misses drift: someone editing a child we own leaves our annotation in place. So we
    also remember, per child, the resourceVersion and generation our last apply produced. A child
    seen with our hash but nothing remembered (after a restart, under a new leader) is checked once
    with a dry-run apply, one request per child, and applied again only when that would change it
    (``_drifted``): an edit made while nobody watched is put back at the next start, and an
    untouched world gets no write. A child whose generation moved past ours
    (kinds with a spec: Deployment, PodDisruptionBudget), or whose resourceVersion did (kinds without
    one: ConfigMap, Service; nothing else writes those in normal operation), was changed by someone
    else and is applied again; force takes the fields back.

    The memory also covers the cache lagging our own writes: a child missing from the cache, or
    cached at a resourceVersion older than the one our apply returned, is one we just wrote, and is
    not written twice.
    """

    def __init__(
        self,
        cache: Any,
        client: Any,
        recorder: EventRecorder | None,
        owned: Mapping[GVK, bool],
        *,
        field_manager: str = FIELD_MANAGER,
    ) -> None:
        """
        cache, client: the manager's (``manager.cache``, ``manager.client``).
        recorder: where Normal events about children go; None sends none.
        owned: the kinds of children, each with whether it is cached metadata-only (everything
            ``Children`` reads of a child is in its metadata; cache a kind in full when the reconcile
            also reads its status, as for a Deployment).
        """
        self._client = client
        self._recorder = recorder
        self._field_manager = field_manager
        self.owned = dict(owned)
        # Our own informers: reads and the cache-lag check must use the same store.
        self._informers = {gvk: cache.informer(gvk, metadata_only=meta) for gvk, meta in self.owned.items()}
        # Full copies of our own children (by their managed-by label) of the kinds cached
        # metadata-only whose content moves no generation: what ``_drifted`` compares with.
        self._full = {
            gvk: cache.informer(gvk, label_selector=f"{LABEL_MANAGED_BY}=agentkube")
            for gvk, meta in self.owned.items()
            if meta and gvk in _CONTENT_WITHOUT_GENERATION
        }
        self._memory: dict[tuple[str, str, str], _Memory] = {}

    def register(self, builder: Any) -> Any:
        """Declare the owned kinds on a controller ``Builder`` (``builder.owns`` for each)."""
        for gvk, meta in self.owned.items():
            builder = builder.owns(gvk, metadata_only=meta)
        return builder

    def get(self, gvk: GVK, name: str, namespace: str | None) -> dict[str, Any] | None:
        """A cached child (full or metadata-only, as declared)."""
        found: dict[str, Any] | None = self._informers[gvk].store.get(ObjectKey(namespace or None, name))
        return found

    def owned_by(self, gvk: GVK, owner: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Cached children of ``gvk`` that ``owner`` controls, through the owner-uid index."""
        uid = owner["metadata"]["uid"]
        store = self._informers[gvk].store
        return [c for c in store.by_index(INDEX_OWNER_UID, uid) if controller_of(c) == uid]

    def forget(self, owner_gvk: GVK, owner: ObjectKey) -> None:
        """Drop what we remember about an owner's children (call it when the owner is gone)."""
        self._memory.pop(_owner_id(owner_gvk, owner), None)

    async def apply(
        self, owner: dict[str, Any], desired: Sequence[dict[str, Any]], *, created: Sequence[str] = ()
    ) -> ChildChanges:
        """Make ``owner``'s children of the owned kinds exactly ``desired``.

        Applies each desired child that differs (concurrently), then deletes the owner's children of
        the owned kinds that are not desired. Raises ``ChildConflict`` (before writing anything)
        when a desired name is taken by an object the owner does not control, and ``ChildRejected``
        (after applying the others) when the server refuses a child for what it is.

        ``created`` names objects the caller made for this owner just before (``"Secret x"``): they
        are reported in the same one event as the children's changes.
        """
        changes = ChildChanges(created=list(created))
        owner_uid = owner["metadata"]["uid"]
        owner_id = _owner_id(GVK.from_object(owner), ObjectKey.of(owner))
        memory = self._memory.setdefault(owner_id, _Memory())
        applied = memory.applied
        plans: list[tuple[GVK, ObjectKey, dict[str, Any], bool]] = []
        unverified: list[tuple[GVK, ObjectKey, dict[str, Any], dict[str, Any]]] = []
        for child in desired:
            gvk = GVK.from_object(child)
            if gvk not in self._informers:
                raise ValueError(f"{gvk} is not an owned kind of this controller ({list(self.owned)})")
            key = ObjectKey.of(child)
            live = self.get(gvk, key.name, key.namespace)
            if live is not None and controller_of(live) != owner_uid:
                self._record(owner, changes)
                raise ChildConflict(gvk, key, controller_of(live))
            body = _with_hash(child)
            digest = body["metadata"]["annotations"][DESIRED_HASH_ANNOTATION]
            state = self._up_to_date(gvk, key, digest, live, applied)
            if state is None and live is not None:
                unverified.append((gvk, key, body, live))
            elif not state:
                plans.append((gvk, key, body, live is None))
        plans.extend(await self._drifted(unverified, applied))

        results = await asyncio.gather(
            *(
                self._client.apply(body, field_manager=self._field_manager, force=True)
                for *_, body, _ in plans
            ),
            return_exceptions=True,
        )
        errors: list[BaseException] = []
        rejected: list[ChildRejected] = []
        for (gvk, key, body, new), result in zip(plans, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, ApiError) and is_rejection(result):
                    rejected.append(ChildRejected(gvk, key, result))
                else:
                    errors.append(result)
                continue
            applied[(gvk, key)] = _Applied(
                body["metadata"]["annotations"][DESIRED_HASH_ANNOTATION],
                resource_version_number(result),
                result.get("metadata", {}).get("generation"),
            )
            (changes.created if new else changes.updated).append(f"{gvk.kind} {key.name}")
            changes.applied[(gvk, key)] = result
        # A failure a retry may cure goes first: raising a rejection would end the retries.
        errors.extend(rejected)
        if errors:
            self._record(owner, changes)
            raise errors[0]

        wanted = {(GVK.from_object(c), ObjectKey.of(c)) for c in desired}
        cached_uids: set[str] = set()
        try:
            for gvk in self._informers:
                for child in self.owned_by(gvk, owner):
                    key = ObjectKey.of(child)
                    uid = str(child["metadata"].get("uid"))
                    cached_uids.add(uid)
                    if (gvk, key) in wanted or uid in memory.deleted:
                        continue
                    await self._delete(gvk, key, child)
                    memory.deleted.add(uid)
                    applied.pop((gvk, key), None)
                    changes.deleted.append(f"{gvk.kind} {key.name}")
            # Once the cache no longer shows a deleted child, there is nothing left to remember.
            memory.deleted &= cached_uids
        finally:
            self._record(owner, changes)
        return changes

    def _up_to_date(
        self,
        gvk: GVK,
        key: ObjectKey,
        digest: str,
        live: dict[str, Any] | None,
        applied: dict[tuple[GVK, ObjectKey], _Applied],
    ) -> bool | None:
        """True: nothing to write; False: apply; None: the live child carries our hash but nothing
        remembered vouches for its fields (``_drifted`` checks it)."""
        record = applied.get((gvk, key))
        live_rv = resource_version_number(live)
        if record is not None and record.digest == digest and record.resource_version is not None:
            if live is None:
                # Not cached: either our create has not reached the cache yet, or the child was
                # deleted after it did. The informer's position tells which.
                seen = _number(self._informers[gvk].resource_version)
                return seen is not None and seen < record.resource_version
            if live_rv is not None and live_rv <= record.resource_version:
                return True  # the cache shows our write, or lags behind it
        if live is None:
            return False
        annotations = live["metadata"].get("annotations") or {}
        if annotations.get(DESIRED_HASH_ANNOTATION) != digest:
            return False
        generation = live["metadata"].get("generation")
        if record is None or record.digest != digest:
            # Matching hash with nothing (current) remembered: after a restart, a new leader, or
            # another replica wrote it. The hash says what was applied once, not that it is still
            # there: someone may have edited the child while nobody watched.
            return None
        if generation is not None and record.generation is not None:
            return bool(generation <= record.generation)
        return (
            live_rv is not None and record.resource_version is not None and live_rv <= record.resource_version
        )

    async def _drifted(
        self,
        unverified: Sequence[tuple[GVK, ObjectKey, dict[str, Any], dict[str, Any]]],
        applied: dict[tuple[GVK, ObjectKey], _Applied],
    ) -> list[tuple[GVK, ObjectKey, dict[str, Any], bool]]:
        """The children of ``unverified`` (body, cached copy) to apply again: those a dry-run apply
        would change. One request per child, once per process (or per hash): the others become the
        baseline that later drift is judged against, so at rest nothing is sent again.

        A dry-run answers with the object as the apply would leave it, and a no-op apply leaves it
        as it is; so the answer differs from the cached copy exactly when a field we own was edited
        (or removed) by someone else. The comparison is of the whole object but its status for a
        kind cached in full; for one cached metadata-only, of its metadata, whose ``generation``
        moves with the spec (custom resources, Deployments, PDBs, NetworkPolicies); ConfigMaps and
        Services move none, so for them a second informer holds full copies of our own children
        (label ``app.kubernetes.io/managed-by=agentkube``) to compare with. A failed dry-run, or a
        copy the second informer does not hold yet, is answered by applying for real.
        """
        if not unverified:
            return []
        for gvk in {gvk for gvk, *_ in unverified if gvk in self._full}:
            # Not a watch source of the controller, so not waited for before the first reconcile.
            await self._full[gvk].wait_for_sync(SYNC_TIMEOUT)
        answers = await asyncio.gather(
            *(
                self._client.apply(body, field_manager=self._field_manager, force=True, dry_run=True)
                for _, _, body, _ in unverified
            ),
            return_exceptions=True,
        )
        plans: list[tuple[GVK, ObjectKey, dict[str, Any], bool]] = []
        for (gvk, key, body, live), answer in zip(unverified, answers, strict=True):
            metadata_only = self._informers[gvk].metadata_only
            seen: Mapping[str, Any] | None = live
            if gvk in self._full:
                seen, metadata_only = self._full[gvk].store.get(key), False
            if (
                isinstance(answer, BaseException)
                or seen is None
                or _shape(answer, metadata_only) != _shape(seen, metadata_only)
            ):
                plans.append((gvk, key, body, False))
                continue
            applied[(gvk, key)] = _Applied(
                body["metadata"]["annotations"][DESIRED_HASH_ANNOTATION],
                resource_version_number(live),
                live["metadata"].get("generation"),
            )
        return plans

    async def _delete(self, gvk: GVK, key: ObjectKey, child: dict[str, Any]) -> None:
        # The uid precondition: never delete a newer object that took the name in the meantime.
        with contextlib.suppress(NotFound):
            await self._client.delete(gvk, key.name, key.namespace, uid=child["metadata"].get("uid"))

    def _record(self, owner: dict[str, Any], changes: ChildChanges) -> None:
        if changes and self._recorder is not None:
            self._recorder.event(owner, "Normal", changes.reason, changes.message)


def _owner_id(gvk: GVK, key: ObjectKey) -> tuple[str, str, str]:
    return (gvk.kind, key.namespace or "", key.name)


def _with_hash(child: dict[str, Any]) -> dict[str, Any]:
    meta = dict(child["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}), DESIRED_HASH_ANNOTATION: desired_hash(child)}
    return {**child, "metadata": meta}


_CONTENT_WITHOUT_GENERATION = frozenset({GVK("", "v1", "ConfigMap"), GVK("", "v1", "Service")})
"""Kinds whose content changes move no ``metadata.generation``."""


def _shape(obj: Mapping[str, Any], metadata_only: bool) -> dict[str, Any]:
    """What of a child ``_drifted`` compares: not its status, resourceVersion or managedFields."""
    meta = {
        k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("managedFields", "resourceVersion")
    }
    if metadata_only:
        return {"metadata": meta}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def _number(value: str) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
