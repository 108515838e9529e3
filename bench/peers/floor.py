"""The floor: what converging N MCPs costs the API server with no controller at all.

    python -m bench.peers.floor KUBECONFIG CHILDREN N

A bare aiohttp client (``connection.Connection``, up to 100 requests in flight) creates the N bench
MCPs and, for each as soon as it exists, server-side applies its children (ConfigMap, Deployment,
Service, and the NetworkPolicy when agentkube makes one: from the children file, with the owner
reference of the MCP just created), applies its status (``observedGeneration`` and ``Accepted``)
and creates one Event: the object writes + 1 Event per MCP every operator must make (4, or 5 with a
NetworkPolicy), sent at full concurrency, with nothing watched, cached or compared. It prints
``ready`` once its session is open and the children are loaded, starts when a line comes on its
standard input (the clock starts there), and exits when every MCP is written.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

from bench.converge import NAMESPACE, _mcp
from bench.peers.connection import Connection

FIELD_MANAGER = "bench-floor"
APPLY = {"Content-Type": "application/apply-patch+yaml"}
APPLY_QUERY = {"fieldManager": FIELD_MANAGER, "force": "true"}
_PATHS = {
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps/{name}",
    "Service": "/api/v1/namespaces/{ns}/services/{name}",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}",
}
MCPS = "/apis/agentkube.io/v1alpha1/namespaces/{ns}/mcps"


async def _send(session: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    async with session.request(method, path, **kwargs) as response:
        body = await response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {body[:300]!r}")
        decoded: dict[str, Any] = json.loads(body)
        return decoded


async def converge_one(session: aiohttp.ClientSession, i: int, children: list[dict[str, Any]]) -> None:
    mcp = await _send(session, "POST", MCPS.format(ns=NAMESPACE), json=_mcp(i))
    meta = mcp["metadata"]
    owner = {
        "apiVersion": mcp["apiVersion"],
        "kind": mcp["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    writes = []
    for child in children:
        body = {**child, "metadata": {**child["metadata"], "ownerReferences": [owner]}}
        path = _PATHS[child["kind"]].format(ns=NAMESPACE, name=child["metadata"]["name"])
        writes.append(_send(session, "PATCH", path, data=json.dumps(body), headers=APPLY, params=APPLY_QUERY))
    await asyncio.gather(*writes)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    generation = meta["generation"]
    status = {
        "apiVersion": mcp["apiVersion"],
        "kind": mcp["kind"],
        "metadata": {"name": meta["name"], "namespace": NAMESPACE},
        "status": {
            "observedGeneration": generation,
            "conditions": [
                {
                    "type": "Accepted",
                    "status": "True",
                    "reason": "Accepted",
                    "message": "the proxy's children are applied",
                    "lastTransitionTime": now,
                    "observedGeneration": generation,
                }
            ],
        },
    }
    path = f"{MCPS.format(ns=NAMESPACE)}/{meta['name']}/status"
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": NAMESPACE},
        "involvedObject": {
            "apiVersion": mcp["apiVersion"],
            "kind": mcp["kind"],
            "name": meta["name"],
            "namespace": NAMESPACE,
            "uid": meta["uid"],
        },
        "reason": "Applied",
        "message": "Applied the proxy's children",
        "type": "Normal",
        "source": {"component": FIELD_MANAGER},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    await asyncio.gather(
        _send(session, "PATCH", path, data=json.dumps(status), headers=APPLY, params=APPLY_QUERY),
        _send(session, "POST", f"/api/v1/namespaces/{NAMESPACE}/events", json=event),
    )


async def run(kubeconfig: str, children: dict[str, list[dict[str, Any]]], n: int) -> None:
    async with Connection.from_kubeconfig(kubeconfig).session() as session:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        await asyncio.gather(*(converge_one(session, i, children[f"mcp-{i:05d}"]) for i in range(n)))


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1], json.loads(Path(sys.argv[2]).read_text()), int(sys.argv[3])))
