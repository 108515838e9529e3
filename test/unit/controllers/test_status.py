"""Conditions of our workload kinds: what each says, and that an unchanged one stays byte-for-byte equal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agentkube.controllers.status import (
    Problem,
    StatusWriter,
    accepted_condition,
    available_condition,
    merge_conditions,
    ready_condition,
    ready_of,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 1, 2, tzinfo=UTC)


def deployment(
    available: str | None, message: str = "Deployment has minimum availability."
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if available is not None:
        status["conditions"] = [{"type": "Available", "status": available, "message": message}]
    return {"metadata": {"name": "m", "namespace": "n"}, "status": status}


def test_accepted_is_true_without_problems_and_carries_the_generation() -> None:
    c = accepted_condition([], 7)
    assert (c["status"], c["reason"], c["observedGeneration"]) == ("True", "Accepted", 7)


def test_accepted_false_takes_the_first_reason_and_every_message_once() -> None:
    problems = [
        Problem("SecretNotFound", "a"),
        Problem("UpstreamRefNotFound", "b"),
        Problem("SecretNotFound", "a"),
    ]
    c = accepted_condition(problems, 2)
    assert (c["status"], c["reason"], c["message"]) == ("False", "SecretNotFound", "a; b")


def test_accepted_message_is_cut_to_what_the_api_server_takes() -> None:
    c = accepted_condition([Problem("InvalidSpec", "x" * 40000)], 1)
    assert len(c["message"]) <= 32768


def test_available_mirrors_the_deployment() -> None:
    assert available_condition(None, 1)["reason"] == "DeploymentNotFound"
    assert available_condition(deployment(None), 1)["status"] == "Unknown"
    up = available_condition(deployment("True"), 1)
    assert (up["status"], up["reason"]) == ("True", "DeploymentAvailable")
    down = available_condition(deployment("False", "Deployment does not have minimum availability."), 1)
    assert (down["status"], down["reason"]) == ("False", "DeploymentUnavailable")
    assert "does not have minimum availability" in down["message"]


def test_ready_needs_both_and_otherwise_says_why() -> None:
    ok = accepted_condition([], 1)
    bad = accepted_condition([Problem("SecretKeyNotFound", "no key")], 1)
    up = available_condition(deployment("True"), 1)
    down = available_condition(deployment("False"), 1)
    assert ready_condition(ok, up, 1)["status"] == "True"
    assert ready_condition(bad, up, 1)["reason"] == "SecretKeyNotFound"
    assert ready_condition(ok, down, 1)["reason"] == "DeploymentUnavailable"


def test_unchanged_conditions_keep_their_transition_time_and_foreign_ones_are_left_out() -> None:
    first = merge_conditions({}, [accepted_condition([], 1)], now=T0)
    live = {"status": {"conditions": [*first, {"type": "example.com/Other", "status": "True"}]}}
    again = merge_conditions(live, [accepted_condition([], 1)], now=T1)
    assert again == first
    flipped = merge_conditions(live, [accepted_condition([Problem("SecretNotFound", "m")], 1)], now=T1)
    assert flipped[0]["lastTransitionTime"] == "2026-01-02T00:00:00Z"


def test_a_declared_condition_type_left_out_is_dropped_and_other_types_are_not_ours() -> None:
    live = {
        "status": {
            "conditions": [
                *merge_conditions({}, [accepted_condition([], 1)], now=T0),
                {"type": "OpenTelemetryTranslated", "status": "True"},
                {"type": "example.com/Other", "status": "True"},
            ]
        }
    }
    types = ("Accepted", "OpenTelemetryTranslated")
    kept = merge_conditions(live, [accepted_condition([], 1)], types, now=T1)
    assert [c["type"] for c in kept] == ["Accepted"]
    assert kept[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"


async def test_status_writer_writes_nothing_when_the_object_shows_the_owned_fields() -> None:
    # No client: a write would fail the test.
    writer = StatusWriter(None, fields=("observedGeneration", "url", "conditions"))
    conditions = merge_conditions({}, [accepted_condition([], 1)], now=T0)
    live = {
        "apiVersion": "agentkube.io/v1alpha1",
        "kind": "MCP",
        "metadata": {"name": "m", "namespace": "n", "uid": "u", "resourceVersion": "5"},
        # Fields and conditions of other writers are not compared.
        "status": {
            "observedGeneration": 1,
            "url": "http://m",
            "conditions": [*conditions, {"type": "example.com/Other", "status": "True"}],
            "theirs": 1,
        },
    }
    wanted = {"observedGeneration": 1, "url": "http://m", "conditions": [accepted_condition([], 1)]}
    assert await writer.apply(live, wanted) is False


async def test_status_writer_refuses_a_field_the_controller_did_not_declare() -> None:
    writer = StatusWriter(None, fields=("observedGeneration",))
    obj = {"apiVersion": "v1", "kind": "X", "metadata": {"name": "m", "uid": "u"}, "status": {}}
    with pytest.raises(ValueError, match="url"):
        await writer.apply(obj, {"observedGeneration": 1, "url": "http://m"})


def test_ready_is_ready_replicas_of_the_desired_spec_replicas() -> None:
    mcp = {"spec": {"replicas": 3}}
    assert ready_of(mcp, {"replicas": 4, "readyReplicas": 2}) == "2/3"  # a surge pod is not desired
    assert ready_of({"spec": {"replicas": 0}}, {"replicas": 0, "readyReplicas": 0}) == "0/0"
    assert ready_of(mcp, {"replicas": 0}) == "0/3"
    assert ready_of({}, {"replicas": 2, "readyReplicas": 1}) == "1/2"  # no spec.replicas: the pods there


async def test_status_writer_fills_in_ready_and_writes_nothing_once_it_is_shown() -> None:
    writer = StatusWriter(None, fields=("observedGeneration", "replicas", "readyReplicas", "ready"))
    live = {
        "apiVersion": "agentkube.io/v1alpha1",
        "kind": "MCP",
        "metadata": {"name": "m", "namespace": "n", "uid": "u", "resourceVersion": "5"},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 1, "replicas": 2, "readyReplicas": 1, "ready": "1/2"},
    }
    # No client: a write would fail the test.
    assert await writer.apply(live, {"observedGeneration": 1, "replicas": 2, "readyReplicas": 1}) is False
    # Without readyReplicas there is no ready either: a status that drops one releases both.
    without = StatusWriter(None, fields=("observedGeneration", "readyReplicas", "ready"))
    shown = {**live, "status": {"observedGeneration": 1}}
    assert await without.apply(shown, {"observedGeneration": 1}) is False
