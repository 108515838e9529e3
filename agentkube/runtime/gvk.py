"""Names of kinds and objects: the two keys everything in the runtime is indexed by.

A kind is named by group, version and kind (``GVK``), never by a Python class, so the runtime serves
any kind the API server serves, CRDs included, with objects kept as plain dicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["GVK", "ObjectKey"]


@dataclass(frozen=True, slots=True)
class GVK:
    """A group, version and kind. The core group is the empty string."""

    group: str
    version: str
    kind: str

    @classmethod
    def of(cls, api_version: str, kind: str) -> GVK:
        """Parse an ``apiVersion`` (``"apps/v1"`` or ``"v1"``) and a kind."""
        group, _, version = api_version.rpartition("/")
        return cls(group, version, kind)

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> GVK:
        return cls.of(obj["apiVersion"], obj["kind"])

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        return f"{self.api_version}/{self.kind}"


@dataclass(frozen=True, slots=True, order=True)
class ObjectKey:
    """Namespace and name of one object; ``namespace`` is None for cluster-scoped objects."""

    namespace: str | None
    name: str

    @classmethod
    def of(cls, obj: dict[str, Any]) -> ObjectKey:
        meta = obj["metadata"]
        return cls(meta.get("namespace") or None, meta["name"])

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name
