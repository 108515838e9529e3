"""``Kind``: everything agentkube knows about one of its kinds, and ``parse`` from a plain dict.

Controllers hold objects as plain dicts from the API server; ``Kind.parse(obj)`` turns one into its
typed spec or raises ``InvalidSpec`` naming every offending field as the API server would
(``spec.upstreams[0].endpoint``), so a condition message can tell the user what to fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from agentkube.api.model import RULE_ERROR, Rule

__all__ = [
    "AGE_COLUMN",
    "READY_COLUMN",
    "SERVICE_NAME_RULE",
    "URL_COLUMN",
    "FieldError",
    "InvalidSpec",
    "Kind",
    "PrinterColumn",
]

SpecT = TypeVar("SpecT", bound=BaseModel)
StatusT = TypeVar("StatusT", bound=BaseModel)
ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class PrinterColumn:
    """A column of ``kubectl get`` (``additionalPrinterColumns``); priority 1 shows only with -o wide."""

    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str
    description: str
    priority: int = 0


@dataclass(frozen=True)
class FieldError:
    """One reason an object is invalid: the field's path from the object root, and what is wrong.

    ``path`` is empty for a rule on the whole object without a field; its message names the field.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InvalidSpec(ValueError):
    """An object whose spec (or status) does not satisfy its model.

    ``str()`` reads ``MCP team-a/github-tools: spec.upstreams[0].endpoint: kind http needs an
    endpoint``; ``errors`` holds each field separately.
    """

    def __init__(self, kind: str, key: str, errors: list[FieldError]) -> None:
        self.kind = kind
        self.key = key
        self.errors = errors
        super().__init__(f"{kind} {key}: " + "; ".join(str(e) for e in errors))


@dataclass(frozen=True, eq=False)
class Kind(Generic[SpecT, StatusT]):
    """A kind of ours: its API coordinates, its models and how ``kubectl get`` shows it.

    ``group``, ``version`` and ``kind`` are what ``agentkube.runtime.GVK`` is built from.
    """

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    spec_model: type[SpecT]
    status_model: type[StatusT]
    description: str
    short_names: tuple[str, ...] = ()
    printer_columns: tuple[PrinterColumn, ...] = ()
    categories: tuple[str, ...] = field(default=("agentkube",))
    # Rules on the whole object (``self`` is the object; only metadata.name is visible to CEL there).
    rules: tuple[Rule, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def scope(self) -> Literal["Namespaced", "Cluster"]:
        return "Namespaced" if self.namespaced else "Cluster"

    def parse(self, obj: Mapping[str, Any]) -> SpecT:
        """The typed spec of ``obj`` (a whole object as the API server returns it)."""
        return self._validate(self.spec_model, obj, "spec")

    def parse_status(self, obj: Mapping[str, Any]) -> StatusT:
        """The typed status of ``obj``; an object without status gives the empty status."""
        return self._validate(self.status_model, obj, "status")

    def _validate(self, model: type[ModelT], obj: Mapping[str, Any], part: str) -> ModelT:
        rules = self.rules if part == "spec" else ()
        errors = [
            FieldError((rule.field or "")[1:], rule.message_for(obj))
            for rule in rules
            if not _holds(rule, obj)
        ]
        value: ModelT | None = None
        try:
            value = model.model_validate(obj.get(part) or {})
        except ValidationError as e:
            errors += [_field_error(part, d) for d in e.errors()]
        if errors or value is None:
            meta = obj.get("metadata") or {}
            key = "/".join(p for p in (meta.get("namespace"), meta.get("name", "<unnamed>")) if p)
            raise InvalidSpec(self.kind, key, errors)
        return value


def _holds(rule: Rule, obj: Mapping[str, Any]) -> bool:
    # Object rules read the raw dict; a malformed one is reported by the model, not twice here.
    try:
        return rule.holds is None or bool(rule.holds(obj))
    except (KeyError, TypeError, AttributeError):
        return True


def _field_error(root: str, error: ErrorDetails) -> FieldError:
    path = root
    for part in error["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            # pydantic names a bad map key by appending this marker after the key itself.
            continue
        elif part.isidentifier():
            path += f".{part}"
        else:
            path += f"[{part}]"
    ctx = error.get("ctx") or {}
    if error["type"] == RULE_ERROR:
        path += ctx.get("field") or ""
        return FieldError(path, str(ctx["message"]))
    return FieldError(path, error["msg"])


# Children (Services, Gateways) are named after the object and carry its name as a label value, so the
# name must be a DNS-1035 label rather than any DNS subdomain.
# (A rule at the root cannot point fieldPath into metadata, so the message names the field.)
SERVICE_NAME_RULE = Rule(
    cel="size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
    holds=lambda obj: re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", obj["metadata"]["name"]) is not None,
    message="metadata.name must be at most 63 lowercase letters, digits and '-', starting with a letter, "
    "as it names a Service",
)

# Columns our kinds share. Ready reads the condition of that type, as kubectl has no other way to
# reach into a list-map.
READY_COLUMN = PrinterColumn(
    "Ready", "string", '.status.conditions[?(@.type=="Ready")].status', "Whether the object is ready."
)
URL_COLUMN = PrinterColumn("URL", "string", ".status.url", "In-cluster URL clients connect to.")
AGE_COLUMN = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since the object was created.")
