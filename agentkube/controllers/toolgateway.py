"""The ToolGateway controller: an agentgateway Gateway with routes to every ToolServer attached to it.

A ToolGateway is agentkube's when its class says so (``gatewayapi.decide_class``); others are left to
their controller. What one of ours becomes (in its namespace, controlled by it):

- Gateway ``<name>``: class ``OperatorOptions.gateway_class_name``, one listener ``http`` (HTTP, port 80)
  taking routes from its own namespace only, ``infrastructure.parametersRef`` to the
  AgentgatewayParameters.
- AgentgatewayParameters ``<name>``: ``spec.env`` without the OpenTelemetry exporter variables,
  ``spec.envFrom`` (through the Deployment overlay), a ClusterIP Service, and the variables'
  translation (``otel.translate``) as ``rawConfig.config.tracing``.
- Per-server routes: for each admitted ToolServer, AgentgatewayBackend + HTTPRoute
  ``gatewayapi.server_route_name`` (``<name>-<namespace>-<server>-<hash>``, a DNS label of at most 63
  characters) at ``/<namespace>/<server>/mcp`` (one target, the server's
  Service by its DNS name). Here, in the gateway's namespace and owned by it, wherever the server
  lives: a ToolServer's deletion, move or re-pointing prunes them with the next reconcile.
- Multiplex routes (``gatewayapi.multiplex_name``): AgentgatewayBackend + HTTPRoute
  ``<name>-mcp-<hash>`` at ``/mcp`` (every admitted ToolServer, all namespaces; target
  ``<namespace>-<name>``) and ``<name>-<namespace>-<hash>`` at
  ``/<namespace>/mcp`` (the admitted servers of one namespace; target ``<name>``). The backends fail
  open: one broken server does not take the others' tools down. A backend and route whose namespace
  no longer has servers are deleted; with no servers at all there is no ``/mcp`` either (a backend
  needs a target).

Which ToolServers are admitted: those whose ``toolGatewayRef`` names this gateway and whose namespace
``spec.allowedToolServers.namespaces`` admits (``gatewayapi.admission``: the gateway's own always;
``All``, the default, every namespace; ``Same``; ``Selector`` on the namespace's labels) or a
ReferenceGrant of the gateway's namespace grants (from ``runtime.agentic-layer.ai/ToolServer`` in
the server's namespace to ``runtime.agentic-layer.ai/ToolGateway``, optionally by name). The others
are in no backend and no route; their own status says why.

Status:

- ``url`` (``http://<name>.<namespace>.svc.cluster.local``), only while something serves it: while
  ``Programmed`` is True, i.e. the Gateway's controller reports the Gateway (at its current
  generation) programmed. Before that, or when the Gateway stops being programmed, there is no
  ``url``. Served means what the Gateway's controller says; agentkube does not call the URL.
- ``toolGatewayClassName``: the class the gateway is implemented as, ``spec.toolGatewayClassName``
  or, when that is omitted, the default class chosen (``gatewayapi.decide_class``).

and the conditions

- ``Accepted``: True names the class and how it was chosen (named, or the default); False with
  ``GatewayAPINotInstalled`` or ``AgentgatewayNotInstalled`` naming the missing
  CustomResourceDefinitions (the ToolGateway is taken up once they are installed, no restart
  needed), ``InvalidSpec``, ``ChildConflict``, ``ChildRejected``, ``ConfigMapNotFound`` (a ConfigMap
  ``spec.envFrom`` needs is not in the gateway's namespace, so its pods could not start; the
  children are made all the same, and the condition clears when the ConfigMap appears: ConfigMaps
  are watched, metadata-only, and mapped to the gateways reading them through an index).
- ``Programmed``: the Gateway's own ``Programmed``, mirrored (Unknown while the Gateway's controller
  has not reported on the Gateway's current generation).
- ``Ready``: ``Accepted`` and ``Programmed``.
- ``ToolServersRouted``: how many servers the multiplex routes reach; False with
  ``TooManyToolServers`` naming the servers a full backend (32 targets) left out.
- ``OpenTelemetryTranslated`` (only while OTEL exporter variables are set): False, with the reason of
  the first, when some were not translated as given (metrics and logs variables are removed).

When a ToolGateway stops being ours (another class), its children are deleted and the status fields
we wrote are released, so the controller now in charge starts clean.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentkube.api.kind import InvalidSpec
from agentkube.api.toolgateway import (
    TOOL_GATEWAY_KIND,
    TOOL_SERVER_KIND,
    ToolGatewaySpec,
)
from agentkube.controllers import field_manager
from agentkube.controllers.children import child_metadata, controller_of
from agentkube.controllers.gatewayapi import (
    AGENTGATEWAY_CRDS,
    GATEWAY_API_CRDS,
    TOOL_GATEWAY_CLASS_INDEX,
    TOOL_GATEWAY_INDEX,
    TOOLSERVER_NAMESPACE_LABEL,
    CrdGate,
    ServerRef,
    admission,
    agentgateway_parameters,
    decide_class,
    gateway,
    gateway_url,
    http_route,
    index_tool_gateways,
    index_tool_servers,
    mcp_backend,
    multiplex_name,
    multiplex_path,
    multiplex_targets,
    server_route_name,
    server_route_path,
    tool_gateway_key,
)
from agentkube.controllers.grants import ReferenceGrants, permits
from agentkube.controllers.handover import HandingOver
from agentkube.controllers.kinds import (
    CONFIG_MAP,
    GATEWAY,
    NAMESPACE,
    TOOL_GATEWAY,
    TOOL_GATEWAY_CLASS,
    TOOL_SERVER,
)
from agentkube.controllers.otel import OtelTranslation, translate
from agentkube.controllers.status import (
    CHILD_ERRORS,
    Problem,
    StatusWriter,
    accepted_condition,
    child_problem,
)
from agentkube.runtime.conditions import find_status_condition
from agentkube.runtime.gvk import ObjectKey
from agentkube.runtime.reconcile import Request, Result

if TYPE_CHECKING:
    from agentkube.controllers import OperatorOptions
    from agentkube.controllers.children import Children
    from agentkube.runtime.manager import Manager

__all__ = [
    "APP",
    "CONDITION_TYPES",
    "Desired",
    "ToolGatewayReconciler",
    "admitted_servers",
    "attached_servers",
    "class_choice",
    "desired_children",
    "gateway_conditions",
    "index_env_from_config_maps",
    "programmed_condition",
    "served_url",
    "setup",
]


APP = "tool-gateway"
"""``app.kubernetes.io/name`` of every child."""
PROGRAMMED = "Programmed"
ROUTED = "ToolServersRouted"
TELEMETRY = "OpenTelemetryTranslated"
CONDITION_TYPES = ("Accepted", PROGRAMMED, "Ready", ROUTED, TELEMETRY)
INDEX_ENV_FROM_CONFIG_MAPS = "agentkube.io/toolgateway-envfrom-configmaps"
# The Gateway is cached in full (its status feeds Programmed); the others metadata-only.
GATED = {
    GATEWAY_API_CRDS[0]: False,
    GATEWAY_API_CRDS[1]: True,
    AGENTGATEWAY_CRDS[0]: True,
    AGENTGATEWAY_CRDS[1]: True,
}


@dataclass
class Desired:
    """What a ToolGateway of ours should have, and what its status should say about it."""

    children: list[dict[str, Any]]
    telemetry: OtelTranslation
    servers: int = 0
    namespaces: int = 0
    left_out: list[ServerRef] = field(default_factory=list)


def _own(owner: Mapping[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    meta = child_metadata(owner, child["metadata"]["name"], APP)
    meta["labels"] = {**meta["labels"], **(child["metadata"].get("labels") or {})}
    return {**child, "metadata": meta}


def index_env_from_config_maps(obj: dict[str, Any]) -> list[str]:
    """Index of ToolGateways by the ConfigMaps their ``spec.envFrom`` reads: ``<namespace>/<name>``."""
    namespace = obj["metadata"].get("namespace") or ""
    sources = (obj.get("spec") or {}).get("envFrom")
    names = set()
    for source in sources if isinstance(sources, list) else ():
        ref = source.get("configMapRef") if isinstance(source, dict) else None
        if isinstance(ref, dict) and isinstance(ref.get("name"), str):
            names.add(f"{namespace}/{ref['name']}")
    return sorted(names)


def desired_children(
    owner: Mapping[str, Any], spec: ToolGatewaySpec, servers: Sequence[ServerRef], gateway_class_name: str
) -> Desired:
    """Every child of the ToolGateway ``owner``, given the ToolServers attached to it."""
    name, namespace = owner["metadata"]["name"], owner["metadata"]["namespace"]
    telemetry = translate(spec.env)
    children = [
        gateway(name, namespace, gateway_class_name=gateway_class_name, parameters_name=name),
        agentgateway_parameters(
            name,
            namespace,
            env=telemetry.env,
            env_from=[e.to_dict() for e in spec.env_from],
            tracing=telemetry.tracing,
        ),
    ]
    unique = sorted(set(servers))
    namespaces = sorted({s.namespace for s in unique})
    for server in unique:
        object_name = server_route_name(name, server.namespace, server.name)
        of_namespace = {TOOLSERVER_NAMESPACE_LABEL: server.namespace}
        target = server.target(server.name)
        children.append(mcp_backend(object_name, namespace, [target], labels=of_namespace))
        children.append(
            http_route(
                object_name,
                namespace,
                gateway_name=name,
                gateway_namespace=namespace,
                path_prefix=server_route_path(server.name, server.namespace),
                backend_name=object_name,
                labels=of_namespace,
            )
        )
    left_out: list[ServerRef] = []
    for scope in [None, *namespaces]:
        members = [s for s in unique if scope is None or s.namespace == scope]
        targets, skipped = multiplex_targets(members, across_namespaces=scope is None)
        left_out += [s for s in skipped if s not in left_out]
        if not targets:
            continue
        labels = {TOOLSERVER_NAMESPACE_LABEL: scope} if scope else None
        object_name = multiplex_name(name, scope)
        children.append(mcp_backend(object_name, namespace, targets, fail_open=True, labels=labels))
        children.append(
            http_route(
                object_name,
                namespace,
                gateway_name=name,
                gateway_namespace=namespace,
                path_prefix=multiplex_path(scope),
                backend_name=object_name,
                labels=labels,
            )
        )
    return Desired(
        children=[_own(owner, c) for c in children],
        telemetry=telemetry,
        servers=len(unique),
        namespaces=len(namespaces),
        left_out=sorted(left_out),
    )


def attached_servers(servers: Sequence[Mapping[str, Any]]) -> list[ServerRef]:
    """The ToolServers (objects referencing the gateway) that can be routed to: valid, not deleting."""
    refs = []
    for obj in servers:
        if obj["metadata"].get("deletionTimestamp"):
            continue
        try:
            spec = TOOL_SERVER_KIND.parse(obj)
        except InvalidSpec:
            continue  # its own status says what is wrong
        meta = obj["metadata"]
        refs.append(
            ServerRef(meta["namespace"], meta["name"], spec.port, spec.effective_path, spec.transport_type)
        )
    return refs


def admitted_servers(
    gateway_obj: Mapping[str, Any],
    spec: ToolGatewaySpec,
    servers: Sequence[Mapping[str, Any]],
    namespace_labels: Callable[[str], Mapping[str, str] | None],
    grants: Sequence[Mapping[str, Any]],
) -> list[Mapping[str, Any]]:
    """The ToolServer objects of ``servers`` that may attach to ``gateway_obj`` (``gatewayapi.admission``);
    ``grants`` are the ReferenceGrants of the gateway's namespace."""
    name = gateway_obj["metadata"]["name"]
    admitted = []
    for server in servers:
        server_namespace = server["metadata"]["namespace"]
        granted = permits(
            grants,
            from_=(TOOL_SERVER.group, TOOL_SERVER.kind),
            from_namespace=server_namespace,
            to=(TOOL_GATEWAY.group, TOOL_GATEWAY.kind),
            to_name=name,
        )
        labels = namespace_labels(server_namespace)
        if admission(gateway_obj, spec, server_namespace, labels, granted) is None:
            admitted.append(server)
    return admitted


