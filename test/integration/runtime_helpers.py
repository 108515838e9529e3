"""What the runtime's integration tests share: polling with a deadline, a manager run for the length of
a block, the ConfigMaps they write, and a throwaway CRD.

- ``eventually(check, what)`` polls a sync or async check every 50 ms until it is truthy and fails the
  test naming ``what`` after ``within`` seconds (default ``DEADLINE``). Errors the check raises fail
  the test at once: a check that cannot run is not "not yet".
- ``manager_options(namespace, **overrides)``: a manager for one test's namespace, with no listeners
  (ports ``"0"``), no signal handlers, and the Lease (if any) in that namespace.
- ``running(manager)`` runs ``manager.run()`` for the block, then stops it and waits (``DEADLINE``)
  for it to return. A lost lease at shutdown is the test's business, not the block's: it is not raised.
- ``installed_crd(control_plane, crd, tmp_path)`` installs a CRD for the block and deletes it after;
  ``schemaless_crd`` builds one whose objects may hold anything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from agentkube.runtime.gvk import GVK
from agentkube.runtime.manager import LeaderElectionLost, Manager, ManagerOptions
from agentkube.testing import eventually
from agentkube.testing.controlplane import ControlPlane

__all__ = [
    "CM",
    "DEADLINE",
    "configmap",
    "eventually",
    "installed_crd",
    "manager_options",
    "running",
    "schemaless_crd",
]

CM = GVK("", "v1", "ConfigMap")
DEADLINE = 60.0


def configmap(name: str, namespace: str, data: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    """A ConfigMap to create; ``data`` defaults to ``{"key": "value"}``, ``meta`` adds metadata fields."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "data": data if data is not None else {"key": "value"},
    }


def manager_options(namespace: str, **overrides: Any) -> ManagerOptions:
    settings: dict[str, Any] = {
        "metrics_bind_address": "0",
        "health_probe_bind_address": "0",
        "namespace": namespace,
        "install_signal_handlers": False,
        "leader_election_namespace": namespace,
    }
    settings.update(overrides)
    return ManagerOptions(**settings)


@contextlib.asynccontextmanager
async def running(manager: Manager) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(manager.run())
    try:
        yield task
    finally:
        manager.stop()
        with contextlib.suppress(LeaderElectionLost):
            await asyncio.wait_for(task, DEADLINE)


def schemaless_crd(gvk: GVK, plural: str, *, scope: str = "Namespaced") -> dict[str, Any]:
    """A CustomResourceDefinition serving ``gvk`` whose objects may hold any fields."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{gvk.group}"},
        "spec": {
            "group": gvk.group,
            "names": {
                "kind": gvk.kind,
                "plural": plural,
                "singular": gvk.kind.lower(),
                "listKind": f"{gvk.kind}List",
            },
            "scope": scope,
            "versions": [
                {
                    "name": gvk.version,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }


@contextlib.asynccontextmanager
async def installed_crd(
    control_plane: ControlPlane, crd: dict[str, Any], tmp_path: Path
) -> AsyncIterator[None]:
    """Install ``crd`` (waiting until it is served) for the block; delete it afterwards."""
    path = tmp_path / f"{crd['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(crd))
    await asyncio.to_thread(control_plane.install_crds, [path])
    try:
        yield
    finally:
        await asyncio.to_thread(
            control_plane.request,
            "DELETE",
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}",
        )
