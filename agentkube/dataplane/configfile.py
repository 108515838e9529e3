"""The config file of a data-plane program: a versioned pydantic model, loaded with errors that name fields.

The operator renders a program's config into a ConfigMap; the program (``agentkube mcp-proxy``,
``agentkube llm-gateway``) reads it back with ``load``. Both sides use the same model, so what the
operator writes is exactly what the program accepts.

What a caller may rely on:

- Every config model derives from ``ConfigModel``: camelCase on the wire, snake_case in Python,
  unknown fields rejected (a typo in a hand-written config is an error, not a silently ignored key),
  immutable once loaded.
- ``load(model, text)`` parses YAML (JSON is YAML) and raises ``ConfigError`` whose ``errors`` each
  name a field path from the root (``upstreams[0].auth.secretEnv: Field required``). A file written
  for another ``apiVersion`` or ``kind`` is refused with a message naming the one the program reads.
- ``dump(config)`` renders the canonical YAML text: keys in model order, unset optional fields left
  out. Equal configs render to equal text, which is what the operator's config hash relies on. The
  text of the last ``RENDERED`` distinct configs is kept (keyed by a digest of their JSON form), so an
  operator reconciling an unchanged object does not render the same YAML again.
- Secret values are never part of a config: fields that carry a secret name the environment variable
  that holds it (``...Env``), and the Deployment fills that variable from the Secret.
"""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

__all__ = [
    "API_VERSION",
    "ConfigError",
    "ConfigModel",
    "EnvName",
    "Listen",
    "dump",
    "load",
    "load_file",
    "require_unique",
]

ModelT = TypeVar("ModelT", bound="ConfigModel")

# Every data-plane config is written in this version; each program's model fixes its own kind.
API_VERSION: Final = "agentkube.io/v1alpha1"
# The variable rule kubelets apply to container env names.
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
EnvName = Annotated[str, Field(pattern=ENV_NAME, max_length=253)]


class ConfigModel(BaseModel):
    """Base of every data-plane config model."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Listen(ConfigModel):
    """Where the program serves its API and its probes (``/healthz``, ``/readyz``)."""

    port: int = Field(ge=1, le=65535)


def require_unique(names: Iterable[str], message: str) -> None:
    """Raise ``ValueError("<message> <each name given twice>")`` for a model validator to report."""
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ValueError(f"{message} {', '.join(duplicates)}")


class ConfigError(ValueError):
    """A config file that does not satisfy its model; ``errors`` holds one ``path: message`` per field."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: " + "; ".join(errors))


def _path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not path:
            path = part
        else:
            path += f".{part}"
    return path


def _error(detail: Any) -> str:
    # Discriminated unions insert the tag value as a location step ("upstreams[0].http.url"); it names
    # no field of the file, so it is dropped.
    loc = tuple(p for p in detail["loc"] if not (isinstance(p, str) and p in _TAGS))
    path = _path(loc)
    # A validator's ValueError reads better without pydantic's "Value error, " in front of it.
    message = str(detail["ctx"]["error"]) if detail["type"] == "value_error" else str(detail["msg"])
    return f"{path}: {message}" if path else message


# Tags of the discriminated unions in our config models (see ``_error``).
_TAGS = frozenset({"http", "stdio"})


def load(model: type[ModelT], text: str, *, source: str = "<config>") -> ModelT:
    """Parse ``text`` (YAML or JSON) as ``model``; ``ConfigError`` names every offending field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(source, [f"not valid YAML: {e}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(source, ["the config must be a mapping with apiVersion and kind"])
    expected = {
        "apiVersion": model.model_fields["api_version"].default,
        "kind": model.model_fields["kind"].default,
    }
    for field, want in expected.items():
        if data.get(field) != want:
            raise ConfigError(
                source, [f"{field}: {data.get(field)!r} is not supported; this program reads {want!r}"]
            )
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, [_error(d) for d in e.errors()]) from None


def load_file(model: type[ModelT], path: str | Path) -> ModelT:
    """``load`` the file at ``path``; its name is the ``source`` of errors."""
    return load(model, Path(path).read_text(encoding="utf-8"), source=str(path))


# libyaml's emitter when PyYAML has it: the operator renders a config on every reconcile, and the
# pure-Python emitter was the largest cost of a reconcile that changes nothing.
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


RENDERED: Final = 4096
"""How many distinct configs ``dump`` keeps the text of (a few MiB at most)."""
_rendered: OrderedDict[bytes, str] = OrderedDict()


def dump(config: ConfigModel) -> str:
    """The canonical YAML text of ``config``."""
    data = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    # YAML rendering is pure Python and costs 10x the JSON dump; an unchanged config is rendered once.
    key = hashlib.blake2b(orjson.dumps(data), digest_size=16).digest()
    text = _rendered.get(key)
    if text is not None:
        _rendered.move_to_end(key)
        return text
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
    _rendered[key] = text
    if len(_rendered) > RENDERED:
        _rendered.popitem(last=False)
    return text
