"""What agentkube writes for agentgateway through the Gateway API, and whether the cluster can take it.

The pieces the ToolGatewayClass, ToolGateway and ToolServer controllers share (a controller never
imports another): builders of the Gateway API (``gateway.networking.k8s.io/v1``) and agentgateway
(``agentgateway.dev/v1alpha1``) objects, the names and paths they use, the ToolGatewayClass rules that
say which ToolGateways agentkube implements, the cache indexes that join ToolServers to ToolGateways,
and the checks that the CustomResourceDefinitions of the Gateway kinds are served. All pure, except
``CrdGate`` (at the end): it starts watching those kinds once their CRDs appear, so the operator runs
in a cluster without them and takes them up, without a restart, when they are installed.

What a caller may rely on:

- Builders return plain dicts with ``apiVersion``, ``kind``, ``metadata.name``/``namespace`` (and
  labels of their own where said) and ``spec``; the standard labels and the owner reference are added
  by the caller (``agentkube.controllers.children``). Fields the CRDs would default (``group``,
  ``kind``, ``weight`` of references) are written out, so a stored object reads as we wrote it.
- Every object a ToolGateway routes through lives in its own namespace. ``multiplex_name``
  (``<gateway>-mcp-<hash>``, ``<gateway>-<namespace>-<hash>``) and ``server_route_name``
  (``<gateway>-<namespace>-<server>-<hash>``) are DNS labels of at most 63 characters (``NAME_MAX``),
  the readable part cut to fit; the hash is of what the name stands for, so the objects of two
  gateways, of a namespace and of a server never collide, however long the names they come from,
  and a name never changes while they do not.
- ``admission`` is the one rule that says whether a ToolServer may attach to a gateway; the
  ToolGateway controller (who routes) and the ToolServer controller (who reports) both ask it.
- ``multiplex_targets`` gives each server a target name that depends only on the server itself
  (``<name>`` per namespace, ``<namespace>-<name>`` across namespaces; letters, digits and '-', so the
  ``<target>_<tool>`` names agentgateway shows clients stay valid LLM tool names), cut to 63
  characters with a hash of the namespace and name when longer (so a tool name of up to 64
  characters stays within the MCP spec's 128), and, when two attached servers would get the same
  name (``a-b/c`` and ``a/b-c``), both carrying a short hash of their namespace and name. At most
  ``MAX_MCP_TARGETS`` targets go into one backend (agentgateway's limit); the ones left out are
  returned so the caller can say so.
- ``decide_class``: see its docstring; a caller that cannot read the classes raises instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import orjson

from agentkube.api.toolgateway import DEFAULT_CLASS_ANNOTATION, ToolGatewaySpec
from agentkube.controllers.children import Children
from agentkube.controllers.handover import HandingOver
from agentkube.controllers.kinds import (
    AGENTGATEWAY_BACKEND,
    AGENTGATEWAY_PARAMETERS,
    CUSTOM_RESOURCE_DEFINITION,
    GATEWAY,
    HTTP_ROUTE,
)
from agentkube.runtime.gvk import GVK, ObjectKey
from agentkube.runtime.handler import EnqueueRequestForOwner

if TYPE_CHECKING:
    from agentkube.runtime.controller import Controller
    from agentkube.runtime.informer import Informer
    from agentkube.runtime.manager import Manager
    from agentkube.runtime.reconcile import Request

__all__ = [
    "AGENTGATEWAY_CRDS",
    "GATEWAY_API_CRDS",
    "LISTENER_NAME",
    "MAX_MCP_TARGETS",
    "TOOLSERVER_NAMESPACE_LABEL",
    "TOOL_GATEWAY_CLASS_INDEX",
    "TOOL_GATEWAY_INDEX",
    "ClassDecision",
    "CrdGate",
    "McpTarget",
    "MissingCrd",
    "RequiredCrd",
    "ServerRef",
    "admission",
    "agentgateway_parameters",
    "crd_problem",
    "decide_class",
    "default_classes",
    "gateway",
    "gateway_url",
    "http_route",
    "index_tool_gateways",
    "index_tool_servers",
    "mcp_backend",
    "missing_crds",
    "multiplex_name",
    "multiplex_path",
    "multiplex_targets",
    "selector_matches",
    "server_host",
    "server_route_name",
    "server_route_path",
    "tool_gateway_key",
    "trim_crd",
]


LISTENER_NAME = "http"
LISTENER_PORT = 80
# agentgateway.dev AgentgatewayBackend spec.mcp.targets: maxItems.
MAX_MCP_TARGETS = 32
# The container agentgateway's controller renders; envFrom reaches it through the Deployment overlay.
AGENTGATEWAY_CONTAINER = "agentgateway"
# Label on the per-namespace multiplex objects: which namespace's servers they route to.
TOOLSERVER_NAMESPACE_LABEL = "runtime.agentic-layer.ai/toolserver-namespace"
MCP_PATH = "/mcp"

# --------------------------------------------------------------------------------------- CRDs


@dataclass(frozen=True)
class RequiredCrd:
    """A kind we write whose CRD may be missing, and the reason a condition gives when it is."""

    gvk: GVK
    plural: str
    reason: Literal["GatewayAPINotInstalled", "AgentgatewayNotInstalled"]

    @property
    def name(self) -> str:
        return f"{self.plural}.{self.gvk.group}"


GATEWAY_API_CRDS = (
    RequiredCrd(GATEWAY, "gateways", "GatewayAPINotInstalled"),
    RequiredCrd(HTTP_ROUTE, "httproutes", "GatewayAPINotInstalled"),
)
AGENTGATEWAY_CRDS = (
    RequiredCrd(AGENTGATEWAY_PARAMETERS, "agentgatewayparameters", "AgentgatewayNotInstalled"),
    RequiredCrd(AGENTGATEWAY_BACKEND, "agentgatewaybackends", "AgentgatewayNotInstalled"),
)


@dataclass(frozen=True)
class MissingCrd:
    """A required CRD the cluster does not serve, and what is wrong with it."""

    crd: RequiredCrd
    problem: str

    def __str__(self) -> str:
        return self.problem


def trim_crd(obj: dict[str, Any]) -> dict[str, Any]:
    """A CustomResourceDefinition cut down to what ``crd_problem`` reads.

    Used as the cache transform of the CRD informer: a cluster's CRDs with their schemas can run
    to tens of megabytes, and only the names, versions and conditions matter here.
    """
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    trimmed: dict[str, Any] = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {
            k: meta[k]
            for k in ("name", "uid", "resourceVersion", "generation", "deletionTimestamp")
            if k in meta
        },
        "spec": {
            "group": spec.get("group"),
            "names": {k: names[k] for k in ("kind", "plural") if k in names},
            "versions": [
                {"name": v.get("name"), "served": v.get("served", False)} for v in spec.get("versions") or []
            ],
        },
    }
    conditions = (obj.get("status") or {}).get("conditions")
    if conditions is not None:
        trimmed["status"] = {
            "conditions": [{k: c.get(k) for k in ("type", "status", "reason", "message")} for c in conditions]
        }
    return trimmed


def crd_problem(crd: Mapping[str, Any] | None, required: RequiredCrd) -> str | None:
    """Why ``crd`` (the CustomResourceDefinition named ``required.name``, or None) cannot serve the
    kind; None when it is established and serves the version we write."""
    what = f"{required.gvk.kind} {required.gvk.api_version}"
    if crd is None:
        return f"CustomResourceDefinition {required.name} is not installed; {what} cannot be created"
    if (crd.get("metadata") or {}).get("deletionTimestamp"):
        return f"CustomResourceDefinition {required.name} is being deleted; {what} cannot be created"
    conditions = (crd.get("status") or {}).get("conditions") or []
    if not any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
        return f"CustomResourceDefinition {required.name} is not established yet"
    versions = (crd.get("spec") or {}).get("versions") or []
    if not any(v.get("name") == required.gvk.version and v.get("served") for v in versions):
        served = ", ".join(v["name"] for v in versions if v.get("served")) or "none"
        return (
            f"CustomResourceDefinition {required.name} does not serve {required.gvk.version} "
            f"(served: {served}); {what} cannot be created"
        )
    return None


def missing_crds(
    lookup: Callable[[str], Mapping[str, Any] | None], required: Iterable[RequiredCrd]
) -> list[MissingCrd]:
    """The CRDs of ``required`` that are not served, in order; ``lookup`` finds a CRD by name."""
    found = []
    for crd in required:
        problem = crd_problem(lookup(crd.name), crd)
        if problem is not None:
            found.append(MissingCrd(crd, problem))
    return found


# ------------------------------------------------------------------------------ names and paths


def server_host(name: str, namespace: str) -> str:
    """The in-cluster DNS name of a ToolServer's Service."""
    return f"{name}.{namespace}.svc.cluster.local"


