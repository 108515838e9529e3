"""The MCP operator of the bench.peers benchmark written the way a kopf operator usually is.

Run by kopf from its own virtual environment (kopf and the official ``kubernetes`` client, nothing of
agentkube's)::

    KUBECONFIG=... BENCH_PEER_CHILDREN=children.json kopf run --standalone --all-namespaces \\
        bench/peers/kopf_operator.py

One synchronous handler for create, update and resume: it server-side applies the MCP's children
(ConfigMap, Deployment, Service, and the NetworkPolicy when agentkube makes one: read from the
children file agentkube's builders wrote, adopted here so they carry the controller owner
reference), writes ``observedGeneration`` and an ``Accepted`` condition through kopf's status patch,
and posts one Event. kopf runs synchronous handlers on a thread pool, whose size
(``settings.execution.max_workers``) is set to ``BENCH_PEER_WORKERS``, the counterpart of
agentkube's and controller-runtime's concurrent reconciles. kopf keeps its own
bookkeeping (the last handled spec, handler progress) in the MCP's annotations and status, as it
does for every operator; those writes are its own and are counted.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
from typing import Any

import kopf
import kubernetes

FIELD_MANAGER = "bench-kopf"
APPLY = "application/apply-patch+yaml"

with open(os.environ["BENCH_PEER_CHILDREN"], encoding="utf-8") as f:
    CHILDREN: dict[str, list[dict[str, Any]]] = json.load(f)

_apis: dict[str, Any] = {}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.execution.max_workers = int(os.environ.get("BENCH_PEER_WORKERS", "4"))
    kubernetes.config.load_kube_config()
    _apis["core"] = kubernetes.client.CoreV1Api()
    _apis["apps"] = kubernetes.client.AppsV1Api()
    _apis["networking"] = kubernetes.client.NetworkingV1Api()


def _apply(child: dict[str, Any]) -> None:
    name, namespace = child["metadata"]["name"], child["metadata"]["namespace"]
    options = {"field_manager": FIELD_MANAGER, "force": True, "_content_type": APPLY}
    if child["kind"] == "ConfigMap":
        _apis["core"].patch_namespaced_config_map(name, namespace, child, **options)
    elif child["kind"] == "Service":
        _apis["core"].patch_namespaced_service(name, namespace, child, **options)
    elif child["kind"] == "Deployment":
        _apis["apps"].patch_namespaced_deployment(name, namespace, child, **options)
    elif child["kind"] == "NetworkPolicy":
        _apis["networking"].patch_namespaced_network_policy(name, namespace, child, **options)
    else:
        raise kopf.PermanentError(f"{child['kind']} {name}: not a kind this operator applies")


@kopf.on.resume("agentkube.io", "v1alpha1", "mcps")
@kopf.on.create("agentkube.io", "v1alpha1", "mcps")
@kopf.on.update("agentkube.io", "v1alpha1", "mcps", field="spec")
def reconcile(body: Any, name: str, meta: Any, status: Any, patch: Any, **_: Any) -> None:
    children = copy.deepcopy(CHILDREN[name])
    kopf.adopt(children, owner=body)
    for child in children:
        _apply(child)
    generation = meta["generation"]
    if status.get("observedGeneration") == generation:
        return
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch.status["observedGeneration"] = generation
    patch.status["conditions"] = [
        {
            "type": "Accepted",
            "status": "True",
            "reason": "Accepted",
            "message": "the proxy's children are applied",
            "lastTransitionTime": now,
            "observedGeneration": generation,
        }
    ]
    kopf.info(body, reason="Applied", message="Applied the proxy's children")
