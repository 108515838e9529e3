"""The ToolServer controller: an MCP server as a Deployment and a Service, routed through its ToolGateway.

What a ToolServer becomes (all named after it, in its namespace, controlled by it):

- Deployment: one container ``tool-server`` running ``spec.image`` with its command, args, env, envFrom
  and resources; the port ``mcp`` (``spec.port``); TCP startup, readiness and liveness probes on it
  (startup gives a slow first start, e.g. ``npx`` fetching a package, two and a half minutes before
  liveness may restart it); ``spec.replicas`` pods. A tool server is a user's image, so its pods get
  the least by default (``spec.security`` loosens each, saying what it costs): non-root, no privilege
  escalation, every capability dropped, RuntimeDefault seccomp (the restricted Pod Security
  profile), no service-account token (a tool server has no business with the API server) and no
  service links (the namespace's Service addresses stay out of its environment). The root
  filesystem stays writable: tool servers are arbitrary images, and many write caches to it.
- Service (ClusterIP): port ``spec.port`` to ``mcp``. Deployment, pods and Service carry the labels
  ``runtime.agentic-layer.ai/protocol`` and ``runtime.agentic-layer.ai/transport``.
- NetworkPolicy (unless ``OperatorOptions.network_policies`` is off): port ``mcp`` admits pods of
  the server's own namespace and, when it is attached to a ToolGateway that admits it, of the
  gateway's namespace (where agentgateway runs); nobody else (``netpol``).

Routing is the ToolGateway's: with ``toolGatewayRef`` to a ToolGateway that agentkube implements and
that admits the server (``gatewayapi.admission``), that gateway puts it at
``/<namespace>/<name>/mcp`` with a backend and route in the gateway's own namespace. This controller
only reports it, and deletes the per-server backend and route it made itself in the server's
namespace before routes moved to the gateway's.

Status: ``url`` (``http://<name>.<namespace>.svc.cluster.local:<port><path>``), ``gatewayUrl`` (the
gateway URL plus the server's path; empty when not routed through a gateway of ours), and the
conditions ``Accepted`` (False: ``InvalidSpec``, ``ToolGatewayNotFound``, ``NotAdmittedByToolGateway``
naming the gateway and its rule, ``GatewayAPINotInstalled``, ``AgentgatewayNotInstalled``,
``ChildConflict``, ``ChildRejected``), ``Available`` (the Deployment's) and ``Ready`` (both). A
ToolGateway of another controller is accepted without routes: they are that controller's to make.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentkube.api.kind import InvalidSpec
from agentkube.api.toolgateway import (
    TOOL_GATEWAY_KIND,
    TOOL_SERVER_KIND,
    ToolServerSpec,
)
from agentkube.controllers import field_manager
from agentkube.controllers.children import (
    Children,
    child_metadata,
    controller_of,
    selector_labels,
)
from agentkube.controllers.gatewayapi import (
    AGENTGATEWAY_CRDS,
    GATEWAY_API_CRDS,
    TOOL_GATEWAY_CLASS_INDEX,
    TOOL_GATEWAY_INDEX,
    CrdGate,
    admission,
    decide_class,
    gateway_url,
    index_tool_gateways,
    index_tool_servers,
    server_host,
    server_route_path,
    tool_gateway_key,
)
from agentkube.controllers.grants import ReferenceGrants, permits
from agentkube.controllers.handover import HandingOver
from agentkube.controllers.kinds import (
    DEPLOYMENT,
    NAMESPACE,
    NETWORK_POLICY,
    SERVICE,
    TOOL_GATEWAY,
    TOOL_GATEWAY_CLASS,
    TOOL_SERVER,
)
from agentkube.controllers.netpol import network_policy
from agentkube.controllers.status import (
    CHILD_ERRORS,
    Problem,
    StatusWriter,
    accepted_condition,
    available_condition,
    child_problem,
    ready_condition,
)
from agentkube.runtime.gvk import ObjectKey
from agentkube.runtime.reconcile import Request, Result

if TYPE_CHECKING:
    from agentkube.controllers import OperatorOptions
    from agentkube.runtime.manager import Manager

__all__ = [
    "APP",
    "OWNED",
    "PROTOCOL_LABEL",
    "TRANSPORT_LABEL",
    "Attachment",
    "ToolServerReconciler",
    "deployment",
    "server_labels",
    "server_network_policy",
    "server_url",
    "service",
    "setup",
]


APP = "tool-server"
"""``app.kubernetes.io/name`` of every child, and the container's name."""
PROTOCOL_LABEL = "runtime.agentic-layer.ai/protocol"
TRANSPORT_LABEL = "runtime.agentic-layer.ai/transport"
PORT_NAME = "mcp"
# The Deployment is cached in full (its status feeds Available), the others metadata-only; the same
# choice as the workload kinds make, so the informers are shared.
OWNED = {DEPLOYMENT: False, SERVICE: True, NETWORK_POLICY: True}


