"""A complete controller on agentkube.runtime: stamp every ConfigMap with a hash of its data.

Run it against your current kubeconfig: ``python examples/configmap_controller.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson

from agentkube.runtime import GVK, Client, Controller, Manager, Request, configure_logging

CONFIGMAP = GVK("", "v1", "ConfigMap")
HASH = "example.agentkube.io/data-hash"


def data_hash(configmap: dict[str, Any]) -> str:
    data = orjson.dumps(configmap.get("data") or {}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(data).hexdigest()[:16]


def add_controller(manager: Manager, name: str = "configmap-hasher") -> Controller:
    async def reconcile(request: Request) -> None:
        # Read the cache, not the API server: the watch keeps it current, and a read costs no request.
        configmap = manager.cache.get(CONFIGMAP, request.name, request.namespace)
        if configmap is None:
            return  # deleted: nothing to do
        digest = data_hash(configmap)
        if (configmap["metadata"].get("annotations") or {}).get(HASH) == digest:
            return  # already right: a second reconcile writes nothing
        meta = {"name": request.name, "namespace": request.namespace, "annotations": {HASH: digest}}
        await manager.client.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta})

    return manager.controller(name).for_kind(CONFIGMAP).complete(reconcile)


async def main() -> None:
    configure_logging("info")
    async with await Client.from_kubeconfig() as client:
        manager = Manager(client)
        add_controller(manager)
        await manager.run()  # until SIGTERM / Ctrl-C


if __name__ == "__main__":
    asyncio.run(main())
