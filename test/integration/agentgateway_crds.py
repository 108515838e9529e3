"""Stand-in CustomResourceDefinitions for agentgateway.dev/v1alpha1, for clusters of tests only.

agentgateway's own CRDs come from its Go module, which this machine's module proxy refuses, so the
suite serves the two kinds agentkube writes with these instead. They are not agentgateway's schema:
every spec keeps unknown fields, and only the parts agentkube writes are checked, with the limits
agentgateway itself sets (an MCP backend has 1 to 32 targets with unique names that are DNS
subdomains, a static target has a host, a port in 1..65535 and protocol StreamableHTTP or SSE), so
a test still catches a malformed object. When ``hack/fetch-crds.sh`` did fetch the real CRDs, the
suite installs those and not these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["agentgateway_crds", "has_real_agentgateway_crds", "write_agentgateway_crds"]

GROUP = "agentgateway.dev"
VERSION = "v1alpha1"

_SECTION_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

_OPEN_OBJECT: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}

_MCP_TARGET: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": _SECTION_NAME},
        "static": {
            "type": "object",
            "required": ["port"],
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {
                "host": {"type": "string", "minLength": 1, "maxLength": 256},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "path": {"type": "string"},
                "protocol": {"type": "string", "enum": ["StreamableHTTP", "SSE"]},
            },
        },
    },
}

_BACKEND_SPEC: dict[str, Any] = {
    "type": "object",
    "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "mcp": {
            "type": "object",
            "required": ["targets"],
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {
                "targets": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 32,
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": _MCP_TARGET,
                },
                "failureMode": {"type": "string", "enum": ["FailOpen", "FailClosed"]},
            },
        }
    },
}

_PARAMETERS_SPEC: dict[str, Any] = {
    "type": "object",
    "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "env": {"type": "array", "items": {**_OPEN_OBJECT, "required": ["name"]}},
        "rawConfig": _OPEN_OBJECT,
        "deployment": _OPEN_OBJECT,
        "service": _OPEN_OBJECT,
    },
}


def _crd(kind: str, plural: str, short_name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "agentkube-test-stand-in"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short_name],
                "categories": ["agentgateway"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": _OPEN_OBJECT,
                            },
                        }
                    },
                }
            ],
        },
    }


def agentgateway_crds() -> list[dict[str, Any]]:
    """The stand-in CRDs of AgentgatewayParameters and AgentgatewayBackend."""
    return [
        _crd("AgentgatewayParameters", "agentgatewayparameters", "agpar", _PARAMETERS_SPEC),
        _crd("AgentgatewayBackend", "agentgatewaybackends", "agbe", _BACKEND_SPEC),
    ]


def write_agentgateway_crds(directory: Path) -> Path:
    """Write the stand-in CRDs as one YAML file in ``directory``; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "agentgateway.dev_stand-in.yaml"
    path.write_text(yaml.safe_dump_all(agentgateway_crds(), sort_keys=False))
    return path


def has_real_agentgateway_crds(directories: list[Path]) -> bool:
    """Whether ``hack/fetch-crds.sh`` put agentgateway's own CRDs in one of ``directories``."""
    return any(any(d.glob(f"{GROUP}_*.yaml")) for d in directories)