def server_url(name: str, namespace: str, spec: ToolServerSpec) -> str:
    """The in-cluster URL of the server's MCP endpoint."""
    return f"http://{server_host(name, namespace)}:{spec.port}{spec.effective_path}"


def server_labels(name: str, spec: ToolServerSpec) -> dict[str, str]:
    """The labels beyond the standard ones: what the server speaks."""
    return {PROTOCOL_LABEL: spec.protocol, TRANSPORT_LABEL: spec.transport_type}


def _metadata(owner: Mapping[str, Any], spec: ToolServerSpec) -> dict[str, Any]:
    meta = child_metadata(owner, owner["metadata"]["name"], APP)
    meta["labels"] = {**meta["labels"], **server_labels(owner["metadata"]["name"], spec)}
    return meta


def _tcp_probe(period: int, failures: int) -> dict[str, Any]:
    return {"tcpSocket": {"port": PORT_NAME}, "periodSeconds": period, "failureThreshold": failures}


def deployment(owner: Mapping[str, Any], spec: ToolServerSpec) -> dict[str, Any]:
    name = owner["metadata"]["name"]
    container: dict[str, Any] = {"name": APP, "image": spec.image}
    if spec.command:
        container["command"] = list(spec.command)
    if spec.args:
        container["args"] = list(spec.args)
    container["ports"] = [{"name": PORT_NAME, "containerPort": spec.port, "protocol": "TCP"}]
    if spec.env:
        container["env"] = [e.to_dict() for e in spec.env]
    if spec.env_from:
        container["envFrom"] = [e.to_dict() for e in spec.env_from]
    if spec.resources is not None:
        resources = {k: v for k, v in spec.resources.to_dict().items() if v}
        if resources:
            container["resources"] = resources
    container["startupProbe"] = _tcp_probe(5, 30)
    container["readinessProbe"] = _tcp_probe(10, 3)
    container["livenessProbe"] = _tcp_probe(20, 3)
    security = spec.security
    capabilities: dict[str, Any] = {"drop": ["ALL"]}
    if security.capabilities:
        capabilities["add"] = list(security.capabilities)
    seccomp = {"type": security.seccomp_profile}
    container["securityContext"] = {
        "allowPrivilegeEscalation": security.allow_privilege_escalation,
        "runAsNonRoot": security.run_as_non_root,
        "capabilities": capabilities,
        "seccompProfile": seccomp,
    }
    return {
        "apiVersion": DEPLOYMENT.api_version,
        "kind": DEPLOYMENT.kind,
        "metadata": _metadata(owner, spec),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector_labels(APP, name)},
            "template": {
                "metadata": {"labels": {**selector_labels(APP, name), **server_labels(name, spec)}},
                "spec": {
                    "automountServiceAccountToken": security.automount_service_account_token,
                    "enableServiceLinks": security.enable_service_links,
                    "securityContext": {"runAsNonRoot": security.run_as_non_root, "seccompProfile": seccomp},
                    "containers": [container],
                },
            },
        },
    }