def programmed_condition(gateway_obj: Mapping[str, Any] | None, generation: int) -> dict[str, Any]:
    """``Programmed``, mirroring the Gateway's own ``Programmed`` condition."""
    condition: dict[str, Any] = {"type": PROGRAMMED, "observedGeneration": generation}
    if gateway_obj is None:
        return condition | {
            "status": "Unknown",
            "reason": "Pending",
            "message": "The Gateway does not exist yet.",
        }
    meta = gateway_obj["metadata"]
    what = f"Gateway {meta.get('namespace')}/{meta['name']}"
    theirs = find_status_condition((gateway_obj.get("status") or {}).get("conditions"), PROGRAMMED)
    if theirs is None:
        return condition | {
            "status": "Unknown",
            "reason": "Pending",
            "message": f"{what} has no Programmed condition yet.",
        }
    seen, current = theirs.get("observedGeneration"), meta.get("generation")
    if seen is not None and current is not None and int(seen) < int(current):
        return condition | {
            "status": "Unknown",
            "reason": "Pending",
            "message": f"{what} has not been programmed at its generation {current} yet.",
        }
    detail = theirs.get("message") or ""
    return condition | {
        "status": theirs.get("status", "Unknown"),
        "reason": theirs.get("reason") or "Pending",
        "message": f"{what}: {detail}" if detail else f"{what}.",
    }


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def class_choice(class_name: str, named: bool) -> str:
    """The sentence of the Accepted message that says which ToolGatewayClass a gateway got, and why."""
    if named:
        return f'Implemented as ToolGatewayClass "{class_name}", named in spec.toolGatewayClassName.'
    return (
        f'Implemented as ToolGatewayClass "{class_name}", the default class (spec.toolGatewayClassName '
        "is omitted)."
    )


