"""Handover: the fields the operator's former single field manager holds, handed to each controller's own.

Until each controller had its own field manager (``controllers.field_manager``), every one applied as
``agentkube``. After an upgrade that manager still co-owns what it applied: a field a controller later
stops applying would then survive (server-side apply removes a field only when its last applier
drops it). ``HandingOver`` wraps the client a controller applies with: when an apply's answer shows
the former manager still holding fields of that object (an ``Apply`` entry of ``agentkube`` in
``managedFields``, for the same subresource), it applies an empty intent as that manager, which
releases them all. What the controller applied stays (it co-owns it); what only the former manager
held goes, as it would have had the controller always been the one applier.

Writes happen only then: once per object after the upgrade, with its next apply; never at rest, and
never on a cluster that did not run the older operator. The answer returned is the last one, so a
caller's memory of the object's resourceVersion is the latest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentkube.controllers import FIELD_MANAGER

__all__ = ["LEGACY_FIELD_MANAGER", "HandingOver", "holds_fields"]

LEGACY_FIELD_MANAGER = FIELD_MANAGER
"""The field manager every controller applied with before each had its own."""


def holds_fields(obj: Mapping[str, Any], manager: str, subresource: str | None) -> bool:
    """Whether ``manager`` holds fields of ``obj`` (as the API server answers it) through server-side
    apply on ``subresource`` (None: the object itself)."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or ():
        if (
            entry.get("manager") == manager
            and entry.get("operation") == "Apply"
            and (entry.get("subresource") or None) == subresource
        ):
            return True
    return False


class HandingOver:
    """``client`` (the manager's), whose ``apply`` also releases what the former manager holds."""

    def __init__(self, client: Any, legacy: str = LEGACY_FIELD_MANAGER) -> None:
        self._client = client
        self._legacy = legacy

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def apply(
        self,
        obj: dict[str, Any],
        *,
        field_manager: str | None = None,
        force: bool = False,
        subresource: str | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._client.apply(
            obj, field_manager=field_manager, force=force, subresource=subresource, **kw
        )
        if field_manager == self._legacy or not holds_fields(result, self._legacy, subresource):
            return result
        meta = result["metadata"]
        empty: dict[str, Any] = {
            "apiVersion": result.get("apiVersion", obj["apiVersion"]),
            "kind": result.get("kind", obj["kind"]),
            "metadata": {k: meta[k] for k in ("name", "namespace") if meta.get(k)},
        }
        released: dict[str, Any] = await self._client.apply(
            empty, field_manager=self._legacy, subresource=subresource, **kw
        )
        return released