def gateway_url(name: str, namespace: str) -> str:
    """The in-cluster URL of a ToolGateway (its Gateway's Service, port 80)."""
    return f"http://{name}.{namespace}.svc.cluster.local"


def server_route_path(name: str, namespace: str) -> str:
    """The gateway path of one ToolServer."""
    return f"/{namespace}/{name}{MCP_PATH}"


def multiplex_path(namespace: str | None) -> str:
    """The gateway path aggregating the servers of one namespace, or of all (None)."""
    return MCP_PATH if namespace is None else f"/{namespace}{MCP_PATH}"


NAME_MAX = 63
"""The longest derived name: a DNS label (RFC 1123), what every Kubernetes name and label value fits."""
_HASH_LEN = 8


def _hash(identity: str, length: int = _HASH_LEN) -> str:
    return hashlib.sha256(identity.encode()).hexdigest()[:length]


def _fitted(readable: str, identity: str, *, always: bool) -> str:
    """``readable`` as a DNS label of at most ``NAME_MAX`` characters: cut and followed by a short hash
    of ``identity`` when it is too long (or ``always``), so names stay unique and never change."""
    if not always and len(readable) <= NAME_MAX:
        return readable
    head = readable[: NAME_MAX - _HASH_LEN - 1].rstrip("-")
    return f"{head}-{_hash(identity)}" if head else _hash(identity)


