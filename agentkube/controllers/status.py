"""Status of our workload kinds: the conditions every controller reports, and writing status only on change.

Conditions have positive polarity (True is good) and CamelCase reasons that say what is wrong:

- ``Accepted``: the spec is valid and every reference resolved. False carries the first problem's
  reason (``InvalidSpec``, ``SecretNotFound``, ``SecretKeyNotFound``, ``UpstreamRefNotFound``,
  ``ReferenceCycle``, ``ChildConflict``) and every problem's message.
- ``Available``: the Deployment's own ``Available`` condition, with what its pods say is wrong
  (``pods.pod_problem``). While the Deployment is not available, the first pod problem gives the
  reason, the kubelet's or the scheduler's word for it as ``kubectl describe pod`` shows it
  (``CreateContainerConfigError``, ``CrashLoopBackOff``, ``ImagePullBackOff``, ``Unschedulable``;
  ``ContainerNotReady`` for a running container whose readiness probe fails), and the message,
  naming the Deployment, the pod, the container and the problem
  (``Deployment team-a/github-tools is not available: pod team-a/github-tools-7d9f-abcde: container
  mcp-proxy: CrashLoopBackOff: exit 1: <the program's last log lines>``); without one it stays
  ``DeploymentUnavailable`` with the Deployment's message. While it is available (old pods serve
  during a rollout whose new pods fail), the status stays True and ``DeploymentAvailable``, and a
  failing pod is named in the message.
- ``Ready``: both of the above and no failing pod; when not, the reason and message of the first
  that is not True, or of the failing pod (a rollout stuck on a bad config is not Ready while the
  old pods still serve: what is running is not what the spec asks for).

Each carries ``observedGeneration``, and ``lastTransitionTime`` moves only when ``status`` does
(``agentkube.runtime.conditions``). ``StatusWriter`` is how every controller writes status: it knows
the fields and condition types the controller owns, writes through the status subresource with
server-side apply, and only when what we computed differs from what the object shows.

``ready`` (``ready_of``) is the one derived field: ``<readyReplicas>/<spec.replicas>``, the pair
kubectl shows as a Deployment's READY, as one string because a printer column is one JSONPath.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from agentkube.controllers import FIELD_MANAGER
from agentkube.controllers.children import ChildConflict, resource_version_number
from agentkube.runtime.conditions import find_status_condition, set_status_condition
from agentkube.runtime.errors import Invalid
from agentkube.runtime.gvk import GVK, ObjectKey

__all__ = [
    "ACCEPTED",
    "AVAILABLE",
    "CHILD_ERRORS",
    "CONDITION_TYPES",
    "READY",
    "Problem",
    "StatusWriter",
    "accepted_condition",
    "available_condition",
    "child_problem",
    "merge_conditions",
    "ready_condition",
    "ready_of",
]

ACCEPTED = "Accepted"
AVAILABLE = "Available"
READY = "Ready"
CONDITION_TYPES = (ACCEPTED, AVAILABLE, READY)

# metav1.Condition allows 32768 characters of message; leave room for the ellipsis.
_MESSAGE_MAX = 32000


@dataclass(frozen=True)
class Problem:
    """A reason an object cannot be accepted: a CamelCase reason and a message naming object and field."""

    reason: str
    message: str


CHILD_ERRORS = (ChildConflict, Invalid)
"""Failures of ``Children.apply`` a user can fix, which ``child_problem`` turns into a ``Problem``."""


def child_problem(label: str, error: ChildConflict | Invalid) -> Problem:
    """The problem of a child that could not be applied: its name is taken by an object we do not
    control (``ChildConflict``), or the API server rejected it (``ChildRejected``)."""
    if isinstance(error, ChildConflict):
        return Problem("ChildConflict", f"{label}: {error}")
    return Problem("ChildRejected", f"{label}: the API server rejected a child: {error}")


def _message(text: str) -> str:
    return text if len(text) <= _MESSAGE_MAX else text[: _MESSAGE_MAX - 3] + "..."


def accepted_condition(problems: Sequence[Problem], generation: int) -> dict[str, Any]:
    """``Accepted``: True without problems; else False with the first problem's reason, all messages."""
    if not problems:
        return {
            "type": ACCEPTED,
            "status": "True",
            "observedGeneration": generation,
            "reason": "Accepted",
            "message": "The spec is valid and every reference resolved.",
        }
    return {
        "type": ACCEPTED,
        "status": "False",
        "observedGeneration": generation,
        "reason": problems[0].reason,
        "message": _message("; ".join(dict.fromkeys(p.message for p in problems))),
    }


