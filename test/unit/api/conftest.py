"""Shared data for the API unit tests: the seed samples and the invalid-manifest corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "config" / "samples"
SEED_SAMPLES = sorted(SAMPLES.glob("*_v1alpha1_*.yaml"))
ALL_SAMPLES = sorted(p for p in SAMPLES.glob("*.yaml") if p.name != "kustomization.yaml")
INVALID = ROOT / "test" / "integration" / "invalid"


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def seed_object(kind: str, name: str) -> dict[str, Any]:
    """The seed manifest of that kind and name (the first, when a seed shows it twice)."""
    for path in SEED_SAMPLES:
        for doc in load_docs(path):
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
    raise LookupError(f"no seed {kind} {name}")