def server_route_name(gateway_name: str, namespace: str, name: str) -> str:
    """The name of the backend and route a ToolGateway sends one ToolServer's path through:
    ``<gateway>-<namespace>-<server>`` cut to fit, and a hash of the three (``-`` joins are
    ambiguous: ``a-b``/``c`` and ``a``/``b-c``), so it is a unique DNS label."""
    return _fitted(
        f"{gateway_name}-{namespace}-{name}", f"server/{gateway_name}/{namespace}/{name}", always=True
    )


def multiplex_name(gateway_name: str, namespace: str | None) -> str:
    """The name of the backend and route a ToolGateway aggregates a namespace's servers (or all,
    with None) through: ``<gateway>-<namespace>`` (``<gateway>-mcp``) cut to fit, and a hash that keeps
    it apart from every other derived name (and from the Gateway's own)."""
    if namespace is None:
        return _fitted(f"{gateway_name}-mcp", f"all/{gateway_name}", always=True)
    return _fitted(f"{gateway_name}-{namespace}", f"namespace/{gateway_name}/{namespace}", always=True)


# ------------------------------------------------------------------------------------ builders


def gateway(name: str, namespace: str, *, gateway_class_name: str, parameters_name: str) -> dict[str, Any]:
    """The Gateway of a ToolGateway: one HTTP listener on port 80 taking routes from its own namespace
    only (every route of a ToolGateway lives there; a route another namespace makes cannot attach and
    shadow ``/mcp``), provisioned with the AgentgatewayParameters ``parameters_name``."""
    return {
        "apiVersion": GATEWAY.api_version,
        "kind": GATEWAY.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gatewayClassName": gateway_class_name,
            "listeners": [
                {
                    "name": LISTENER_NAME,
                    "protocol": "HTTP",
                    "port": LISTENER_PORT,
                    "allowedRoutes": {"namespaces": {"from": "Same"}},
                }
            ],
            "infrastructure": {
                "parametersRef": {
                    "group": AGENTGATEWAY_PARAMETERS.group,
                    "kind": AGENTGATEWAY_PARAMETERS.kind,
                    "name": parameters_name,
                }
            },
        },
    }


