"""The base of every API model, and ``Rule``: one validation rule written once, checked twice.

Field-level constraints (enums, patterns, bounds) come from pydantic and reach the CRD schema through
its JSON schema. Rules that pydantic cannot express as a schema keyword (one field required when
another has some value, names that must exist elsewhere in the object) are ``Rule`` objects: a CEL
expression the API server evaluates (``x-kubernetes-validations``) next to the same predicate in
Python, so ``parse`` rejects exactly what the API server rejects, with the same field named.

Rules attach in two ways:
- on a model: ``rules: ClassVar[tuple[Rule, ...]]``; ``self`` is the object the model describes;
- on a field type: ``Annotated[dict[str, str], Rule(...)]``; ``self`` is the field's value.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler, model_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

__all__ = ["RULE_ERROR", "ApiModel", "ListMap", "ListSet", "Reason", "Rule", "belongs_to", "cel_list"]

# The error type ``parse`` recognises to append a rule's ``field`` to the location pydantic reports.
RULE_ERROR = "agentkube_rule"

Reason = Literal["FieldValueRequired", "FieldValueForbidden", "FieldValueInvalid", "FieldValueDuplicate"]


class _SchemaAnnotation:
    """``Annotated`` metadata that validates after the wrapped type and adds keywords to its schema.

    Subclasses say what to ``check`` and how to ``extend`` the JSON schema; the CRD and ``parse`` then
    both get the constraint from the one object.
    """

    def check(self, value: Any) -> Any:
        raise NotImplementedError

    def extend(self, json_schema: JsonSchemaValue) -> None:
        raise NotImplementedError

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        self.extend(json_schema)
        return json_schema


@dataclass(frozen=True)
class Rule(_SchemaAnnotation):
    """A validation rule with a CEL form for the API server and a Python form for ``parse``.

    ``field`` is the CEL ``fieldPath`` relative to ``self`` (".endpoint"), so the API server and
    ``parse`` both report ``spec.upstreams[0].endpoint`` rather than the enclosing object. ``holds``
    is None only for transition rules (they read ``oldSelf``, which a single object cannot answer).

    A message that names what is wrong in this object (the entry, the unknown name) is a pair too:
    ``message_expression``, the CEL ``messageExpression`` the API server evaluates when the rule fails,
    and ``explain``, the same text computed in Python for ``parse``. ``message`` stays the fixed text
    the API server falls back to when the expression cannot be evaluated.
    """

    cel: str
    message: str
    holds: Callable[[Any], bool] | None
    field: str | None = None
    reason: Reason | None = None
    message_expression: str | None = None
    explain: Callable[[Any], str] | None = None

    def __post_init__(self) -> None:
        if (self.message_expression is None) != (self.explain is None):
            raise ValueError("a Rule's message_expression and explain come together: one is CEL, one Python")

    def message_for(self, value: Any) -> str:
        """What ``parse`` says when the rule does not hold for ``value``."""
        return self.explain(value) if self.explain is not None else self.message

    def to_schema(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"rule": self.cel, "message": self.message}
        if self.message_expression:
            rule["messageExpression"] = self.message_expression
        if self.field:
            rule["fieldPath"] = self.field
        if self.reason:
            rule["reason"] = self.reason
        return rule

    def check(self, value: Any) -> Any:
        if self.holds is not None and not self.holds(value):
            raise PydanticCustomError(
                RULE_ERROR, "{message}", {"message": self.message_for(value), "field": self.field}
            )
        return value

    def extend(self, json_schema: JsonSchemaValue) -> None:
        json_schema.setdefault("x-kubernetes-validations", []).append(self.to_schema())


def cel_list(values: Iterable[str]) -> str:
    """A CEL list literal of strings: ``['a', 'b']``."""
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def belongs_to(selector: str, value: str, field: str) -> tuple[Rule, Rule]:
    """The pair of rules for a field required when ``selector`` is ``value`` and forbidden otherwise.

    ``field`` is the Python name (``mcp_ref``); CEL, the field path and the messages use its wire name
    (``mcpRef``): "kind mcpRef needs mcpRef", "mcpRef is only for kind mcpRef".
    """
    alias = to_camel(field)
    return (
        Rule(
            cel=f"self.{selector} != '{value}' || has(self.{alias})",
            holds=lambda m: getattr(m, selector) != value or getattr(m, field) is not None,
            field=f".{alias}",
            reason="FieldValueRequired",
            message=f"{selector} {value} needs {alias}",
        ),
        Rule(
            cel=f"self.{selector} == '{value}' || !has(self.{alias})",
            holds=lambda m: getattr(m, selector) == value or getattr(m, field) is None,
            field=f".{alias}",
            reason="FieldValueForbidden",
            message=f"{alias} is only for {selector} {value}",
        ),
    )


def _reject_duplicates(keys: Iterable[Hashable], shown: Callable[[Any], str]) -> None:
    """Fail at the index of the first key seen before, as the API server reports a duplicate."""
    seen: set[Hashable] = set()
    for i, key in enumerate(keys):
        if key in seen:
            raise PydanticCustomError(
                RULE_ERROR, "{message}", {"message": f"Duplicate value: {shown(key)}", "field": f"[{i}]"}
            )
        seen.add(key)


@dataclass(frozen=True)
class ListMap(_SchemaAnnotation):
    """``Annotated`` metadata for a list whose entries are keyed by some of their fields.

    The schema gets ``x-kubernetes-list-type: map``: server-side apply merges entries by key (two
    managers can each own one upstream) and the API server rejects a key given twice. ``parse``
    rejects the duplicate too, at the same index.
    """

    keys: tuple[str, ...]

    def __init__(self, *keys: str) -> None:
        object.__setattr__(self, "keys", keys)

    def check(self, items: list[Any]) -> list[Any]:
        _reject_duplicates(
            (tuple(_by_alias(item, k) for k in self.keys) for item in items),
            lambda key: ", ".join(f"{k}={v!r}" for k, v in zip(self.keys, key, strict=True)),
        )
        return items

    def extend(self, json_schema: JsonSchemaValue) -> None:
        json_schema["x-kubernetes-list-type"] = "map"
        json_schema["x-kubernetes-list-map-keys"] = list(self.keys)


@dataclass(frozen=True)
class ListSet(_SchemaAnnotation):
    """``Annotated`` metadata for a list of scalars that holds each value once (``listType: set``)."""

    def check(self, items: list[Any]) -> list[Any]:
        _reject_duplicates(items, repr)
        return items

    def extend(self, json_schema: JsonSchemaValue) -> None:
        json_schema["x-kubernetes-list-type"] = "set"


def _by_alias(item: BaseModel, alias: str) -> Any:
    """The value of the field whose wire name is ``alias`` (``from`` is the attribute ``from_``)."""
    for name, info in type(item).model_fields.items():
        if (info.alias or name) == alias:
            return getattr(item, name)
    raise AttributeError(f"{type(item).__name__} has no field {alias!r}")


def _add_model_rules(schema: dict[str, Any], cls: type[Any]) -> None:
    rules: tuple[Rule, ...] = getattr(cls, "rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [rule.to_schema() for rule in rules]


class ApiModel(BaseModel):
    """Base of every model in ``agentkube.api``.

    Python names are snake_case, the wire names camelCase (``tool_prefix`` <-> ``toolPrefix``); both
    are accepted on input, so dicts from the API server parse directly. Unknown fields are ignored,
    as Go clients ignore them: a manager one release behind its CRDs keeps working.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        json_schema_extra=_add_model_rules,
    )

    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> ApiModel:
        for rule in type(self).rules:
            rule.check(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