def served_url(name: str, namespace: str, conditions: Sequence[Mapping[str, Any]]) -> str | None:
    """The gateway's URL while something serves it (``Programmed`` True among ``conditions``), else None."""
    if not any(c.get("type") == PROGRAMMED and c.get("status") == "True" for c in conditions):
        return None
    return gateway_url(name, namespace)


def gateway_conditions(
    generation: int,
    problems: Sequence[Problem],
    gateway_obj: Mapping[str, Any] | None,
    desired: Desired | None,
    class_message: str | None = None,
) -> list[dict[str, Any]]:
    """The conditions of a ToolGateway of ours (``desired`` is None when no children were computed).

    ``class_message`` (``class_choice``), when given, leads the message of an ``Accepted`` True.
    """
    accepted = accepted_condition(problems, generation)
    if class_message and accepted["status"] == "True":
        accepted["message"] = f"{class_message} {accepted['message']}"
    if gateway_obj is None and accepted["status"] != "True":
        programmed = {
            "type": PROGRAMMED,
            "status": "False",
            "observedGeneration": generation,
            "reason": "NotAccepted",
            "message": "The Gateway is not created while the ToolGateway is not accepted.",
        }
    else:
        programmed = programmed_condition(gateway_obj, generation)
    ready: dict[str, Any] = {"type": "Ready", "observedGeneration": generation}
    first = next((c for c in (accepted, programmed) if c["status"] != "True"), None)
    if first is None:
        ready |= {"status": "True", "reason": "Ready", "message": "Accepted and programmed."}
    else:
        ready |= {
            "status": "False" if first["status"] == "False" else "Unknown",
            "reason": first["reason"],
            "message": first["message"],
        }
    conditions = [accepted, programmed, ready]
    if desired is None:
        return conditions
    routed: dict[str, Any] = {"type": ROUTED, "observedGeneration": generation}
    if desired.left_out:
        names = ", ".join(f"{s.namespace}/{s.name}" for s in desired.left_out)
        routed |= {
            "status": "False",
            "reason": "TooManyToolServers",
            "message": f"An agentgateway backend takes at most 32 targets; left out of the multiplex routes "
            f"(still reachable at /<namespace>/<name>/mcp): {names}",
        }
    else:
        verb = "is" if desired.servers == 1 else "are"
        routed |= {
            "status": "True",
            "reason": "Routed",
            "message": f"{_count(desired.servers, 'ToolServer')} ({_count(desired.namespaces, 'namespace')}) "
            f"{verb} routed at /mcp.",
        }
    conditions.append(routed)
    telemetry = desired.telemetry
    if telemetry.found:
        if telemetry.notes:
            conditions.append(
                {
                    "type": TELEMETRY,
                    "status": "False",
                    "observedGeneration": generation,
                    "reason": telemetry.notes[0].reason,
                    "message": "; ".join(n.message for n in telemetry.notes),
                }
            )
        else:
            tracing = telemetry.tracing or {}
            conditions.append(
                {
                    "type": TELEMETRY,
                    "status": "True",
                    "observedGeneration": generation,
                    "reason": "Translated",
                    "message": f"Traces are exported to {tracing.get('otlpEndpoint')} over "
                    f"{tracing.get('otlpProtocol')}.",
                }
            )
    return conditions


