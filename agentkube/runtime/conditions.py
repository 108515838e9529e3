"""Status conditions (``metav1.Condition``) on plain dicts, with apimachinery's semantics.

What a caller may rely on:

- ``set_status_condition`` behaves like apimachinery's ``meta.SetStatusCondition``: a new type is
  appended; for an existing type each field is updated in place, and ``lastTransitionTime`` moves
  only when ``status`` changes. It returns whether anything changed, so a reconciler can skip the
  status write when nothing did.
- Every condition is validated as the API server would (``metav1.Condition``'s OpenAPI schema):
  type, status, reason, message, observedGeneration; a bad one raises ``ValueError`` naming the
  field, before the list is touched, so a bug shows up in the reconciler and not as a 422 later.
- Times are RFC 3339 UTC with a ``Z`` and whole seconds (``2026-01-02T03:04:05Z``), the precision
  ``metav1.Time`` keeps; ``now`` is injectable for tests.
- ``observedGeneration`` 0 is omitted, as the Go type's ``omitempty`` does, so comparing with what
  the server returns never shows a spurious difference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "find_status_condition",
    "format_time",
    "is_status_condition_false",
    "is_status_condition_present_and_equal",
    "is_status_condition_true",
    "remove_status_condition",
    "set_status_condition",
    "validate_condition",
]

Condition = dict[str, Any]

# metav1.Condition's schema, as kube-apiserver enforces it for CRD status conditions. Matched with
# fullmatch: Python's `$` would also accept a trailing newline, Go's does not.
_TYPE_RE = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])"
)
_TYPE_MAX = 316
_REASON_RE = re.compile(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?")
_REASON_MAX = 1024
_MESSAGE_MAX = 32768
_STATUSES = ("True", "False", "Unknown")
_FIELDS = ("type", "status", "observedGeneration", "lastTransitionTime", "reason", "message")
_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def format_time(moment: datetime) -> str:
    """``moment`` as metav1.Time writes it: UTC, whole seconds, ``Z``. Naive datetimes are UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # isoformat, not strftime: %Y does not zero-pad years before 1000 on every platform.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def _check_word(
    field: str, value: object, limit: int, pattern: re.Pattern[str], *, required: str, invalid: str
) -> None:
    """A condition's type and reason: a required string, at most ``limit`` long, matching ``pattern``."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"condition.{field}: required, {required}")
    if len(value) > limit:
        raise ValueError(f"condition.{field}: {len(value)} characters, at most {limit} allowed")
    if not pattern.fullmatch(value):
        raise ValueError(f"condition.{field}: {value!r} {invalid}")


def validate_condition(condition: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first field of ``condition`` that the API server would reject.

    ``lastTransitionTime`` may be absent (``set_status_condition`` fills it in).
    """
    unknown = sorted(set(condition) - set(_FIELDS))
    if unknown:
        raise ValueError(f"condition: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(_FIELDS)}")
    _check_word(
        "type",
        condition.get("type"),
        _TYPE_MAX,
        _TYPE_RE,
        required="a non-empty string",
        invalid="is not a valid type (CamelCase, or a DNS-prefixed 'example.com/CamelCase'; letters,"
        " digits, '-', '_', '.')",
    )
    status = condition.get("status")
    if status not in _STATUSES:
        raise ValueError(f"condition.status: {status!r} must be one of True, False, Unknown")
    _check_word(
        "reason",
        condition.get("reason"),
        _REASON_MAX,
        _REASON_RE,
        required="a non-empty CamelCase string",
        invalid=f"must match ^{_REASON_RE.pattern}$ (start with a letter; letters, digits, '_', ',' and"
        " ':' only; e.g. 'SecretNotFound')",
    )
    message = condition.get("message", "")
    if not isinstance(message, str):
        raise ValueError(f"condition.message: must be a string, got {type(message).__name__}")
    if len(message) > _MESSAGE_MAX:
        raise ValueError(f"condition.message: {len(message)} characters, at most {_MESSAGE_MAX} allowed")
    generation = condition.get("observedGeneration", 0)
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise ValueError(f"condition.observedGeneration: {generation!r} must be an integer >= 0")
    transition = condition.get("lastTransitionTime")
    if transition is not None and not (
        isinstance(transition, datetime) or (isinstance(transition, str) and _TIME_RE.fullmatch(transition))
    ):
        raise ValueError(f"condition.lastTransitionTime: {transition!r} is not an RFC 3339 time")


def _transition_time(value: Any) -> str:
    if isinstance(value, datetime):
        return format_time(value)
    return str(value)


def set_status_condition(
    conditions: list[Condition], new: Mapping[str, Any], *, now: datetime | None = None
) -> bool:
    """Set ``new`` in ``conditions`` (in place); True if the list changed.

    ``lastTransitionTime`` is taken from ``new`` when given, else ``now`` (default: the current
    time), and changes on an existing condition only when its ``status`` changes.
    """
    validate_condition(new)
    generation = int(new.get("observedGeneration", 0))
    existing = find_status_condition(conditions, new["type"])
    if existing is None:
        added: Condition = {"type": new["type"], "status": new["status"]}
        if generation:
            added["observedGeneration"] = generation
        if new.get("lastTransitionTime") is not None:
            added["lastTransitionTime"] = _transition_time(new["lastTransitionTime"])
        else:
            added["lastTransitionTime"] = format_time(now or datetime.now(UTC))
        added["reason"] = new["reason"]
        added["message"] = new.get("message", "")
        conditions.append(added)
        return True

    changed = False
    if existing.get("status") != new["status"]:
        existing["status"] = new["status"]
        if new.get("lastTransitionTime") is not None:
            existing["lastTransitionTime"] = _transition_time(new["lastTransitionTime"])
        else:
            existing["lastTransitionTime"] = format_time(now or datetime.now(UTC))
        changed = True
    if existing.get("reason") != new["reason"]:
        existing["reason"] = new["reason"]
        changed = True
    message = new.get("message", "")
    if existing.get("message", "") != message:
        changed = True
    existing["message"] = message
    if int(existing.get("observedGeneration", 0) or 0) != generation:
        changed = True
        if generation:
            existing["observedGeneration"] = generation
        else:
            existing.pop("observedGeneration", None)
    if not existing.get("lastTransitionTime"):
        # A condition written by someone who skipped the (required) field: repair it.
        existing["lastTransitionTime"] = format_time(now or datetime.now(UTC))
        changed = True
    return changed


def find_status_condition(conditions: list[Condition] | None, condition_type: str) -> Condition | None:
    """The condition of ``condition_type`` (the dict in the list, not a copy), or None."""
    for condition in conditions or ():
        if condition.get("type") == condition_type:
            return condition
    return None


def remove_status_condition(conditions: list[Condition], condition_type: str) -> bool:
    """Remove every condition of ``condition_type`` (in place); True if one was there."""
    kept = [c for c in conditions if c.get("type") != condition_type]
    removed = len(kept) != len(conditions)
    conditions[:] = kept
    return removed


def is_status_condition_present_and_equal(
    conditions: list[Condition] | None, condition_type: str, status: str
) -> bool:
    condition = find_status_condition(conditions, condition_type)
    return condition is not None and condition.get("status") == status


def is_status_condition_true(conditions: list[Condition] | None, condition_type: str) -> bool:
    return is_status_condition_present_and_equal(conditions, condition_type, "True")


def is_status_condition_false(conditions: list[Condition] | None, condition_type: str) -> bool:
    return is_status_condition_present_and_equal(conditions, condition_type, "False")
