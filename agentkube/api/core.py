"""Core Kubernetes types used inside our specs, with the validation the API server gives them in a Pod.

Only the fields our controllers pass to a container are modelled (no resource claims: our pods have
none to claim). Rules that core/v1 checks in Go code are CEL ``Rule``s here, so a bad value is
rejected when the custom object is written, not later when its Deployment's pods cannot be created.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, ClassVar, Literal

from pydantic import Field, PlainValidator, WithJsonSchema

from agentkube.api.meta import (
    QUALIFIED_NAME,
    QUALIFIED_NAME_MAX,
    LabelValue,
    ObjectName,
    SecretKey,
    keys_are_qualified_names,
)
from agentkube.api.model import ApiModel, ListMap, Rule, cel_list

__all__ = [
    "ConfigMapEnvSource",
    "ConfigMapKeySelector",
    "EnvFromList",
    "EnvFromSource",
    "EnvList",
    "EnvVar",
    "EnvVarSource",
    "LocalObjectReference",
    "ObjectFieldSelector",
    "Quantity",
    "ResourceFieldSelector",
    "ResourceRequirements",
    "SecretEnvSource",
    "SecretKeySelector",
    "Toleration",
    "Tolerations",
    "quantity_value",
]

# The serialisation of resource.Quantity: a decimal number with a binary (Ki..Ei), decimal (n..E) or
# exponent suffix.
QUANTITY = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY_RE = re.compile(QUANTITY)
_SUFFIXES = {
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"),
    "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18"),
}  # fmt: skip
# The classic environment variable name rule: what every kubelet and container runtime accepts.
ENV_VAR_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"


def quantity_value(quantity: int | str) -> Decimal:
    """The numeric value of a Kubernetes quantity ("500m" -> 0.5, "1Gi" -> 1073741824)."""
    if isinstance(quantity, int):
        return Decimal(quantity)
    if not _QUANTITY_RE.fullmatch(quantity):
        raise ValueError(f"{quantity!r} is not a quantity")
    number = quantity.rstrip("KMGTPEimnuk")
    suffix = quantity[len(number) :]
    # "1e3" has no letter suffix: Decimal reads the exponent itself.
    return Decimal(number) * _SUFFIXES[suffix]


def _valid_quantity(value: object) -> int | str:
    # One plain validator rather than pydantic's int | str union, whose errors name each member.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and len(value) <= 64 and _QUANTITY_RE.fullmatch(value):
        return value
    raise ValueError("must be a quantity such as 500m, 2, 128Mi or 1Gi")


Quantity = Annotated[
    int | str,
    PlainValidator(_valid_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "maxLength": 64,
            "pattern": QUANTITY,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
ResourceList = Annotated[
    dict[str, Quantity],
    Field(max_length=16),
    keys_are_qualified_names(
        "resource names are cpu, memory, ephemeral-storage, hugepages-<size> or a "
        "domain-prefixed extended resource such as nvidia.com/gpu"
    ),
]


# Compared for the resources whose request may be below the limit. (Comparing every key would price
# the rule over the API server's CEL budget: int-or-string values have no length bound for CEL.)
COMPARED_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def _requests_within_limits(r: ResourceRequirements) -> bool:
    return all(
        quantity_value(r.requests[k]) <= quantity_value(r.limits[k])
        for k in COMPARED_RESOURCES
        if k in r.requests and k in r.limits
    )


class ResourceRequirements(ApiModel):
    """Compute resources of a container: what the scheduler reserves and the most it may use."""

    limits: ResourceList = Field(
        default_factory=dict,
        description="Most of each resource the container may use, e.g. {cpu: 500m, memory: 256Mi}.",
    )
    requests: ResourceList = Field(
        default_factory=dict,
        description="Resources reserved for the container when it is scheduled; each must be at most "
        "its limit. When a request is omitted and a limit is set, the request equals the limit.",
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel=f"!has(self.limits) || !has(self.requests) || {cel_list(COMPARED_RESOURCES)}"
            ".all(k, !(k in self.requests) || !(k in self.limits) || "
            "!quantity(string(self.requests[k])).isGreaterThan(quantity(string(self.limits[k]))))",
            holds=_requests_within_limits,
            field=".requests",
            reason="FieldValueInvalid",
            message="cpu, memory and ephemeral-storage requests must be less than or equal to their limits",
        ),
    )


class LocalObjectReference(ApiModel):
    """An object in the same namespace, by name."""

    name: ObjectName = Field(description="Name of the object, in the same namespace.")


class ConfigMapKeySelector(ApiModel):
    """A key of a ConfigMap in the same namespace."""

    name: ObjectName = Field(description="Name of the ConfigMap.")
    key: SecretKey = Field(description="Key in the ConfigMap.")
    optional: bool | None = Field(
        None, description="Whether the ConfigMap or its key may be missing; by default both must exist."
    )


class SecretKeySelector(ApiModel):
    """A key of a Secret in the same namespace."""

    name: ObjectName = Field(description="Name of the Secret.")
    key: SecretKey = Field(description="Key in the Secret.")
    optional: bool | None = Field(
        None, description="Whether the Secret or its key may be missing; by default both must exist."
    )


class ObjectFieldSelector(ApiModel):
    """A field of the pod, exposed through the downward API."""

    api_version: str | None = Field(
        None, max_length=64, description="Version of the schema fieldPath is written in; v1 when omitted."
    )
    field_path: str = Field(
        max_length=512,
        pattern=r"^(metadata\.(name|namespace|uid|labels\['[^']+'\]|annotations\['[^']+'\])"
        r"|spec\.(nodeName|serviceAccountName)|status\.(hostIP|hostIPs|podIP|podIPs))$",
        description="Path of the field: metadata.name, metadata.namespace, metadata.uid, "
        "metadata.labels['<key>'], metadata.annotations['<key>'], spec.nodeName, spec.serviceAccountName, "
        "status.hostIP, status.hostIPs, status.podIP or status.podIPs.",
    )


class ResourceFieldSelector(ApiModel):
    """A resource limit or request of a container, exposed through the downward API."""

    container_name: str | None = Field(
        None, max_length=63, description="Container whose resources are read; this container when omitted."
    )
    resource: str = Field(
        max_length=128,
        pattern=r"^(limits|requests)\.(cpu|memory|ephemeral-storage|hugepages-[A-Za-z0-9]+)$",
        description="The resource, e.g. limits.cpu, requests.memory or limits.ephemeral-storage.",
    )
    divisor: Quantity | None = Field(
        None, description="Unit the value is expressed in, e.g. 1m or 1Mi; 1 when omitted."
    )


class EnvVarSource(ApiModel):
    """Where an environment variable's value comes from; exactly one source is set."""

    config_map_key_ref: ConfigMapKeySelector | None = Field(None, description="A key of a ConfigMap.")
    secret_key_ref: SecretKeySelector | None = Field(None, description="A key of a Secret.")
    field_ref: ObjectFieldSelector | None = Field(None, description="A field of the pod.")
    resource_field_ref: ResourceFieldSelector | None = Field(
        None, description="A resource limit or request of a container."
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="[has(self.configMapKeyRef), has(self.secretKeyRef), has(self.fieldRef), "
            "has(self.resourceFieldRef)].filter(x, x).size() == 1",
            holds=lambda s: (
                sum(
                    x is not None
                    for x in (s.config_map_key_ref, s.secret_key_ref, s.field_ref, s.resource_field_ref)
                )
                == 1
            ),
            reason="FieldValueInvalid",
            message="exactly one of configMapKeyRef, secretKeyRef, fieldRef or resourceFieldRef must be set",
        ),
    )