class ToolGatewayReconciler:
    """Reconciles ToolGateways; reads only the cache, writes children and status when they differ."""

    def __init__(self, manager: Manager, options: OperatorOptions, gate: CrdGate) -> None:
        self._cache = manager.cache
        self._client = manager.client
        self._options = options
        self.gate = gate
        self.grants = ReferenceGrants(manager)
        self.namespaces = manager.cache.informer(NAMESPACE, metadata_only=True)
        self.config_maps = manager.cache.informer(CONFIG_MAP, metadata_only=True)
        self.status = StatusWriter(
            HandingOver(manager.client),
            fields=("observedGeneration", "url", "toolGatewayClassName", "conditions"),
            condition_types=CONDITION_TYPES,
            field_manager=field_manager("toolgateway"),
        )

    def missing_config_maps(self, label: str, namespace: str, spec: ToolGatewaySpec) -> list[Problem]:
        """A ``ConfigMapNotFound`` problem for each ConfigMap ``spec.envFrom`` needs that the cache
        does not show in the gateway's namespace (where its pods run); optional ones may be missing."""
        problems = []
        for i, source in enumerate(spec.env_from):
            ref = source.config_map_ref
            if ref is None or ref.optional:
                continue
            if self.config_maps.store.get(ObjectKey(namespace, ref.name)) is None:
                problems.append(
                    Problem(
                        "ConfigMapNotFound",
                        f'{label}: spec.envFrom[{i}].configMapRef: ConfigMap "{ref.name}" not found in '
                        f'namespace "{namespace}"; the gateway\'s pods cannot start without it: create '
                        "it, or set optional: true",
                    )
                )
        return problems

    def namespace_labels(self, name: str) -> Mapping[str, str] | None:
        """The labels of namespace ``name`` (None when the cache does not know it)."""
        found = self.namespaces.store.get(ObjectKey(None, name))
        return None if found is None else dict(found["metadata"].get("labels") or {})

    def classes(self) -> list[dict[str, Any]]:
        """Every ToolGatewayClass. Raises when they cannot be read: "cannot tell" is never "not ours"."""
        return self._cache.list(TOOL_GATEWAY_CLASS)

    async def reconcile(self, request: Request) -> Result | None:
        obj = self._cache.get(TOOL_GATEWAY, request.name, request.namespace)
        if obj is None:
            if self.gate.started is not None:
                self.gate.started.forget(TOOL_GATEWAY, request.key)
            self.status.forget(TOOL_GATEWAY, request.key)
            return None
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return None  # the garbage collector removes the children through their owner references
        class_name = (obj.get("spec") or {}).get("toolGatewayClassName")
        decision = decide_class(class_name, self.classes(), self._options.tool_gateway_controller)
        if not decision.ours:
            await self._let_go(obj)
            return None

        label = f"ToolGateway {request.key}"
        generation = int(meta.get("generation") or 0)
        problems: list[Problem] = []
        desired: Desired | None = None
        children: Children | None = None
        try:
            spec = TOOL_GATEWAY_KIND.parse(obj)
        except InvalidSpec as e:
            problems.append(Problem("InvalidSpec", str(e)))
        else:
            missing = self.gate.missing()
            if missing:
                problems.append(
                    Problem(missing[0].crd.reason, f"{label}: " + "; ".join(str(m) for m in missing))
                )
            else:
                children = await self.gate.children()
                key = f"{meta['namespace']}/{meta['name']}"
                referring = self._cache.list(TOOL_SERVER, index=(TOOL_GATEWAY_INDEX, key))
                grants = self.grants.in_namespace(meta["namespace"])
                admitted = admitted_servers(obj, spec, referring, self.namespace_labels, grants)
                servers = attached_servers(admitted)
                desired = desired_children(obj, spec, servers, self._options.gateway_class_name)
                if children is not None:
                    try:
                        await children.apply(obj, desired.children)
                    except CHILD_ERRORS as e:
                        problems.append(child_problem(label, e))
            # Reported, not holding the children back: the pods start by themselves once it exists.
            problems.extend(self.missing_config_maps(label, meta["namespace"], spec))

        gateway_obj = None
        started = self.gate.started
        if started is not None and not self.gate.missing():
            gateway_obj = started.get(GATEWAY, meta["name"], meta["namespace"])
            if gateway_obj is not None and controller_of(gateway_obj) != meta["uid"]:
                gateway_obj = None  # a namesake we do not control says nothing about this gateway
        chosen = class_choice(str(decision.class_name), named=class_name is not None)
        conditions = gateway_conditions(generation, problems, gateway_obj, desired, chosen)
        status: dict[str, Any] = {"observedGeneration": generation}
        url = served_url(meta["name"], meta["namespace"], conditions)
        if url is not None:
            status["url"] = url
        status["toolGatewayClassName"] = decision.class_name
        status["conditions"] = conditions
        await self.status.apply(obj, status)
        return None

    async def _let_go(self, obj: dict[str, Any]) -> None:
        """Delete our children of a ToolGateway that is no longer ours and release our status fields."""
        if self.gate.missing():
            return  # the kinds are not served: there is nothing to delete through them
        # Started here too: after a restart, a gateway that changed class meanwhile may be the first
        # one reconciled, and its children must still go.
        children = await self.gate.children()
        if children is None or not any(children.owned_by(gvk, obj) for gvk in children.owned):
            return
        # Our status without url, class and conditions releases them (server-side apply drops what a
        # manager no longer applies). Not an empty one: with nothing left, status would become null,
        # which the schema (an object) rejects; observedGeneration stays as the one field we keep.
        await self.status.apply(obj, {"observedGeneration": int(obj["metadata"].get("generation") or 0)})
        await children.apply(obj, [])


