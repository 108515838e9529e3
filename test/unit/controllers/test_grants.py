"""Grants: what a ReferenceGrant permits, the pure part."""

from __future__ import annotations

from typing import Any

import pytest

from agentkube.controllers.grants import granted_namespaces, permits

MCP = ("agentkube.io", "MCP")
GATEWAY = ("agentkube.io", "LLMGateway")


def grant(from_: list[tuple[str, str, str]], to: list[tuple[str, str, str | None]]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": "g", "namespace": "team-a"},
        "spec": {
            "from": [{"group": g, "kind": k, "namespace": ns} for g, k, ns in from_],
            "to": [{"group": g, "kind": k, **({"name": n} if n else {})} for g, k, n in to],
        },
    }


@pytest.mark.parametrize(
    ("grants", "allowed"),
    [
        ([], False),
        ([grant([("agentkube.io", "MCP", "team-b")], [("agentkube.io", "MCP", None)])], True),
        ([grant([("agentkube.io", "MCP", "team-b")], [("agentkube.io", "MCP", "tools")])], True),
        ([grant([("agentkube.io", "MCP", "team-b")], [("agentkube.io", "MCP", "other")])], False),
        ([grant([("agentkube.io", "MCP", "team-c")], [("agentkube.io", "MCP", None)])], False),
        ([grant([("agentkube.io", "LLMGateway", "team-b")], [("agentkube.io", "MCP", None)])], False),
        ([grant([("agentkube.io", "MCP", "team-b")], [("agentkube.io", "LLMGateway", None)])], False),
        ([grant([("", "Service", "team-b")], [("agentkube.io", "MCP", None)])], False),
    ],
    ids=[
        "none",
        "any-name",
        "by-name",
        "other-name",
        "other-namespace",
        "other-from-kind",
        "other-to-kind",
        "core",
    ],
)
def test_permits_needs_the_from_kind_and_namespace_and_the_to_kind_and_name(
    grants: list[dict[str, Any]], allowed: bool
) -> None:
    assert permits(grants, from_=MCP, from_namespace="team-b", to=MCP, to_name="tools") is allowed


def test_malformed_grants_permit_nothing() -> None:
    broken: list[dict[str, Any]] = [{"spec": None}, {"spec": {"from": "x", "to": [1]}}, {}]
    assert not permits(broken, from_=MCP, from_namespace="b", to=MCP, to_name="t")
    assert granted_namespaces(broken, to=MCP, to_name="t") == []


def test_granted_namespaces_are_every_from_namespace_of_grants_to_the_object_once_sorted() -> None:
    grants = [
        grant(
            [("agentkube.io", "MCP", "team-c"), ("x.io", "Agent", "team-b")], [("agentkube.io", "MCP", None)]
        ),
        grant([("agentkube.io", "MCP", "team-b")], [("agentkube.io", "MCP", "tools")]),
        grant([("agentkube.io", "MCP", "team-d")], [("agentkube.io", "MCP", "other")]),
        grant([("agentkube.io", "MCP", "team-e")], [(*GATEWAY, None)]),
    ]
    assert granted_namespaces(grants, to=MCP, to_name="tools") == ["team-b", "team-c"]
