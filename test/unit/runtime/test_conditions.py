"""Conditions: apimachinery's SetStatusCondition semantics and metav1.Condition validation."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentkube.runtime.conditions import (
    find_status_condition,
    format_time,
    is_status_condition_false,
    is_status_condition_present_and_equal,
    is_status_condition_true,
    remove_status_condition,
    set_status_condition,
    validate_condition,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def cond(
    ctype: str = "Ready", status: str = "True", reason: str = "Available", **extra: Any
) -> dict[str, Any]:
    return {"type": ctype, "status": status, "reason": reason, "message": "", **extra}


# ----------------------------------------------------------------------------------- set


def test_a_new_condition_is_appended_with_now_as_transition_time() -> None:
    conditions: list[dict[str, Any]] = []
    assert set_status_condition(conditions, cond(message="all good", observedGeneration=3), now=T0)
    assert conditions == [
        {
            "type": "Ready",
            "status": "True",
            "observedGeneration": 3,
            "lastTransitionTime": "2026-01-02T03:04:05Z",
            "reason": "Available",
            "message": "all good",
        }
    ]


def test_setting_the_same_condition_again_changes_nothing() -> None:
    conditions: list[dict[str, Any]] = []
    set_status_condition(conditions, cond(observedGeneration=1), now=T0)
    before = copy.deepcopy(conditions)
    assert not set_status_condition(conditions, cond(observedGeneration=1), now=T1)
    assert conditions == before


def test_transition_time_moves_only_when_status_changes() -> None:
    conditions: list[dict[str, Any]] = []
    set_status_condition(conditions, cond(status="False", reason="Pending"), now=T0)
    assert set_status_condition(conditions, cond(status="False", reason="StillPending", message="m"), now=T1)
    assert conditions[0]["lastTransitionTime"] == format_time(T0)
    assert conditions[0]["reason"] == "StillPending" and conditions[0]["message"] == "m"
    assert set_status_condition(conditions, cond(status="True"), now=T1)
    assert conditions[0]["lastTransitionTime"] == format_time(T1)


def test_an_explicit_transition_time_is_used_when_status_changes() -> None:
    conditions = [cond(status="False", lastTransitionTime=format_time(T0))]
    explicit = datetime(2020, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert set_status_condition(conditions, cond(status="True", lastTransitionTime=explicit), now=T1)
    assert conditions[0]["lastTransitionTime"] == "2020-05-06T07:08:09Z"
    # ...and ignored when status does not change (as apimachinery does).
    assert not set_status_condition(
        conditions, cond(status="True", lastTransitionTime="2030-01-01T00:00:00Z")
    )
    assert conditions[0]["lastTransitionTime"] == "2020-05-06T07:08:09Z"


def test_observed_generation_changes_count_and_zero_is_omitted() -> None:
    conditions: list[dict[str, Any]] = []
    set_status_condition(conditions, cond(observedGeneration=1), now=T0)
    assert set_status_condition(conditions, cond(observedGeneration=2), now=T1)
    assert conditions[0]["observedGeneration"] == 2
    assert conditions[0]["lastTransitionTime"] == format_time(T0)
    assert set_status_condition(conditions, cond(), now=T1)
    assert "observedGeneration" not in conditions[0]


def test_other_conditions_are_left_alone_and_order_kept() -> None:
    conditions: list[dict[str, Any]] = []
    set_status_condition(conditions, cond("Accepted"), now=T0)
    set_status_condition(conditions, cond("Ready", "False", "Waiting"), now=T0)
    accepted = copy.deepcopy(conditions[0])
    set_status_condition(conditions, cond("Ready", "True", "Available"), now=T1)
    assert [c["type"] for c in conditions] == ["Accepted", "Ready"]
    assert conditions[0] == accepted


def test_the_existing_dict_is_updated_in_place() -> None:
    conditions: list[dict[str, Any]] = []
    set_status_condition(conditions, cond(status="False", reason="Waiting"), now=T0)
    held = conditions[0]
    set_status_condition(conditions, cond(status="True"), now=T1)
    assert held["status"] == "True" and conditions[0] is held


def test_the_new_condition_given_is_not_aliased() -> None:
    new = cond()
    conditions: list[dict[str, Any]] = []
    set_status_condition(conditions, new, now=T0)
    new["reason"] = "Mutated"
    assert conditions[0]["reason"] == "Available"


def test_a_condition_missing_its_transition_time_is_repaired() -> None:
    conditions = [{"type": "Ready", "status": "True", "reason": "Available", "message": ""}]
    assert set_status_condition(conditions, cond(), now=T0)
    assert conditions[0]["lastTransitionTime"] == format_time(T0)


def test_default_now_is_the_current_utc_time() -> None:
    conditions: list[dict[str, Any]] = []
    before = datetime.now(UTC).replace(microsecond=0)
    set_status_condition(conditions, cond())
    stamp = datetime.strptime(conditions[0]["lastTransitionTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= stamp <= datetime.now(UTC)


def test_a_failed_validation_leaves_the_list_untouched() -> None:
    conditions = [cond(lastTransitionTime=format_time(T0))]
    before = copy.deepcopy(conditions)
    with pytest.raises(ValueError, match="reason"):
        set_status_condition(conditions, cond(status="False", reason="not valid!"))
    assert conditions == before


# ----------------------------------------------------------------------------------- times


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (T0, "2026-01-02T03:04:05Z"),
        (datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))), "2026-01-02T03:04:05Z"),
        (datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05Z"),  # naive is taken as UTC
    ],
)
def test_times_are_rfc3339_utc_with_z_and_whole_seconds(moment: datetime, text: str) -> None:
    assert format_time(moment) == text


@given(st.datetimes(timezones=st.just(UTC)))
def test_every_written_time_is_rfc3339_z(moment: datetime) -> None:
    assert RFC3339_Z.match(format_time(moment))


# ----------------------------------------------------------------------------------- find, remove, is


def test_find_returns_the_condition_or_none() -> None:
    conditions = [cond("Accepted"), cond("Ready", "False", "Waiting")]
    assert find_status_condition(conditions, "Ready") is conditions[1]
    assert find_status_condition(conditions, "Programmed") is None
    assert find_status_condition(None, "Ready") is None


def test_remove_drops_the_type_and_says_whether_it_was_there() -> None:
    conditions = [cond("Accepted"), cond("Ready")]
    held = conditions
    assert remove_status_condition(conditions, "Accepted")
    assert conditions is held and [c["type"] for c in conditions] == ["Ready"]
    assert not remove_status_condition(conditions, "Accepted")


def test_is_true_false_and_present_and_equal() -> None:
    conditions = [
        cond("Ready", "True"),
        cond("Accepted", "False", "Rejected"),
        cond("Synced", "Unknown", "Pending"),
    ]
    assert is_status_condition_true(conditions, "Ready")
    assert not is_status_condition_false(conditions, "Ready")
    assert is_status_condition_false(conditions, "Accepted")
    assert not is_status_condition_true(conditions, "Synced") and not is_status_condition_false(
        conditions, "Synced"
    )
    assert is_status_condition_present_and_equal(conditions, "Synced", "Unknown")
    assert not is_status_condition_true(conditions, "Missing") and not is_status_condition_false(
        None, "Missing"
    )


# ----------------------------------------------------------------------------------- validation

TYPE_PATTERN = (
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])"
)
REASON_PATTERN = r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?"


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("type", {"type": ""}),
        ("type", {"type": "has space"}),
        ("type", {"type": "-Leading"}),
        ("type", {"type": "Trailing-"}),
        ("type", {"type": "UPPER.example.com/Ready"}),
        ("type", {"type": "A" * 317}),
        ("status", {"status": "true"}),
        ("status", {"status": "Yes"}),
        ("status", {"status": None}),
        ("reason", {"reason": ""}),
        ("reason", {"reason": "1Leading"}),
        ("reason", {"reason": "Trailing,"}),
        ("reason", {"reason": "Has Space"}),
        ("reason", {"reason": "Has-Dash"}),
        ("reason", {"reason": "TrailingNewline\n"}),
        ("type", {"type": "Ready\n"}),
        ("reason", {"reason": "A" * 1025}),
        ("message", {"message": "x" * 32769}),
        ("message", {"message": 3}),
        ("observedGeneration", {"observedGeneration": -1}),
        ("observedGeneration", {"observedGeneration": "1"}),
        ("observedGeneration", {"observedGeneration": True}),
        ("lastTransitionTime", {"lastTransitionTime": "yesterday"}),
        ("unknown", {"severity": "High"}),
    ],
)
def test_invalid_conditions_are_rejected_naming_the_field(field: str, change: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=field):
        validate_condition({**cond(), **change})


@pytest.mark.parametrize(
    "change",
    [
        {"type": "example.com/Ready"},
        {"type": "a.b-c.d/Some_Type.v2"},
        {"type": "A" * 316},
        {"reason": "A"},
        {"reason": "Reason_With,Commas:And_Colons"},
        {"reason": "A" * 1024},
        {"message": "x" * 32768},
        {"status": "Unknown"},
        {"lastTransitionTime": "2026-01-02T03:04:05Z"},
        {"lastTransitionTime": "2026-01-02T03:04:05.123+02:00"},
        {"lastTransitionTime": T0},
    ],
)
def test_valid_edge_cases_pass(change: dict[str, Any]) -> None:
    validate_condition({**cond(), **change})


def test_message_may_be_absent_and_defaults_to_empty() -> None:
    conditions: list[dict[str, Any]] = []
    set_status_condition(conditions, {"type": "Ready", "status": "True", "reason": "Available"}, now=T0)
    assert conditions[0]["message"] == ""


@given(st.from_regex(REASON_PATTERN, fullmatch=True).filter(lambda r: len(r) <= 1024))
def test_every_reason_matching_the_api_pattern_is_accepted(reason: str) -> None:
    validate_condition(cond(reason=reason))


@given(st.text(max_size=40).filter(lambda r: not re.fullmatch(REASON_PATTERN, r)))
def test_every_reason_outside_the_api_pattern_is_rejected(reason: str) -> None:
    with pytest.raises(ValueError, match="reason"):
        validate_condition(cond(reason=reason))


@given(st.from_regex(TYPE_PATTERN, fullmatch=True).filter(lambda t: len(t) <= 316))
def test_every_type_matching_the_api_pattern_is_accepted(ctype: str) -> None:
    validate_condition(cond(ctype=ctype))


# ----------------------------------------------------------------------------------- properties

statuses = st.sampled_from(["True", "False", "Unknown"])
reasons = st.sampled_from(["Available", "Pending", "SecretNotFound", "Ready_Now"])
updates = st.lists(
    st.tuples(
        st.sampled_from(["Ready", "Accepted"]), statuses, reasons, st.text(max_size=5), st.integers(0, 3)
    ),
    max_size=20,
)


@given(updates)
def test_set_matches_a_model_of_apimachinery(steps: list[tuple[str, str, str, str, int]]) -> None:
    conditions: list[dict[str, Any]] = []
    model: dict[str, dict[str, Any]] = {}
    for i, (ctype, status, reason, message, generation) in enumerate(steps):
        now = T0 + timedelta(seconds=i)
        new = {"type": ctype, "status": status, "reason": reason, "message": message}
        if generation:
            new["observedGeneration"] = generation
        previous = model.get(ctype)
        expected_change = previous is None or any(
            previous[k] != v
            for k, v in (("status", status), ("reason", reason), ("message", message), ("gen", generation))
        )
        transition = format_time(now) if previous is None or previous["status"] != status else previous["ltt"]
        model[ctype] = {
            "status": status,
            "reason": reason,
            "message": message,
            "gen": generation,
            "ltt": transition,
        }
        assert set_status_condition(conditions, new, now=now) == expected_change
        found = find_status_condition(conditions, ctype)
        assert found is not None
        assert found["lastTransitionTime"] == transition
        assert found.get("observedGeneration", 0) == generation
    assert [c["type"] for c in conditions] == list(dict.fromkeys(s[0] for s in steps))
