"""CustomResourceDefinitions generated from the models, and the files ``make manifests`` commits.

``crds()`` is the single source of the CRDs: ``write_crds("config/crd/bases")`` writes them as
``<group>_<plural>.yaml``, and a unit test fails when the committed files differ from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from agentkube.api.kind import Kind, PrinterColumn
from agentkube.api.kinds import KINDS
from agentkube.api.schema import structural_schema

__all__ = ["crd", "crd_file_name", "crds", "render", "write_crds"]

HEADER = "# Generated from agentkube/api by agentkube.api.crd. Do not edit: run `make manifests`.\n"


def crds() -> list[dict[str, Any]]:
    """Every CRD of agentkube, in a fixed order."""
    return [crd(kind) for kind in KINDS]


def crd(kind: Kind[Any, Any]) -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CRD of one kind: one served and stored version, status subresource."""
    names: dict[str, Any] = {
        "kind": kind.kind,
        "listKind": f"{kind.kind}List",
        "plural": kind.plural,
        "singular": kind.singular,
        "categories": list(kind.categories),
    }
    if kind.short_names:
        names["shortNames"] = list(kind.short_names)
    version: dict[str, Any] = {
        "name": kind.version,
        "served": True,
        "storage": True,
        "subresources": {"status": {}},
        "schema": {"openAPIV3Schema": _root_schema(kind)},
    }
    if kind.printer_columns:
        version["additionalPrinterColumns"] = [_column(c) for c in kind.printer_columns]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.crd_name},
        "spec": {"group": kind.group, "names": names, "scope": kind.scope, "versions": [version]},
    }


def _root_schema(kind: Kind[Any, Any]) -> dict[str, Any]:
    spec = structural_schema(kind.spec_model)
    schema: dict[str, Any] = {
        "type": "object",
        "description": kind.description,
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "Versioned schema of this representation of the object; the API server "
                "converts unrecognized values to its own.",
            },
            "kind": {
                "type": "string",
                "description": "REST resource this object represents, in CamelCase; set by clients.",
            },
            "metadata": {"type": "object"},
            "spec": spec,
            "status": structural_schema(kind.status_model),
        },
    }
    # An empty spec is valid only when no spec field is required (ToolGateway, whose fields all default).
    if spec.get("required"):
        schema["required"] = ["spec"]
    if kind.rules:
        schema["x-kubernetes-validations"] = [rule.to_schema() for rule in kind.rules]
    return schema


def _column(column: PrinterColumn) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": column.name,
        "type": column.type,
        "jsonPath": column.json_path,
        "description": column.description,
    }
    if column.priority:
        out["priority"] = column.priority
    return out


def crd_file_name(crd: dict[str, Any]) -> str:
    """``<group>_<plural>.yaml``, as kubebuilder names CRD files."""
    return f"{crd['spec']['group']}_{crd['spec']['names']['plural']}.yaml"


def render(crd: dict[str, Any]) -> str:
    """The YAML text of a CRD as committed: keys sorted, so regenerating gives identical bytes."""
    return HEADER + "---\n" + yaml.safe_dump(crd, sort_keys=True, width=110, allow_unicode=True)


def write_crds(directory: str | Path) -> list[Path]:
    """Write every CRD into ``directory`` (created if missing); returns the files written."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for doc in crds():
        path = out / crd_file_name(doc)
        path.write_text(render(doc), encoding="utf-8")
        written.append(path)
    return written
