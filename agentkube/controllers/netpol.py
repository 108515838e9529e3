"""NetworkPolicies: who may call the pods agentkube runs.

Every MCP proxy, LLM gateway and ToolServer gets one NetworkPolicy (named after its object, owned by
it, pruned with it) selecting exactly its pods. It restricts ingress only (what the pods call out to
is theirs: upstreams, providers, tool back ends live anywhere) and admits

- on the serving port: pods of the object's own namespace, and of each namespace named (the ones
  granted a reference to it by a ReferenceGrant, or a ToolServer's gateway's namespace, where
  agentgateway's pods run);
- on the open ports (the ``metrics`` port of our data-plane programs): anyone, so a scraper in any
  namespace still reads ``/metrics``, which carries no credential and no request content.

Namespaces are matched by ``kubernetes.io/metadata.name``, the label the API server sets on every
namespace. Ports are named (``http``, ``metrics``, ``mcp``), so a port change needs no policy change.
A NetworkPolicy does nothing on a cluster whose CNI does not enforce them; ``agentkube manager
--network-policies=false`` then leaves them out (and deletes those made before).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentkube.controllers.kinds import NETWORK_POLICY

__all__ = ["NAMESPACE_NAME_LABEL", "network_policy"]

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def network_policy(
    metadata: Mapping[str, Any],
    pod_labels: Mapping[str, str],
    *,
    port: str,
    namespaces: Sequence[str] = (),
    open_ports: Sequence[str] = (),
) -> dict[str, Any]:
    """The NetworkPolicy of the pods labelled ``pod_labels`` (``metadata``: the child's, as
    ``children.child_metadata`` makes it). ``port``: the serving port's name, admitted from the
    policy's namespace and ``namespaces``; ``open_ports``: port names admitted from anywhere."""
    own = str(metadata.get("namespace") or "")
    peers: list[dict[str, Any]] = [{"podSelector": {}}]
    peers += [
        {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: ns}}}
        for ns in sorted(set(namespaces) - {own})
    ]
    ingress: list[dict[str, Any]] = [{"from": peers, "ports": [{"protocol": "TCP", "port": port}]}]
    if open_ports:
        ingress.append({"ports": [{"protocol": "TCP", "port": p} for p in open_ports]})
    return {
        "apiVersion": NETWORK_POLICY.api_version,
        "kind": NETWORK_POLICY.kind,
        "metadata": dict(metadata),
        "spec": {
            "podSelector": {"matchLabels": dict(pod_labels)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }
