"""Pieces shared by every kind: name formats, secret references, label maps and status conditions.

Patterns are written in the subset of regular-expression syntax that RE2 (the API server, CEL) and
Rust's regex crate (pydantic) read the same way.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from agentkube.api.model import ApiModel, Rule

__all__ = [
    "DNS_LABEL",
    "DNS_SUBDOMAIN",
    "HTTP_URL",
    "QUALIFIED_NAME",
    "QUALIFIED_NAME_MAX",
    "AnnotationMap",
    "Condition",
    "Conditions",
    "DnsLabel",
    "HttpUrl",
    "LabelMap",
    "LabelValue",
    "ObjectName",
    "ObjectStatus",
    "SecretKeyRef",
    "SecretRef",
    "keys_are_qualified_names",
]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A label or annotation key: an optional DNS-subdomain prefix and a slash, then a 63-character name.
QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
HTTP_URL = r"^https?://[^\s/?#]+([/?#]\S*)?$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
QUALIFIED_NAME_MAX = 253 + 1 + 63
_QUALIFIED_NAME_RE = re.compile(QUALIFIED_NAME)

DnsLabel = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL)]
ObjectName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
SecretKey = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE)]
HttpUrl = Annotated[str, StringConstraints(max_length=2048, pattern=HTTP_URL)]

MAX_MAP_ENTRIES = 64


def keys_are_qualified_names(message: str) -> Rule:
    """A rule that a map's keys are qualified names (a structural schema cannot constrain keys)."""
    return Rule(
        cel=f"self.all(k, size(k) <= {QUALIFIED_NAME_MAX} && k.matches(r'{QUALIFIED_NAME}'))",
        holds=lambda m: all(len(k) <= QUALIFIED_NAME_MAX and _QUALIFIED_NAME_RE.fullmatch(k) for k in m),
        message=message,
    )


def _keys_message(what: str) -> str:
    return (
        f"{what} keys must be qualified names: an optional DNS subdomain prefix and '/', then a name of "
        "at most 63 characters of alphanumerics, '-', '_' and '.' (e.g. example.com/team)"
    )


LabelMap = Annotated[
    dict[str, LabelValue],
    Field(max_length=MAX_MAP_ENTRIES),
    keys_are_qualified_names(_keys_message("label")),
]
AnnotationMap = Annotated[
    dict[str, Annotated[str, StringConstraints(max_length=65536)]],
    Field(max_length=MAX_MAP_ENTRIES),
    keys_are_qualified_names(_keys_message("annotation")),
]


class SecretKeyRef(ApiModel):
    """A key of a Secret in the namespace of the object that refers to it."""

    name: ObjectName = Field(description="Name of the Secret, in the same namespace.")
    key: SecretKey = Field(description="Key in the Secret's data whose value is used.")


class SecretRef(ApiModel):
    """A Secret in the namespace of the object that refers to it."""

    name: ObjectName = Field(description="Name of the Secret, in the same namespace.")


class Condition(ApiModel):
    """One aspect of an object's current state, in the shape of metav1.Condition."""

    type: str = Field(
        max_length=316,
        pattern=QUALIFIED_NAME,
        description="Type of condition in CamelCase, e.g. Ready, Available, Accepted, Programmed.",
    )
    status: Literal["True", "False", "Unknown"] = Field(description="Status of the condition.")
    observed_generation: int | None = Field(
        None,
        ge=0,
        description="The .metadata.generation the condition was computed from; when older than the "
        "object's generation, the condition is out of date.",
    )
    last_transition_time: datetime = Field(
        description="When the condition last changed from one status to another."
    )
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="Programmatic identifier of the last transition, in CamelCase (e.g. SecretNotFound).",
    )
    message: str = Field(
        max_length=32768, description="Human-readable details of the last transition; may be empty."
    )


Conditions = Annotated[
    list[Condition],
    Field(
        max_length=16,
        description="Latest observations of the object's state. Ready summarises the others.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]


class ObjectStatus(ApiModel):
    """What the status of every kind of ours carries."""

    observed_generation: int | None = Field(
        None, ge=0, description="The .metadata.generation the controller last acted on."
    )
    conditions: Conditions = Field(default_factory=list)
