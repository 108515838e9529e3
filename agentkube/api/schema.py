"""Structural OpenAPI v3 schemas from pydantic models, as apiextensions.k8s.io/v1 requires them.

pydantic's JSON schema is close but not structural: it refers to models through ``$ref``, spells an
optional field as ``anyOf: [X, {type: null}]`` with ``default: null``, and adds titles. This module
inlines every reference, keeps X of each optional (an omitted field is simply not required; no field is
``nullable``, so the API server prunes an explicit null instead of storing it), and refuses anything a
structural schema cannot hold rather than emitting a CRD the API server would reject.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

__all__ = ["NotStructural", "structural_schema"]

# Keywords copied as they are; everything else pydantic may emit is either converted or refused.
_PLAIN = {
    "type", "description", "default", "enum", "format", "pattern", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems",
    "minProperties", "maxProperties", "required", "x-kubernetes-int-or-string",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type",
}  # fmt: skip


class NotStructural(ValueError):
    """A model uses a construct that has no structural OpenAPI form."""


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural schema of ``model``'s wire form (camelCase names, inlined, CEL rules attached)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _convert(raw, defs, model.__name__)


def _convert(node: dict[str, Any], defs: dict[str, Any], where: str) -> dict[str, Any]:
    node = dict(node)
    node.pop("title", None)
    if node.get("default", 0) is None:
        del node["default"]
    base: dict[str, Any] = {}
    if "$ref" in node:
        base = _convert(defs[node.pop("$ref").rsplit("/", 1)[-1]], defs, where)
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        members = [m for m in node.pop("anyOf") if m.get("type") != "null"]
        if len(members) != 1:
            raise NotStructural(f"{where}: a union of several types has no structural schema")
        base = _merge(base, _convert(members[0], defs, where))
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if node.get("uniqueItems"):
        raise NotStructural(f"{where}: uniqueItems is not allowed; use ListSet or ListMap")
    for refused in ("patternProperties", "propertyNames", "allOf", "oneOf", "not", "$defs"):
        if refused in node:
            raise NotStructural(f"{where}: {refused} has no structural form; attach a Rule instead")

    out: dict[str, Any] = {}
    for key, value in node.items():
        # anyOf is left only for int-or-string, the one anyOf a structural schema may hold.
        if key in _PLAIN or key == "anyOf":
            out[key] = value
        elif key == "properties":
            out[key] = {name: _convert(sub, defs, f"{where}.{name}") for name, sub in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs, f"{where}[]")
        elif key == "additionalProperties":
            # `false` is pydantic's extra="forbid"; the API server prunes unknown fields anyway and a
            # structural schema may not combine it with properties.
            if isinstance(value, dict):
                out[key] = _convert(value, defs, f"{where}{{}}")
        elif key == "x-kubernetes-validations":
            out[key] = list(value)
        else:
            raise NotStructural(f"{where}: unexpected schema keyword {key!r}")
    return _merge(base, out)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` wins, except that CEL rules of both are kept (the field's and its model's)."""
    merged = {**base, **over}
    rules = base.get("x-kubernetes-validations", []) + over.get("x-kubernetes-validations", [])
    if rules:
        merged["x-kubernetes-validations"] = rules
    return merged