def agentgateway_parameters(
    name: str,
    namespace: str,
    *,
    env: Sequence[Mapping[str, Any]],
    env_from: Sequence[Mapping[str, Any]],
    tracing: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The AgentgatewayParameters of a ToolGateway.

    ``env`` goes to ``spec.env``. AgentgatewayParameters has no envFrom, so ``env_from`` reaches the
    agentgateway container through the Deployment overlay (a strategic merge patch, matching the
    container by name). The Service is ClusterIP: agentgateway's default is a LoadBalancer, and a
    tool gateway is for agents inside the cluster. ``tracing`` becomes ``rawConfig.config.tracing``.
    """
    spec: dict[str, Any] = {
        "env": [dict(e) for e in env],
        "deployment": {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": AGENTGATEWAY_CONTAINER, "envFrom": [dict(e) for e in env_from]}
                        ]
                    }
                }
            }
        },
        "service": {"spec": {"type": "ClusterIP"}},
    }
    if tracing is not None:
        spec["rawConfig"] = {"config": {"tracing": dict(tracing)}}
    return {
        "apiVersion": AGENTGATEWAY_PARAMETERS.api_version,
        "kind": AGENTGATEWAY_PARAMETERS.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


@dataclass(frozen=True)
class McpTarget:
    """One MCP server behind an AgentgatewayBackend."""

    name: str
    host: str
    port: int
    path: str
    protocol: Literal["StreamableHTTP", "SSE"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "static": {"host": self.host, "port": self.port, "path": self.path, "protocol": self.protocol},
        }


def mcp_backend(
    name: str,
    namespace: str,
    targets: Sequence[McpTarget],
    *,
    fail_open: bool = False,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An AgentgatewayBackend serving ``targets`` (1 to ``MAX_MCP_TARGETS``) as one MCP server.

    ``fail_open``: a session goes on with the targets that answer when some do not (agentgateway's
    ``failureMode: FailOpen``). Right for a multiplex of independent servers, where the default
    (FailClosed) would let one broken server take every tool of the gateway down with it.
    """
    if not 1 <= len(targets) <= MAX_MCP_TARGETS:
        raise ValueError(f"an MCP backend takes 1 to {MAX_MCP_TARGETS} targets, got {len(targets)}")
    mcp: dict[str, Any] = {"targets": [t.to_dict() for t in targets]}
    if fail_open:
        mcp["failureMode"] = "FailOpen"
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    return {
        "apiVersion": AGENTGATEWAY_BACKEND.api_version,
        "kind": AGENTGATEWAY_BACKEND.kind,
        "metadata": metadata,
        "spec": {"mcp": mcp},
    }


def http_route(
    name: str,
    namespace: str,
    *,
    gateway_name: str,
    gateway_namespace: str,
    path_prefix: str,
    backend_name: str,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An HTTPRoute on the Gateway's HTTP listener sending ``path_prefix`` to the AgentgatewayBackend
    ``backend_name`` in the route's own namespace (so no ReferenceGrant is needed)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    return {
        "apiVersion": HTTP_ROUTE.api_version,
        "kind": HTTP_ROUTE.kind,
        "metadata": metadata,
        "spec": {
            "parentRefs": [
                {
                    "group": GATEWAY.group,
                    "kind": GATEWAY.kind,
                    "name": gateway_name,
                    "namespace": gateway_namespace,
                    "sectionName": LISTENER_NAME,
                }
            ],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": path_prefix}}],
                    "backendRefs": [
                        {
                            "group": AGENTGATEWAY_BACKEND.group,
                            "kind": AGENTGATEWAY_BACKEND.kind,
                            "name": backend_name,
                            "weight": 1,
                        }
                    ],
                }
            ],
        },
    }


# ----------------------------------------------------------------------------------- multiplex