class EnvVar(ApiModel):
    """An environment variable of a container."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=ENV_VAR_NAME,
        description="Name of the variable: letters, digits, '_', '-' and '.', not starting with a digit.",
    )
    value: str | None = Field(
        None,
        max_length=65536,
        description="The value; $(VAR) references to variables defined earlier are expanded, $$ escapes $.",
    )
    value_from: EnvVarSource | None = Field(
        None, description="Take the value from a ConfigMap, a Secret or the pod; not together with value."
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.valueFrom) || !has(self.value) || self.value == ''",
            holds=lambda e: e.value_from is None or not e.value,
            field=".valueFrom",
            reason="FieldValueForbidden",
            message="valueFrom may not be set together with a non-empty value",
        ),
    )


class ConfigMapEnvSource(ApiModel):
    """A ConfigMap whose every key becomes an environment variable."""

    name: ObjectName = Field(description="Name of the ConfigMap.")
    optional: bool | None = Field(
        None, description="Whether the ConfigMap may be missing; it must exist by default."
    )


class SecretEnvSource(ApiModel):
    """A Secret whose every key becomes an environment variable."""

    name: ObjectName = Field(description="Name of the Secret.")
    optional: bool | None = Field(
        None, description="Whether the Secret may be missing; it must exist by default."
    )


class EnvFromSource(ApiModel):
    """A set of environment variables taken from every key of a ConfigMap or a Secret."""

    prefix: str | None = Field(
        None,
        max_length=253,
        pattern=ENV_VAR_NAME,
        description="Prefix prepended to every key to form the variable names.",
    )
    config_map_ref: ConfigMapEnvSource | None = Field(None, description="The ConfigMap to read.")
    secret_ref: SecretEnvSource | None = Field(None, description="The Secret to read.")

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.configMapRef) != has(self.secretRef)",
            holds=lambda e: (e.config_map_ref is None) != (e.secret_ref is None),
            reason="FieldValueInvalid",
            message="exactly one of configMapRef or secretRef must be set",
        ),
    )


class Toleration(ApiModel):
    """Lets pods schedule onto nodes with a matching taint."""

    key: str | None = Field(
        None,
        max_length=QUALIFIED_NAME_MAX,
        pattern=QUALIFIED_NAME,
        description="Taint key to match; when omitted, every key matches (operator Exists).",
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        None,
        description="How key and value are compared: Equal (the default when omitted) matches the value, "
        "Exists matches any value.",
    )
    value: LabelValue | None = Field(
        None, description="Taint value to match; must be empty with operator Exists."
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match; every effect when omitted."
    )
    toleration_seconds: int | None = Field(
        None,
        description="With effect NoExecute: how long the pod stays bound to a node after the taint "
        "appears; forever when omitted. Zero and negative values evict at once.",
    )

    rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
            holds=lambda t: t.operator != "Exists" or not t.value,
            field=".value",
            reason="FieldValueForbidden",
            message="value must be empty when operator is Exists",
        ),
        Rule(
            cel="(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
            holds=lambda t: bool(t.key) or t.operator == "Exists",
            field=".operator",
            reason="FieldValueInvalid",
            message="operator must be Exists when key is empty",
        ),
        Rule(
            cel="!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            holds=lambda t: t.toleration_seconds is None or t.effect == "NoExecute",
            field=".effect",
            reason="FieldValueInvalid",
            message="effect must be NoExecute when tolerationSeconds is set",
        ),
    )


# A list-map, unlike a Pod's env: server-side apply then merges entries by name, and a name set twice
# (which a Pod tolerates with a warning, the last one winning) is rejected.
EnvList = Annotated[list[EnvVar], Field(max_length=128), ListMap("name")]
EnvFromList = Annotated[list[EnvFromSource], Field(max_length=32)]
Tolerations = Annotated[list[Toleration], Field(max_length=32)]
