"""Typed reads of a client's JSON body that fail as ``TranslationError`` naming the field path.

A request body is a client's ``dict`` parsed from JSON: any key may be missing, of the wrong type, or
unknown. Each reader takes the object, the key and the path of the object (``messages[2]``) and
returns the value typed, a default when absent (or JSON ``null``), or raises ``TranslationError`` with
the full path (``messages[2].content``), so a malformed body is a 400 naming what to fix and never
an exception deeper in a translator.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

from agentkube.dataplane.llm.translate import ir
from agentkube.dataplane.llm.translate.errors import TranslationError

__all__ = [
    "as_obj",
    "at",
    "boolean",
    "check_known",
    "count",
    "elements",
    "integer",
    "items",
    "number",
    "obj",
    "objects",
    "optional_obj",
    "string",
    "strings",
    "text",
    "texts",
]

T = TypeVar("T")


def count(value: Any) -> int:
    """An upstream's token count: the integer it sent, else 0 (a missing or malformed count counts
    as none; ``True`` is not 1)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def as_obj(value: Any) -> dict[str, Any]:
    """``value`` when it is an object, else an empty one (for reading an upstream's answer leniently)."""
    return value if isinstance(value, dict) else {}


def at(path: str, key: str | int) -> str:
    """The path of ``key`` inside the object at ``path`` (``messages`` + ``0`` -> ``messages[0]``)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _get(data: Mapping[str, Any], key: str) -> Any:
    return data.get(key)


def string(data: Mapping[str, Any], key: str, path: str = "", *, required: bool = False) -> str | None:
    value = _get(data, key)
    if value is None:
        if required:
            raise TranslationError(at(path, key), "is required")
        return None
    if not isinstance(value, str):
        raise TranslationError(at(path, key), f"must be a string, not {_kind(value)}")
    return value


def text(data: Mapping[str, Any], key: str, path: str = "") -> str:
    """A required string."""
    value = string(data, key, path, required=True)
    assert value is not None
    return value


def texts(content: Any, path: str, noun: str) -> list[ir.Text]:
    """Content that may hold only text: a string (no text when empty) or an array of text ``noun``s.

    ``noun`` is what the client's API calls an element (``part``, ``block``); each must be an object
    of ``"type": "text"``.
    """
    if isinstance(content, str):
        return [ir.Text(content)] if content else []
    if not isinstance(content, list):
        raise TranslationError(path, f"must be a string or an array of text {noun}s")
    found: list[ir.Text] = []
    for i, element in enumerate(content):
        where = at(path, i)
        if not isinstance(element, dict) or element.get("type") != "text":
            raise TranslationError(where, f"must be a text {noun} here")
        found.append(ir.Text(text(element, "text", where)))
    return found


def boolean(data: Mapping[str, Any], key: str, path: str = "") -> bool | None:
    value = _get(data, key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise TranslationError(at(path, key), f"must be a boolean, not {_kind(value)}")
    return value


def integer(data: Mapping[str, Any], key: str, path: str = "", *, minimum: int | None = None) -> int | None:
    value = _get(data, key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TranslationError(at(path, key), f"must be an integer, not {_kind(value)}")
    if minimum is not None and value < minimum:
        raise TranslationError(at(path, key), f"must be at least {minimum}")
    return value


def number(data: Mapping[str, Any], key: str, path: str = "") -> float | None:
    value = _get(data, key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TranslationError(at(path, key), f"must be a number, not {_kind(value)}")
    return float(value)


def obj(data: Mapping[str, Any], key: str, path: str = "") -> dict[str, Any]:
    """A required object."""
    value = optional_obj(data, key, path)
    if value is None:
        raise TranslationError(at(path, key), "is required")
    return value


def optional_obj(data: Mapping[str, Any], key: str, path: str = "") -> dict[str, Any] | None:
    value = _get(data, key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TranslationError(at(path, key), f"must be an object, not {_kind(value)}")
    return value


def items(data: Mapping[str, Any], key: str, path: str = "") -> list[Any]:
    """A list (empty when absent)."""
    value = _get(data, key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise TranslationError(at(path, key), f"must be an array, not {_kind(value)}")
    return value


def objects(data: Mapping[str, Any], key: str, path: str = "") -> Iterable[tuple[str, dict[str, Any]]]:
    """Each element of a list of objects with its path (``tools[1]``)."""
    where = at(path, key)
    for i, value in enumerate(items(data, key, path)):
        if not isinstance(value, dict):
            raise TranslationError(at(where, i), f"must be an object, not {_kind(value)}")
        yield at(where, i), value


def elements(content: Any, path: str, expected: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each object of the array ``content`` with its path; refused as not ``expected`` if no array.

    ``expected`` completes "must be ..." (``a string or an array of content parts``): the caller has
    already taken the other forms it accepts.
    """
    if not isinstance(content, list):
        raise TranslationError(path, f"must be {expected}")
    for i, element in enumerate(content):
        where = at(path, i)
        if not isinstance(element, dict):
            raise TranslationError(where, "must be an object")
        yield where, element


def strings(data: Mapping[str, Any], key: str, path: str = "") -> list[str]:
    """A string or a list of strings, as a list (empty when absent)."""
    value = _get(data, key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TranslationError(at(path, key), "must be a string or an array of strings")
    return list(value)


def check_known(data: Mapping[str, Any], known: frozenset[str], path: str, target: str) -> None:
    """Refuse any key of ``data`` outside ``known``: what the translator does not know, it cannot keep."""
    for key in data:
        if key not in known:
            raise TranslationError(
                at(path, key),
                f"is not supported when translating to {target}; remove it or use a model "
                f"served by an upstream that speaks this API",
            )


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"
