"""Handover: when the former field manager still holds fields of an object, the pure part."""

from __future__ import annotations

from typing import Any

from agentkube.controllers.handover import holds_fields


def answer(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "x", "managedFields": list(entries)}}


def test_only_an_apply_entry_of_that_manager_for_that_subresource_counts() -> None:
    applied = {"manager": "agentkube", "operation": "Apply", "fieldsV1": {}}
    status = {**applied, "subresource": "status"}
    assert holds_fields(answer(applied), "agentkube", None)
    assert not holds_fields(answer(applied), "agentkube", "status")
    assert holds_fields(answer(status), "agentkube", "status")
    assert not holds_fields(answer(status), "agentkube", None)
    # A create (an Update entry) and another manager's apply are nothing to hand over.
    assert not holds_fields(answer({**applied, "operation": "Update"}), "agentkube", None)
    assert not holds_fields(answer({**applied, "manager": "agentkube-mcp"}), "agentkube", None)
    assert not holds_fields({"metadata": {"name": "x"}}, "agentkube", None)
