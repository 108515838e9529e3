"""Status of our workload kinds: the conditions every controller reports, and writing status only on change.

Conditions have positive polarity (True is good) and CamelCase reasons that say what is wrong:

- ``Accepted``: the spec is valid and every reference resolved. False carries the first problem's
  reason (``InvalidSpec``, ``SecretNotFound``, ``SecretKeyNotFound``, ``UpstreamRefNotFound``,
  ``ReferenceCycle``, ``ChildConflict``) and every problem's message.
- ``Available``: the Deployment's own ``Available`` condition, mirrored.
- ``Ready``: both of the above; when not, the reason and message of the first that is not True.

Each carries ``observedGeneration``, and ``lastTransitionTime`` moves only when ``status`` does
(``agentkube.runtime.conditions``). ``StatusWriter.apply`` writes through the status subresource with
server-side apply, and only when what we computed differs from what the object shows.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from agentkube.controllers import FIELD_MANAGER
from agentkube.controllers.children import resource_version_number
from agentkube.runtime.conditions import find_status_condition, set_status_condition
from agentkube.runtime.gvk import GVK, ObjectKey

__all__ = [
    "ACCEPTED",
    "AVAILABLE",
    "CONDITION_TYPES",
    "READY",
    "Problem",
    "StatusWriter",
    "accepted_condition",
    "available_condition",
    "merge_conditions",
    "ready_condition",
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


def available_condition(deployment: Mapping[str, Any] | None, generation: int) -> dict[str, Any]:
    """``Available``, mirroring the Deployment's ``Available`` condition."""
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
            "reason": "DeploymentStatusUnknown",
            "message": f"{name} has not reported whether it is available yet.",
        }
    detail = theirs.get("message") or ""
    if theirs.get("status") == "True":
        return {
            **condition,
            "status": "True",
            "reason": "DeploymentAvailable",
            "message": _message(f"{name} is available" + (f": {detail}" if detail else ".")),
        }
    return {
        **condition,
        "status": "False" if theirs.get("status") == "False" else "Unknown",
        "reason": "DeploymentUnavailable",
        "message": _message(f"{name} is not available" + (f": {detail}" if detail else ".")),
    }


def ready_condition(
    accepted: Mapping[str, Any], available: Mapping[str, Any], generation: int
) -> dict[str, Any]:
    """``Ready``: True when ``accepted`` and ``available`` are; else the first one that is not."""
    for condition in (accepted, available):
        if condition["status"] != "True":
            return {
                "type": READY,
                "status": "False" if condition["status"] == "False" else "Unknown",
                "observedGeneration": generation,
                "reason": condition["reason"],
                "message": condition["message"],
            }
    return {
        "type": READY,
        "status": "True",
        "observedGeneration": generation,
        "reason": "Ready",
        "message": "Accepted and available.",
    }


def merge_conditions(
    live: Mapping[str, Any], new: Sequence[Mapping[str, Any]], *, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Our conditions after setting ``new`` over those ``live`` (the cached object) shows.

    Only the types in ``CONDITION_TYPES`` are kept: conditions of other writers are theirs to apply.
    """
    ours = [
        copy.deepcopy(c)
        for c in (live.get("status") or {}).get("conditions") or ()
        if c.get("type") in CONDITION_TYPES
    ]
    for condition in new:
        set_status_condition(ours, condition, now=now)
    return ours


def _matches(live: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    for field, value in status.items():
        have = live.get(field)
        if field == "conditions":
            have = [c for c in have or () if c.get("type") in CONDITION_TYPES]
        if have != value:
            return False
    return True


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

    The status we write is whole (every field we own, always present), so comparing it with the
    cached object's status decides. The cache may lag our own last write; we remember what we wrote
    and the resourceVersion it produced, and do not write the same status again over a copy older
    than that.
    """

    def __init__(self, client: Any, *, field_manager: str = FIELD_MANAGER) -> None:
        self._client = client
        self._field_manager = field_manager
        self._written: dict[tuple[GVK, ObjectKey], _Written] = {}

    def forget(self, gvk: GVK, key: ObjectKey) -> None:
        """Drop what we remember about an object (call it when the object is gone)."""
        self._written.pop((gvk, key), None)

    async def apply(self, obj: dict[str, Any], status: dict[str, Any]) -> bool:
        """Apply ``status`` to ``obj`` (the cached object) unless it already shows it; True if written."""
        gvk = GVK.from_object(obj)
        key = ObjectKey.of(obj)
        if _matches(obj.get("status") or {}, status):
            return False
        digest = _digest(status)
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
            "status": status,
        }
        if not body["metadata"]["namespace"]:
            del body["metadata"]["namespace"]
        result = await self._client.apply(
            body, field_manager=self._field_manager, force=True, subresource="status"
        )
        self._written[(gvk, key)] = _Written(digest, resource_version_number(result))
        return True