def service(owner: Mapping[str, Any], spec: ToolServerSpec) -> dict[str, Any]:
    return {
        "apiVersion": SERVICE.api_version,
        "kind": SERVICE.kind,
        "metadata": _metadata(owner, spec),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(APP, owner["metadata"]["name"]),
            "ports": [{"name": PORT_NAME, "port": spec.port, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def server_network_policy(
    owner: Mapping[str, Any], spec: ToolServerSpec, gateway_namespace: str | None
) -> dict[str, Any]:
    """The NetworkPolicy of the server's pods: ``mcp`` from its own namespace and, when it is routed
    through a gateway, from the gateway's namespace."""
    name = owner["metadata"]["name"]
    return network_policy(
        _metadata(owner, spec),
        selector_labels(APP, name),
        port=PORT_NAME,
        namespaces=[gateway_namespace] if gateway_namespace else [],
    )


@dataclass
class Attachment:
    """What a ToolServer's ``toolGatewayRef`` resolves to."""

    gateway_url: str = ""
    gateway_namespace: str | None = None
    """The namespace whose pods (agentgateway's) the server's NetworkPolicy admits, if any."""
    problems: list[Problem] = field(default_factory=list)
    needs_gateway_kinds: bool = False
    """Whether the routes need the Gateway API and agentgateway kinds served."""


class ToolServerReconciler:
    """Reconciles ToolServers; reads only the cache, writes children and status when they differ."""

    def __init__(self, manager: Manager, options: OperatorOptions, gate: CrdGate) -> None:
        self._cache = manager.cache
        self._controller = options.tool_gateway_controller
        self._network_policies = options.network_policies
        self.gate = gate
        self.grants = ReferenceGrants(manager)
        self.namespaces = manager.cache.informer(NAMESPACE, metadata_only=True)
        self.children = Children(
            manager.cache,
            HandingOver(manager.client),
            manager.event_recorder("toolserver"),
            OWNED,
            field_manager=field_manager("toolserver"),
        )
        self.status = StatusWriter(
            HandingOver(manager.client),
            fields=("observedGeneration", "url", "gatewayUrl", "conditions"),
            field_manager=field_manager("toolserver"),
        )

    async def reconcile(self, request: Request) -> Result | None:
        obj = self._cache.get(TOOL_SERVER, request.name, request.namespace)
        if obj is None:
            self.children.forget(TOOL_SERVER, request.key)
            if self.gate.started is not None:
                self.gate.started.forget(TOOL_SERVER, request.key)
            self.status.forget(TOOL_SERVER, request.key)
            return None
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return None  # the garbage collector removes the children through their owner references
        label = f"ToolServer {request.key}"
        generation = int(meta.get("generation") or 0)
        problems: list[Problem] = []
        status: dict[str, Any] = {"observedGeneration": generation, "url": "", "gatewayUrl": ""}
        try:
            spec = TOOL_SERVER_KIND.parse(obj)
        except InvalidSpec as e:
            # Existing children are left alone: a broken edit does not take a serving server down.
            problems.append(Problem("InvalidSpec", str(e)))
        else:
            status["url"] = server_url(meta["name"], meta["namespace"], spec)
            attachment = self._attachment(obj, spec)
            wanted = [deployment(obj, spec), service(obj, spec)]
            if self._network_policies:
                wanted.append(server_network_policy(obj, spec, attachment.gateway_namespace))
            problems += await self._apply(self.children, obj, wanted, label)
            problems += attachment.problems
            missing = self.gate.missing()
            if missing and attachment.needs_gateway_kinds:
                problems.append(
                    Problem(missing[0].crd.reason, f"{label}: " + "; ".join(str(m) for m in missing))
                )
            elif not missing:
                # Routes now live in the gateway's namespace; the ones this controller made in the
                # server's namespace before are deleted (pruning needs the kinds served).
                routed = await self.gate.children()
                if routed is not None:
                    route_problems = await self._apply(routed, obj, [], label)
                    problems += route_problems
                    if not route_problems and not attachment.problems:
                        status["gatewayUrl"] = attachment.gateway_url

        live = self.children.get(DEPLOYMENT, meta["name"], meta["namespace"])
        if live is not None and controller_of(live) != meta["uid"]:
            live = None  # a namesake we do not control says nothing about this server
        accepted = accepted_condition(problems, generation)
        available = available_condition(live, generation)
        status["conditions"] = [accepted, available, ready_condition(accepted, available, generation)]
        await self.status.apply(obj, status)
        return None

    def _attachment(self, obj: dict[str, Any], spec: ToolServerSpec) -> Attachment:
        key = tool_gateway_key(obj)
        if spec.tool_gateway_ref is None or key is None:
            return Attachment()
        namespace, _, name = key.partition("/")
        gateway = self._cache.get(TOOL_GATEWAY, name, namespace)
        if gateway is None:
            return Attachment(
                problems=[
                    Problem(
                        "ToolGatewayNotFound",
                        f"ToolServer {obj['metadata']['namespace']}/{obj['metadata']['name']}: "
                        f"spec.toolGatewayRef: ToolGateway {key} not found",
                    )
                ]
            )
        class_name = (gateway.get("spec") or {}).get("toolGatewayClassName")
        decision = decide_class(class_name, self._cache.list(TOOL_GATEWAY_CLASS), self._controller)
        if not decision.ours:
            # Its controller decides who attaches; its pods still live in the gateway's namespace.
            return Attachment(gateway_namespace=namespace)
        try:
            gateway_spec = TOOL_GATEWAY_KIND.parse(gateway)
        except InvalidSpec:
            return Attachment()  # the gateway's own status says what is wrong; it routes nothing
        server_namespace = obj["metadata"]["namespace"]
        granted = server_namespace != namespace and permits(
            self.grants.in_namespace(namespace),
            from_=(TOOL_SERVER.group, TOOL_SERVER.kind),
            from_namespace=server_namespace,
            to=(TOOL_GATEWAY.group, TOOL_GATEWAY.kind),
            to_name=name,
        )
        refused = admission(
            gateway, gateway_spec, server_namespace, self.namespace_labels(server_namespace), granted
        )
        if refused is not None:
            label = f"ToolServer {server_namespace}/{obj['metadata']['name']}"
            return Attachment(
                problems=[Problem("NotAdmittedByToolGateway", f"{label}: spec.toolGatewayRef: {refused}")]
            )
        path = server_route_path(obj["metadata"]["name"], server_namespace)
        return Attachment(
            gateway_url=gateway_url(name, namespace) + path,
            gateway_namespace=namespace,
            needs_gateway_kinds=True,
        )

    def namespace_labels(self, name: str) -> Mapping[str, str] | None:
        """The labels of namespace ``name`` (None when the cache does not know it)."""
        found = self.namespaces.store.get(ObjectKey(None, name))
        return None if found is None else dict(found["metadata"].get("labels") or {})

    async def _apply(
        self, children: Children, obj: dict[str, Any], desired: list[dict[str, Any]], label: str
    ) -> list[Problem]:
        try:
            await children.apply(obj, desired)
        except CHILD_ERRORS as e:
            return [child_problem(label, e)]
        return []


def setup(manager: Manager, options: OperatorOptions) -> None:
    """Register the ToolServer controller."""
    cache = manager.cache
    index_tool_servers(cache, TOOL_SERVER)
    index_tool_gateways(cache, TOOL_GATEWAY)
    gate = CrdGate(
        manager,
        TOOL_SERVER,
        # What a ToolServer writes of them is all in metadata as far as Children reads.
        {GATEWAY_API_CRDS[1]: True, AGENTGATEWAY_CRDS[1]: True},
        manager.event_recorder("toolserver"),
        field_manager=field_manager("toolserver"),
    )
    reconciler = ToolServerReconciler(manager, options, gate)

    def servers_of(gateway: Mapping[str, Any]) -> list[Request]:
        key = f"{gateway['metadata']['namespace']}/{gateway['metadata']['name']}"
        return [Request.of(s) for s in cache.list(TOOL_SERVER, index=(TOOL_GATEWAY_INDEX, key))]

    def servers_of_class(cls: dict[str, Any]) -> list[Request]:
        # The class decides whether the gateways naming it (or naming none, for a default) are ours.
        gateways = cache.list(TOOL_GATEWAY, index=(TOOL_GATEWAY_CLASS_INDEX, cls["metadata"]["name"]))
        gateways += cache.list(TOOL_GATEWAY, index=(TOOL_GATEWAY_CLASS_INDEX, ""))
        return [r for g in gateways for r in servers_of(g)]

    def attached_servers(_: dict[str, Any]) -> list[Request]:
        return [Request.of(s) for s in cache.list(TOOL_SERVER) if tool_gateway_key(s) is not None]

    def servers_of_namespace(ns: dict[str, Any]) -> list[Request]:
        # Its labels decide whether a gateway's selector admits the namespace's servers.
        return [Request.of(s) for s in cache.list(TOOL_SERVER, ns["metadata"]["name"]) if tool_gateway_key(s)]

    def servers_of_grant(grant: dict[str, Any]) -> list[Request]:
        # A grant of namespace N concerns the servers attached to N's gateways.
        namespace = grant["metadata"].get("namespace")
        return [r for g in cache.list(TOOL_GATEWAY, namespace) for r in servers_of(g)]

    builder = manager.controller("toolserver").for_kind(TOOL_SERVER)
    builder = reconciler.children.register(builder)
    builder = (
        builder.watches(TOOL_GATEWAY, map_to=servers_of)
        .watches(TOOL_GATEWAY_CLASS, map_to=servers_of_class)
        .watches(NAMESPACE, map_to=servers_of_namespace, metadata_only=True)
    )
    builder = reconciler.grants.register(builder, lambda: attached_servers({}))
    controller = gate.register(builder, attached_servers).complete(reconciler)
    gate.bind(controller)
    reconciler.grants.bind(controller, servers_of_grant)