@dataclass(frozen=True, order=True)
class ServerRef:
    """What a multiplex target needs of one ToolServer."""

    namespace: str
    name: str
    port: int = field(compare=False)
    path: str = field(compare=False)
    transport: Literal["http", "sse"] = field(compare=False, default="http")

    def target(self, target_name: str) -> McpTarget:
        return McpTarget(
            name=target_name,
            host=server_host(self.name, self.namespace),
            port=self.port,
            path=self.path,
            protocol="SSE" if self.transport == "sse" else "StreamableHTTP",
        )


def _short_hash(server: ServerRef) -> str:
    return _hash(f"{server.namespace}/{server.name}", 6)


def multiplex_targets(
    servers: Iterable[ServerRef], *, across_namespaces: bool
) -> tuple[list[McpTarget], list[ServerRef]]:
    """The targets of one multiplex backend, ordered by namespace and name, and the servers left out
    because the backend is full."""
    ordered = sorted(set(servers))
    plain = {
        s: _fitted(
            f"{s.namespace}-{s.name}" if across_namespaces else s.name,
            f"{s.namespace}/{s.name}",
            always=False,
        )
        for s in ordered
    }
    counts: dict[str, int] = {}
    for name in plain.values():
        counts[name] = counts.get(name, 0) + 1
    targets = []
    for server in ordered[:MAX_MCP_TARGETS]:
        name = plain[server]
        if counts[name] > 1:
            name = _fitted(
                f"{name[: NAME_MAX - 7]}-{_short_hash(server)}",
                f"{server.namespace}/{server.name}",
                always=False,
            )
        targets.append(server.target(name))
    return targets, ordered[MAX_MCP_TARGETS:]


# ----------------------------------------------------------------------------------- admission


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a Kubernetes label selector (``matchLabels``, ``matchExpressions``) selects ``labels``;
    an empty selector selects everything."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for requirement in selector.get("matchExpressions") or ():
        key, operator = requirement.get("key"), requirement.get("operator")
        values = requirement.get("values") or ()
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def admission(
    gateway_obj: Mapping[str, Any],
    spec: ToolGatewaySpec,
    server_namespace: str,
    namespace_labels: Mapping[str, str] | None,
    granted: bool,
) -> str | None:
    """Why a ToolServer of ``server_namespace`` may not attach to the ToolGateway ``gateway_obj``
    (``spec`` its parsed spec), or None when it may.

    Its own namespace always may; another when ``spec.allowedToolServers.namespaces`` admits it
    (``All``; ``Selector`` matching ``namespace_labels``, None when the namespace is not known) or when
    ``granted`` (a ReferenceGrant of the gateway's namespace lets ToolServers of that namespace refer
    to it). The reason names the gateway and the rule, and what would admit the server.
    """
    meta = gateway_obj["metadata"]
    namespace = meta["namespace"]
    if server_namespace == namespace or granted:
        return None
    rule = spec.allowed_tool_servers.namespaces
    if rule.from_ == "All":
        return None
    if rule.from_ == "Selector" and rule.selector is not None:
        selector = rule.selector.to_dict()
        if namespace_labels is not None and selector_matches(selector, namespace_labels):
            return None
        how = (
            f"selects namespaces by {orjson.dumps(selector).decode()}, and {server_namespace} is not "
            "one of them; label the namespace to match, or"
        )
    else:
        how = "admits its own namespace only (from Same);"
    return (
        f"ToolGateway {namespace}/{meta['name']}: spec.allowedToolServers.namespaces {how} have the "
        f"gateway's namespace grant it with a ReferenceGrant from runtime.agentic-layer.ai/ToolServer in "
        f"{server_namespace} to runtime.agentic-layer.ai/ToolGateway"
    )


# ---------------------------------------------------------------------------- class ownership


@dataclass(frozen=True)
class ClassDecision:
    """Whether a ToolGateway is agentkube's, through which ToolGatewayClass, and why."""

    ours: bool
    class_name: str | None
    message: str


def _is_default(cls: Mapping[str, Any]) -> bool:
    annotations = (cls.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(DEFAULT_CLASS_ANNOTATION, "")).lower() == "true"