def available_condition(
    deployment: Mapping[str, Any] | None, generation: int, pods: Problem | None = None
) -> dict[str, Any]:
    """``Available``: the Deployment's ``Available`` condition, with ``pods``, the first problem of
    its pods (``pods.pod_problem``), as the reason and message while it is not available and in the
    message while it is (see the module docstring)."""
    condition: dict[str, Any] = {"type": AVAILABLE, "observedGeneration": generation}
    if deployment is None:
        return {
            **condition,
            "status": "False",
            "reason": "DeploymentNotFound",
            "message": "The Deployment does not exist yet.",
        }
    name = f"Deployment {deployment['metadata'].get('namespace')}/{deployment['metadata']['name']}"
    theirs = find_status_condition((deployment.get("status") or {}).get("conditions"), "Available")
    if theirs is None:
        return {
            **condition,
            "status": "Unknown",
            "reason": pods.reason if pods else "DeploymentStatusUnknown",
            "message": _message(
                f"{name} has not reported whether it is available yet"
                + (f"; {pods.message}" if pods else ".")
            ),
        }
    detail = theirs.get("message") or ""
    if theirs.get("status") == "True":
        if pods is not None:
            detail = f"{detail.rstrip('.')}; but {pods.message}" if detail else f"but {pods.message}"
        return {
            **condition,
            "status": "True",
            "reason": "DeploymentAvailable",
            "message": _message(f"{name} is available" + (f": {detail}" if detail else ".")),
        }
    if pods is not None:
        return {
            **condition,
            "status": "False" if theirs.get("status") == "False" else "Unknown",
            "reason": pods.reason,
            "message": _message(f"{name} is not available: {pods.message}"),
        }
    return {
        **condition,
        "status": "False" if theirs.get("status") == "False" else "Unknown",
        "reason": "DeploymentUnavailable",
        "message": _message(f"{name} is not available" + (f": {detail}" if detail else ".")),
    }


def ready_condition(
    accepted: Mapping[str, Any],
    available: Mapping[str, Any],
    generation: int,
    pods: Problem | None = None,
) -> dict[str, Any]:
    """``Ready``: True when ``accepted`` and ``available`` are and no pod fails; else the first one
    that is not, or ``pods``: the failing pod of an available Deployment (old pods serve while the
    new ones of a rollout crash), which needs someone as much as an outage does."""
    for condition in (accepted, available):
        if condition["status"] != "True":
            return {
                "type": READY,
                "status": "False" if condition["status"] == "False" else "Unknown",
                "observedGeneration": generation,
                "reason": condition["reason"],
                "message": condition["message"],
            }
    if pods is not None:
        return {
            "type": READY,
            "status": "False",
            "observedGeneration": generation,
            "reason": pods.reason,
            "message": _message(f"Available, but {pods.message}"),
        }
    return {
        "type": READY,
        "status": "True",
        "observedGeneration": generation,
        "reason": "Ready",
        "message": "Accepted and available.",
    }


