"""Objects and a cache for the controllers' unit tests: seed manifests as the API server returns them,
and a real ``Cache`` whose stores the tests fill by hand (nothing runs, nothing is sent)."""

from __future__ import annotations

import base64
import copy
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentkube.controllers.kinds import MCP, SECRET
from agentkube.controllers.secrets import secret_transform
from agentkube.runtime.cache import Cache
from agentkube.runtime.gvk import GVK

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "config" / "samples"
_uids = itertools.count(1)


def served(obj: dict[str, Any], *, generation: int = 1) -> dict[str, Any]:
    """``obj`` as the API server would return it: uid, resourceVersion and generation filled in."""
    obj = copy.deepcopy(obj)
    meta = obj["metadata"]
    meta.setdefault("uid", f"00000000-0000-0000-0000-{next(_uids):012d}")
    meta.setdefault("resourceVersion", "100")
    meta.setdefault("generation", generation)
    return obj


def seed(kind: str) -> dict[str, Any]:
    for path in sorted(SAMPLES.glob("agentkube_v1alpha1_*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == kind:
                return served(doc)
    raise LookupError(kind)


def secret(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    """A Secret as the API server returns it (values base64), with the annotation kubectl leaves."""
    return served(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": str(data)},
            },
            "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
    )


TEST_DIGEST_KEY = b"unit-test-digest-key-0123456789a"
"""The digest key of the unit tests' Secret cache."""
digest_secret = secret_transform(TEST_DIGEST_KEY)
"""The Secret cache transform under ``TEST_DIGEST_KEY``."""


class World:
    """A cache with the informers the controllers read, filled through ``add``."""

    def __init__(self) -> None:
        self.cache = Cache(None)  # type: ignore[arg-type]
        self.secrets = self.cache.informer(SECRET, transform=digest_secret)
        self.mcps = self.cache.informer(MCP)

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        gvk = GVK.from_object(obj)
        if gvk == SECRET:
            self.secrets.store.upsert(digest_secret(obj))
        else:
            self.cache.informer(gvk).store.upsert(obj)
        return obj


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def make_mcp() -> Callable[..., dict[str, Any]]:
    def make(
        name: str, upstreams: list[dict[str, Any]], namespace: str = "team-a", **spec: Any
    ) -> dict[str, Any]:
        return served(
            {
                "apiVersion": "agentkube.io/v1alpha1",
                "kind": "MCP",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"upstreams": upstreams, **spec},
            }
        )

    return make