def _age_key(cls: Mapping[str, Any]) -> tuple[datetime, str]:
    meta = cls.get("metadata") or {}
    created = meta.get("creationTimestamp")
    when = datetime.fromisoformat(created.replace("Z", "+00:00")) if created else datetime.max
    return when.replace(tzinfo=None), str(meta.get("name", ""))


def default_classes(classes: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The ToolGatewayClasses annotated default, oldest first: the first one is the one used.

    Oldest rather than newest (what StorageClass does) because a ToolGateway is long-lived: a new
    default class appearing must not move running gateways to another controller.
    """
    return sorted((c for c in classes if _is_default(c)), key=_age_key)


def decide_class(
    class_name: str | None, classes: Iterable[Mapping[str, Any]], controller: str
) -> ClassDecision:
    """Whether a ToolGateway naming ``class_name`` (None: none) is implemented by ``controller``.

    An explicit name decides alone: a class that is missing or another controller's means "not
    ours", and never falls back to the default class. Without a name, the oldest class annotated
    default decides. ``classes`` is every ToolGatewayClass; reading them is the caller's, and a caller
    that cannot read them must not call this (a failed read is not "no classes").
    """
    every = list(classes)
    if class_name is not None:
        chosen = next((c for c in every if (c.get("metadata") or {}).get("name") == class_name), None)
        if chosen is None:
            return ClassDecision(False, class_name, f"ToolGatewayClass {class_name!r} does not exist")
    else:
        defaults = default_classes(every)
        if not defaults:
            return ClassDecision(False, None, "no toolGatewayClassName and no default ToolGatewayClass")
        chosen = defaults[0]
    name = str((chosen.get("metadata") or {}).get("name"))
    owner = (chosen.get("spec") or {}).get("controller")
    if owner != controller:
        return ClassDecision(False, name, f"ToolGatewayClass {name!r} belongs to controller {owner!r}")
    how = "named" if class_name is not None else "default"
    return ClassDecision(True, name, f"{how} ToolGatewayClass {name!r} is implemented by {controller}")


# ------------------------------------------------------------------ references and status


TOOL_GATEWAY_INDEX = "tool-gateway"
"""Cache index of ToolServers by the ToolGateway they reference, ``<namespace>/<name>``."""
TOOL_GATEWAY_CLASS_INDEX = "tool-gateway-class"
"""Cache index of ToolGateways by ``spec.toolGatewayClassName`` (``""`` for none)."""


def tool_gateway_key(server: Mapping[str, Any]) -> str | None:
    """``<namespace>/<name>`` of the ToolGateway a ToolServer object references, or None."""
    ref = (server.get("spec") or {}).get("toolGatewayRef") or {}
    if not ref.get("name"):
        return None
    namespace = ref.get("namespace") or (server.get("metadata") or {}).get("namespace")
    return f"{namespace}/{ref['name']}"


def index_tool_servers(cache: Any, tool_server: GVK) -> None:
    """Index ToolServers by ``TOOL_GATEWAY_INDEX`` (both the ToolGateway and the ToolServer controller
    read it; the first to set up adds it)."""
    _add_index(cache, tool_server, TOOL_GATEWAY_INDEX, lambda obj: [k for k in [tool_gateway_key(obj)] if k])


def index_tool_gateways(cache: Any, tool_gateway: GVK) -> None:
    """Index ToolGateways by ``TOOL_GATEWAY_CLASS_INDEX``."""
    _add_index(
        cache,
        tool_gateway,
        TOOL_GATEWAY_CLASS_INDEX,
        lambda obj: [str((obj.get("spec") or {}).get("toolGatewayClassName") or "")],
    )


def _add_index(cache: Any, gvk: GVK, name: str, fn: Callable[[dict[str, Any]], list[str]]) -> None:
    # Already added by the other controller, which defines it the same way.
    with contextlib.suppress(ValueError):
        cache.add_indexer(gvk, name, fn)


# ------------------------------------------------------------------------------------ CrdGate


class CrdGate:
    """Children of kinds whose CRDs may be missing, managed from the moment all their CRDs are served.

    Construct it in ``setup`` (before the manager runs): it caches CustomResourceDefinitions, cut down
    by ``trim_crd``, in ``crds``; ``register`` declares their watch on the controller, with the
    caller's mapping to its primaries. In ``reconcile``,
    ``missing()`` says which required CRDs are not served now, and ``await children()`` returns the
    ``Children`` of the gated kinds once all are served: on first need it starts their informers,
    attaches them to the controller as owned kinds (a child's events enqueue its owner) and waits
    until they have synced, so reads and pruning see a whole cache. None while any is missing.
    An informer whose CRD is deleted later keeps retrying with backoff; ``missing()`` reports the
    CRD again meanwhile.
    """

    def __init__(
        self,
        manager: Manager,
        owner: GVK,
        owned: Mapping[RequiredCrd, bool],
        recorder: Any,
        *,
        field_manager: str,
    ) -> None:
        """owned: each gated kind, with whether it is cached metadata-only (as ``Children`` takes it).
        field_manager: the controller's, which the children are applied with."""
        self._manager = manager
        self._field_manager = field_manager
        self._owner = owner
        self._owned = dict(owned)
        self._recorder = recorder
        self.required = tuple(owned)
        self._controller: Controller | None = None
        self._children: Children | None = None
        self.crds: Informer = manager.cache.informer(CUSTOM_RESOURCE_DEFINITION, transform=trim_crd)

    def bind(self, controller: Controller) -> None:
        """The controller the kinds become children of (call once, after ``complete``)."""
        self._controller = controller

    def watches(self, crd: Mapping[str, Any]) -> bool:
        """Whether ``crd`` (a CustomResourceDefinition) is one of the required ones."""
        return (crd.get("metadata") or {}).get("name") in {r.name for r in self.required}

    def register(self, builder: Any, map_to: Callable[[dict[str, Any]], list[Request]]) -> Any:
        """Declare the CRD watch on a controller ``Builder``: an event of a required CRD enqueues
        ``map_to(crd)`` (the primaries that wait for it); the others are ignored."""

        def required(crd: dict[str, Any]) -> list[Request]:
            return map_to(crd) if self.watches(crd) else []

        return builder.watches(CUSTOM_RESOURCE_DEFINITION, map_to=required, transform=trim_crd)

    def missing(self) -> list[MissingCrd]:
        """The required CRDs the cluster does not serve now, in order."""
        store = self.crds.store
        return missing_crds(lambda name: store.get(ObjectKey(None, name)), self.required)

    @property
    def started(self) -> Children | None:
        """The ``Children`` if ``children()`` ever started them (to prune what exists), else None."""
        return self._children

    async def children(self, timeout: float = 30.0) -> Children | None:  # noqa: ASYNC109
        """The ``Children`` of the gated kinds, synced; None while a required CRD is not served.

        Raises ``TimeoutError`` when the informers do not sync within ``timeout`` (retried by the
        controller like any other failure of the world).
        """
        if self._controller is None:
            raise RuntimeError("CrdGate.bind(controller) was not called")
        if self.missing():
            return None
        if self._children is None:
            cache = self._manager.cache
            for crd in self.required:
                # Discovery may have cached the kind's absence before its CRD was installed.
                self._manager.client.forget_discovery(crd.gvk)
            children = Children(
                cache,
                HandingOver(self._manager.client),
                self._recorder,
                {c.gvk: m for c, m in self._owned.items()},
                field_manager=self._field_manager,
            )
            for crd, metadata_only in self._owned.items():
                informer = cache.informer(crd.gvk, metadata_only=metadata_only)
                self._controller.watch(informer, EnqueueRequestForOwner(self._owner))
            self._children = children
        informers = [self._manager.cache.informer(crd.gvk, metadata_only=m) for crd, m in self._owned.items()]
        if not all(i.synced for i in informers):
            synced = await asyncio.gather(*(i.wait_for_sync(timeout) for i in informers))
            if not all(synced):
                raise TimeoutError(
                    "caches of "
                    + ", ".join(str(c.gvk) for c in self.required)
                    + f" did not sync in {timeout}s"
                )
        return self._children