def merge_conditions(
    live: Mapping[str, Any],
    new: Sequence[Mapping[str, Any]],
    types: Iterable[str] = CONDITION_TYPES,
    *,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Our conditions after setting ``new`` over those ``live`` (the cached object) shows.

    Of the ``types`` a controller writes, those in ``new`` are set (``lastTransitionTime`` moves only
    with ``status``) and the others are dropped, so a condition that no longer applies disappears
    with the next status apply. Conditions of other types belong to other writers and are left out.
    """
    wanted = {c["type"] for c in new} & set(types)
    ours = [
        copy.deepcopy(c)
        for c in (live.get("status") or {}).get("conditions") or ()
        if c.get("type") in wanted
    ]
    for condition in new:
        set_status_condition(ours, condition, now=now)
    return ours


READY_FIELD = "ready"


def ready_of(obj: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    """``<ready>/<desired>``, as kubectl shows a Deployment's READY: ``status["readyReplicas"]`` of the
    ``spec.replicas`` of ``obj`` (``status["replicas"]`` when the spec gives none)."""
    desired = (obj.get("spec") or {}).get("replicas")
    if not isinstance(desired, int):
        desired = status.get("replicas") or 0
    return f"{int(status.get('readyReplicas') or 0)}/{desired}"


def _digest(status: Mapping[str, Any]) -> str:
    # Transition times left out: a recomputation from a stale copy stamps new ones, and is still the
    # same status for the purpose of "did we just write this".
    timeless = {
        **status,
        "conditions": [
            {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions") or ()
        ],
    }
    return hashlib.sha256(orjson.dumps(timeless, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class _Written:
    digest: str
    resource_version: int | None


class StatusWriter:
    """Writes the status of objects of one kind, and only when it changed.

    A controller declares what of the status is its own: ``fields`` (top-level status fields) and
    ``condition_types``. The status passed to ``apply`` is whole: an owned field it leaves out is one
    the controller no longer sets, and goes (server-side apply on the status subresource removes the
    fields a manager owned and no longer applies); a declared condition type it leaves out goes too.
    Fields and conditions of other writers are neither compared nor applied.

    A writer that owns ``ready`` fills it in from the status it is given (``ready_of``) whenever that
    status has ``readyReplicas`` and no ``ready`` of its own: the two are always written together, in
    one request, and a status without ``readyReplicas`` releases ``ready`` too.

    ``apply`` compares the owned part with the cached object's status and writes only on a
    difference, so a controller at rest writes nothing. The cache may lag our own last write; we
    remember what we wrote and the resourceVersion it produced, and do not write the same status
    again over a copy older than that.
    """

    def __init__(
        self,
        client: Any,
        *,
        fields: Iterable[str],
        condition_types: Iterable[str] = CONDITION_TYPES,
        field_manager: str = FIELD_MANAGER,
    ) -> None:
        """
        fields: the status fields this controller owns, ``conditions`` among them if it has any.
        condition_types: the condition types it writes (default: ``Accepted``, ``Available``, ``Ready``).
        """
        self._client = client
        self.fields = tuple(fields)
        self.condition_types = tuple(condition_types)
        self._field_manager = field_manager
        self._written: dict[tuple[GVK, ObjectKey], _Written] = {}

    def forget(self, gvk: GVK, key: ObjectKey) -> None:
        """Drop what we remember about an object (call it when the object is gone)."""
        self._written.pop((gvk, key), None)

    def _desired(self, obj: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(status) - set(self.fields)
        if unknown:
            raise ValueError(f"status fields {sorted(unknown)} are not among the owned {list(self.fields)}")
        desired = dict(status)
        if READY_FIELD in self.fields and "readyReplicas" in desired and READY_FIELD not in desired:
            desired[READY_FIELD] = ready_of(obj, desired)
        if "conditions" in desired:
            desired["conditions"] = merge_conditions(obj, desired["conditions"], self.condition_types)
        return desired

    def _shows(self, obj: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
        live = obj.get("status") or {}
        for name in self.fields:
            have, want = live.get(name), desired.get(name)
            if name == "conditions":
                have = [c for c in have or () if c.get("type") in self.condition_types] or None
                want = want or None
            if have != want:
                return False
        return True

    async def apply(self, obj: dict[str, Any], status: Mapping[str, Any]) -> bool:
        """Apply ``status`` to ``obj`` (the cached object) unless it already shows it; True if written.

        ``status["conditions"]`` are the conditions as computed now; their ``lastTransitionTime``
        is taken from ``obj`` where the status did not change.
        """
        gvk = GVK.from_object(obj)
        key = ObjectKey.of(obj)
        desired = self._desired(obj, status)
        if self._shows(obj, desired):
            return False
        digest = _digest(desired)
        written = self._written.get((gvk, key))
        live_rv = resource_version_number(obj)
        if (
            written is not None
            and written.digest == digest
            and written.resource_version is not None
            and live_rv is not None
            and live_rv < written.resource_version
        ):
            return False
        meta = obj["metadata"]
        body = {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            # The uid makes the write a precondition on this very object, not a newer namesake.
            "metadata": {"name": meta["name"], "namespace": meta.get("namespace"), "uid": meta["uid"]},
            "status": desired,
        }
        if not body["metadata"]["namespace"]:
            del body["metadata"]["namespace"]
        result = await self._client.apply(
            body, field_manager=self._field_manager, force=True, subresource="status"
        )
        self._written[(gvk, key)] = _Written(digest, resource_version_number(result))
        return True