def setup(manager: Manager, options: OperatorOptions) -> None:
    """Register the ToolGateway controller."""
    cache = manager.cache
    index_tool_servers(cache, TOOL_SERVER)
    index_tool_gateways(cache, TOOL_GATEWAY)
    cache.add_indexer(TOOL_GATEWAY, INDEX_ENV_FROM_CONFIG_MAPS, index_env_from_config_maps)
    gate = CrdGate(
        manager,
        TOOL_GATEWAY,
        GATED,
        manager.event_recorder("toolgateway"),
        field_manager=field_manager("toolgateway"),
    )
    reconciler = ToolGatewayReconciler(manager, options, gate)

    def gateways_of_class(cls: dict[str, Any]) -> list[Request]:
        named = cache.list(TOOL_GATEWAY, index=(TOOL_GATEWAY_CLASS_INDEX, cls["metadata"]["name"]))
        unnamed = cache.list(TOOL_GATEWAY, index=(TOOL_GATEWAY_CLASS_INDEX, ""))
        return [Request.of(g) for g in named + unnamed]

    def gateway_of_server(server: dict[str, Any]) -> list[Request]:
        # For an update, the handler maps the old object too: a server re-pointed elsewhere wakes both.
        key = tool_gateway_key(server)
        if key is None:
            return []
        namespace, _, name = key.partition("/")
        return [Request(namespace, name)]

    def every_gateway(_: dict[str, Any]) -> list[Request]:
        return [Request.of(g) for g in cache.list(TOOL_GATEWAY)]

    def selecting_gateways(_: dict[str, Any]) -> list[Request]:
        # A namespace's labels matter to the gateways that admit servers by a selector.
        return [
            Request.of(g)
            for g in cache.list(TOOL_GATEWAY)
            if (((g.get("spec") or {}).get("allowedToolServers") or {}).get("namespaces") or {}).get("from")
            == "Selector"
        ]

    def gateways_reading(config_map: dict[str, Any]) -> list[Request]:
        meta = config_map["metadata"]
        value = f"{meta.get('namespace') or ''}/{meta['name']}"
        return [Request.of(g) for g in cache.list(TOOL_GATEWAY, index=(INDEX_ENV_FROM_CONFIG_MAPS, value))]

    def gateways_of_grant(grant: dict[str, Any]) -> list[Request]:
        return [Request.of(g) for g in cache.list(TOOL_GATEWAY, grant["metadata"].get("namespace"))]

    builder = (
        manager.controller("toolgateway")
        .for_kind(TOOL_GATEWAY)
        .watches(TOOL_GATEWAY_CLASS, map_to=gateways_of_class)
        .watches(TOOL_SERVER, map_to=gateway_of_server)
        .watches(NAMESPACE, map_to=selecting_gateways, metadata_only=True)
        .watches(CONFIG_MAP, map_to=gateways_reading, metadata_only=True)
    )
    builder = reconciler.grants.register(builder, lambda: every_gateway({}))
    controller = gate.register(builder, every_gateway).complete(reconciler)
    gate.bind(controller)
    reconciler.grants.bind(controller, gateways_of_grant)
