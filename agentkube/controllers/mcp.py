"""The MCP controller: an MCP object becomes an MCP proxy (ConfigMap, Deployment, Service, PDB, and
the session-key Secret).

Desired state is built by pure functions of the typed spec (``proxy_config``, ``container_env``,
``workload``); ``plan`` resolves references through the cache (Secrets, other MCPs) and reports what
is missing; ``setup`` wires the controller:

- the MCP itself (spec changes only: our status writes do not wake it);
- its children (ConfigMap, Deployment, Service, PodDisruptionBudget), each enqueueing its owner;
- Secrets, each enqueueing the MCPs that reference it, found through the index ``INDEX_SECRETS``
  (which also lists each MCP's own session-key Secret);
- MCPs, each enqueueing the MCPs whose ``mcpRef`` names it (index ``INDEX_MCP_REFS``), so a proxy
  follows the one it forwards to (its port, its existence, a cycle closing through it). A status
  change counts too: that is how ``ReferenceCycle`` reaches every member of a cycle.
- ReferenceGrants (once their CRD is served, ``grants.ReferenceGrants``), each enqueueing the MCPs
  of its namespace (their NetworkPolicy) and the MCPs referring into it (index
  ``INDEX_MCP_REF_NAMESPACES``).

Consent to reference. An ``mcpRef`` to an MCP of another namespace forwards through that team's proxy
(with that team's credentials), so it is followed only when a ReferenceGrant in the target's
namespace lets ``agentkube.io/MCP`` of this namespace refer to ``agentkube.io/MCP`` (all, or that
one by name). Without one the upstream is left out of the proxy (which still serves the others; with
none left, the proxy's children are deleted) and ``Accepted`` is False, reason ``RefNotPermitted``,
with a message that is the same whether the target exists or not: nothing about another namespace
is told to one it did not grant. Revoking the grant removes the upstream again.

Who may call. Unless ``OperatorOptions.network_policies`` is off, the proxy's NetworkPolicy admits
its own namespace and every namespace a ReferenceGrant of this namespace lets refer to this MCP (any
``from`` kind), on the ``http`` port, and anyone on ``metrics`` (``netpol``).

Environment variables carrying Secret values are named after the upstream, so they are stable when
upstreams are reordered: ``AGENTKUBE_UPSTREAM_<NAME>_SECRET`` for an http upstream's credential and
``AGENTKUBE_UPSTREAM_<NAME>_ENV<i>`` for the i-th variable of a stdio upstream taken ``valueFrom``
(``<NAME>`` is the upstream name upper-cased, ``-`` as ``_``; the suffix has no ``_`` of its own, so
two upstreams can never produce the same name).

The session key. Every replica of one MCP seals session ids under the same key, so any replica can
continue a session another began (no sticky sessions). The operator makes it: a Secret
``<name>-session`` owned by the MCP, key ``keys``, value ``k1:<base64 of 32 random bytes>``, created
once and never written again (``workload.GeneratedSecrets``). A user rotates by editing it to
``k2:<new>,k1:<old>`` (the first seals, every one opens), and may delete it to have a new key made;
either rolls the pods. The proxy reads it from ``AGENTKUBE_SESSION_KEYS`` (config
``sessions.keysEnv``); the value is in no config, log, event or condition.
"""

from __future__ import annotations

import base64
import functools
import os
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from agentkube.api.mcp import MCP_KIND, MCPSpec, McpUpstream
from agentkube.controllers import OperatorOptions
from agentkube.controllers.grants import ReferenceGrants, granted_namespaces, permits
from agentkube.controllers.kinds import MCP
from agentkube.controllers.secrets import SecretReferences
from agentkube.controllers.status import Problem
from agentkube.controllers.workload import (
    GeneratedSecret,
    Plan,
    Workload,
    WorkloadReconciler,
    metrics_port,
    referencing,
    service_url,
)
from agentkube.dataplane.configfile import dump
from agentkube.dataplane.mcp.config import (
    HttpAuth,
    HttpUpstream,
    Listen,
    MCPProxyConfig,
    Sessions,
    StdioEnvVar,
    StdioUpstream,
    ToolFilter,
)
from agentkube.runtime.cache import NotCached
from agentkube.runtime.reconcile import Request

__all__ = [
    "INDEX_MCP_REFS",
    "INDEX_MCP_REF_NAMESPACES",
    "INDEX_SECRETS",
    "PROGRAM",
    "SESSION_KEYS_ENV",
    "SESSION_KEYS_KEY",
    "container_env",
    "index_mcp_refs",
    "index_secrets",
    "new_session_keys",
    "plan",
    "proxy_config",
    "session_key_secret",
    "session_secret_name",
    "setup",
    "workload",
]

PROGRAM = "mcp-proxy"
INDEX_SECRETS = "agentkube.io/mcp-secrets"
INDEX_MCP_REFS = "agentkube.io/mcp-refs"
INDEX_MCP_REF_NAMESPACES = "agentkube.io/mcp-ref-namespaces"
MCP_GROUP_KIND = (MCP.group, MCP.kind)
DEFAULT_PORT = 8080
SESSION_KEYS_ENV = "AGENTKUBE_SESSION_KEYS"
SESSION_KEYS_KEY = "keys"
SESSION_KEY_BYTES = 32


# ------------------------------------------------------------------------------------ desired state


def _env_prefix(upstream: str) -> str:
    return "AGENTKUBE_UPSTREAM_" + upstream.upper().replace("-", "_")


def secret_env(upstream: McpUpstream) -> str:
    """The variable holding an http upstream's credential."""
    return f"{_env_prefix(upstream.name)}_SECRET"


def stdio_env(upstream: McpUpstream, index: int) -> str:
    """The container variable carrying the ``index``-th variable of a stdio upstream (a valueFrom one)."""
    return f"{_env_prefix(upstream.name)}_ENV{index}"


def session_secret_name(name: str) -> str:
    """The session-key Secret of MCP ``name``."""
    return f"{name}-session"


def new_session_keys() -> str:
    """A new key ring of one key, ``k1:<base64 of 32 random bytes>``: what a session-key Secret holds
    when the operator makes it."""
    return "k1:" + base64.b64encode(os.urandom(SESSION_KEY_BYTES)).decode()


def session_key_secret(name: str) -> GeneratedSecret:
    """The session-key Secret of MCP ``name``, as the operator makes it."""
    return GeneratedSecret(
        name=session_secret_name(name),
        key=SESSION_KEYS_KEY,
        generate=new_session_keys,
        purpose="the session key",
    )


def _tools(upstream: McpUpstream) -> ToolFilter | None:
    if upstream.tools is None:
        return None
    return ToolFilter(
        mode=upstream.tools.mode, allow=list(upstream.tools.allow), deny=list(upstream.tools.deny)
    )


def proxy_config(name: str, namespace: str, spec: MCPSpec, ref_urls: Mapping[str, str]) -> MCPProxyConfig:
    """The proxy's config file. ``ref_urls``: upstream name -> URL of the MCP its mcpRef names."""
    upstreams: list[HttpUpstream | StdioUpstream] = []
    for u in spec.upstreams:
        if u.kind == "stdio":
            assert u.stdio is not None
            env = [
                StdioEnvVar(name=e.name, value_from_env=stdio_env(u, i))
                if e.value_from is not None
                else StdioEnvVar(name=e.name, value=e.value or "")
                for i, e in enumerate(u.stdio.env)
            ]
            upstreams.append(
                StdioUpstream(
                    name=u.name,
                    command=u.stdio.command,
                    args=list(u.stdio.args),
                    env=env,
                    tools=_tools(u),
                    tool_prefix=u.tool_prefix,
                )
            )
            continue
        auth = None
        mcp_ref = None
        if u.kind == "mcpRef":
            assert u.mcp_ref is not None
            url = ref_urls[u.name]
            mcp_ref = f"{u.mcp_ref.namespace or namespace}/{u.mcp_ref.name}"
        else:
            assert u.endpoint is not None
            url = u.endpoint
            if u.auth is not None and u.auth.mode != "none":
                auth = HttpAuth(mode=u.auth.mode, secret_env=secret_env(u), header_name=u.auth.header_name)
        upstreams.append(
            HttpUpstream(
                name=u.name, url=url, mcp_ref=mcp_ref, auth=auth, tools=_tools(u), tool_prefix=u.tool_prefix
            )
        )
    return MCPProxyConfig(
        name=f"{namespace}/{name}",
        listen=Listen(port=spec.port),
        metrics=Listen(port=metrics_port(spec.port)),
        sessions=Sessions(keys_env=SESSION_KEYS_ENV),
        # The names the MCP's Service answers to in the cluster: a browser page may call the proxy
        # by one of these (same origin), never by a name that merely resolves to it.
        allowed_hosts=[
            name,
            f"{name}.{namespace}",
            f"{name}.{namespace}.svc",
            f"{name}.{namespace}.svc.cluster.local",
        ],
        upstreams=upstreams,
    )


def container_env(name: str, spec: MCPSpec) -> list[dict[str, Any]]:
    """The proxy container's environment: each Secret value (and other valueFrom) the config names,
    the session key ring of MCP ``name``, then ``HOME`` on the writable ``/tmp`` (stdio servers
    started with npx or uvx write caches there)."""
    env: list[dict[str, Any]] = []
    for u in spec.upstreams:
        if u.auth is not None and u.auth.secret_ref is not None:
            ref = u.auth.secret_ref
            env.append(
                {"name": secret_env(u), "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
            )
        if u.stdio is not None:
            for i, e in enumerate(u.stdio.env):
                if e.value_from is not None:
                    env.append({"name": stdio_env(u, i), "valueFrom": e.value_from.to_dict()})
    env.append(
        {
            "name": SESSION_KEYS_ENV,
            "valueFrom": {"secretKeyRef": {"name": session_secret_name(name), "key": SESSION_KEYS_KEY}},
        }
    )
    env.append({"name": "HOME", "value": "/tmp"})
    return env


def workload(
    obj: Mapping[str, Any],
    spec: MCPSpec,
    image: str,
    ref_urls: Mapping[str, str],
    secret_digests: Mapping[str, str],
    callers: Sequence[str] | None = None,
) -> Workload:
    """The proxy to run for MCP ``obj``, its references resolved; ``callers``: the other namespaces
    its NetworkPolicy admits (None: no NetworkPolicy)."""
    meta = obj["metadata"]
    config = proxy_config(meta["name"], meta["namespace"], spec, ref_urls)
    return Workload(
        owner=obj,
        spec=spec,
        program=PROGRAM,
        image=image,
        config=dump(config),
        secret_digests=dict(secret_digests),
        env=container_env(meta["name"], spec),
        generated=(session_key_secret(meta["name"]),),
        callers=None if callers is None else list(callers),
    )


# ----------------------------------------------------------------------------------- references


def _upstreams(obj: Mapping[str, Any]) -> list[Any]:
    # Indexers and the cycle walk read raw cached objects, which a user may have written in any shape
    # (or an older CRD may have let through): anything unexpected simply contributes nothing.
    spec = obj.get("spec")
    upstreams = spec.get("upstreams") if isinstance(spec, dict) else None
    return [u for u in upstreams if isinstance(u, dict)] if isinstance(upstreams, list) else []


def _ref_targets(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(namespace, name) of every MCP the raw object's mcpRef upstreams name."""
    namespace = obj["metadata"].get("namespace") or ""
    targets = []
    for u in _upstreams(obj):
        ref = u.get("mcpRef")
        if u.get("kind") == "mcpRef" and isinstance(ref, dict) and isinstance(ref.get("name"), str):
            targets.append((str(ref.get("namespace") or namespace), ref["name"]))
    return targets


def index_mcp_refs(obj: dict[str, Any]) -> Iterable[str]:
    """Index of MCPs by the MCPs they reference: ``<namespace>/<name>``."""
    return sorted({f"{ns}/{name}" for ns, name in _ref_targets(obj)})


def index_mcp_ref_namespaces(obj: dict[str, Any]) -> Iterable[str]:
    """Index of MCPs by the other namespaces their mcpRefs point into."""
    own = obj["metadata"].get("namespace") or ""
    return sorted({ns for ns, _ in _ref_targets(obj) if ns != own})


def index_secrets(obj: dict[str, Any]) -> Iterable[str]:
    """Index of MCPs by the Secrets they reference, and their own session-key Secret (so that a
    rotation rolls the pods, and a namesake's departure clears a conflict): ``<namespace>/<name>``."""
    namespace = obj["metadata"].get("namespace") or ""
    names: set[str] = {session_secret_name(obj["metadata"]["name"])}
    for u in _upstreams(obj):
        auth = u.get("auth")
        ref = auth.get("secretRef") if isinstance(auth, dict) else None
        if isinstance(ref, dict) and isinstance(ref.get("name"), str):
            names.add(ref["name"])
        stdio = u.get("stdio")
        env = stdio.get("env") if isinstance(stdio, dict) else None
        for e in env if isinstance(env, list) else ():
            value_from = e.get("valueFrom") if isinstance(e, dict) else None
            ref = value_from.get("secretKeyRef") if isinstance(value_from, dict) else None
            if isinstance(ref, dict) and isinstance(ref.get("name"), str):
                names.add(ref["name"])
    return sorted(f"{namespace}/{name}" for name in names)


def _get_mcp(cache: Any, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] | None = cache.get(MCP, name, namespace)
    except NotCached:
        return None  # a namespace this manager does not watch: as good as absent
    return found


def _cycle_back(cache: Any, start: tuple[str, str], home: tuple[str, str]) -> list[tuple[str, str]] | None:
    """The path of MCPs from ``start`` back to ``home`` through mcpRefs, or None when there is none."""
    previous: dict[tuple[str, str], tuple[str, str] | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == home:
            path = [node]
            while (step := previous[path[-1]]) is not None:
                path.append(step)
            return path[::-1]
        obj = _get_mcp(cache, *node)
        if obj is None:
            continue
        for target in _ref_targets(obj):
            if target not in previous:
                previous[target] = node
                queue.append(target)
    return None


def _port(obj: Mapping[str, Any]) -> int:
    port = (obj.get("spec") or {}).get("port")
    return port if isinstance(port, int) and not isinstance(port, bool) else DEFAULT_PORT


def _no_grants(_: str) -> list[dict[str, Any]]:
    return []


def refused_reference(label: str, field: str, namespace: str, target: tuple[str, str]) -> Problem:
    """The problem of an mcpRef into a namespace that did not grant it; says nothing of the target
    but what the spec itself names."""
    return Problem(
        "RefNotPermitted",
        f'{label}: {field}.mcpRef: MCP "{target[0]}/{target[1]}" is in another namespace, and no '
        f"ReferenceGrant there lets agentkube.io/MCP of namespace {namespace} refer to it; its owners "
        f"can grant it with a ReferenceGrant in {target[0]} from agentkube.io/MCP in {namespace} to "
        "agentkube.io/MCP",
    )


def plan(
    cache: Any,
    image: str,
    obj: dict[str, Any],
    spec: MCPSpec,
    *,
    grants: Callable[[str], Sequence[Mapping[str, Any]]] = _no_grants,
    network_policies: bool = False,
) -> Plan:
    """Resolve the references of MCP ``obj`` through the cache; its workload, or what is wrong.

    grants: the ReferenceGrants of a namespace (``ReferenceGrants.in_namespace``); none by default.
    network_policies: whether the workload carries its NetworkPolicy.
    """
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    label = f"MCP {namespace}/{name}"
    secrets = SecretReferences(cache, label, namespace)
    problems: list[Problem] = []
    refused: list[Problem] = []
    left_out: set[str] = set()
    ref_urls: dict[str, str] = {}
    for i, u in enumerate(spec.upstreams):
        field = f"spec.upstreams[{i}]"
        if u.auth is not None and u.auth.secret_ref is not None:
            secrets.key(f"{field}.auth.secretRef", u.auth.secret_ref.name, u.auth.secret_ref.key)
        if u.stdio is not None:
            for j, e in enumerate(u.stdio.env):
                ref = e.value_from.secret_key_ref if e.value_from is not None else None
                if ref is not None:
                    secrets.key(
                        f"{field}.stdio.env[{j}].valueFrom.secretKeyRef",
                        ref.name,
                        ref.key,
                        optional=bool(ref.optional),
                    )
        if u.mcp_ref is not None:
            target = (u.mcp_ref.namespace or namespace, u.mcp_ref.name)
            # Consent first, and before anything is looked up: whether the target exists is not
            # for a namespace without a grant to learn.
            if target[0] != namespace and not permits(
                grants(target[0]),
                from_=MCP_GROUP_KIND,
                from_namespace=namespace,
                to=MCP_GROUP_KIND,
                to_name=target[1],
            ):
                refused.append(refused_reference(label, field, namespace, target))
                left_out.add(u.name)
                continue
            found = _get_mcp(cache, *target)
            if found is None:
                problems.append(
                    Problem(
                        "UpstreamRefNotFound",
                        f'{label}: {field}.mcpRef: MCP "{target[0]}/{target[1]}" not found; create it or '
                        "point the upstream at an existing MCP",
                    )
                )
                continue
            cycle = _cycle_back(cache, target, (namespace, name))
            if cycle is not None:
                path = " -> ".join(f"{ns}/{n}" for ns, n in [(namespace, name), *cycle])
                problems.append(
                    Problem(
                        "ReferenceCycle",
                        f"{label}: {field}.mcpRef: reference cycle {path}; a proxy cannot forward to itself",
                    )
                )
                continue
            ref_urls[u.name] = service_url(target[1], target[0], _port(found))
    # Missing Secrets first: the reason shown is the first problem, and those are the commonest fix.
    problems = [*secrets.problems, *problems]
    if problems:
        return Plan(problems=problems, refused=refused)
    kept = [u for u in spec.upstreams if u.name not in left_out]
    if not kept:
        return Plan(refused=refused)
    if left_out:
        spec = spec.model_copy(update={"upstreams": kept})
    callers = None
    if network_policies:
        callers = granted_namespaces(grants(namespace), to=MCP_GROUP_KIND, to_name=name)
    return Plan(workload=workload(obj, spec, image, ref_urls, secrets.digests, callers), refused=refused)


# ---------------------------------------------------------------------------------------- wiring


def setup(manager: Any, options: OperatorOptions) -> None:
    """Register the MCP controller with ``manager``."""
    cache = manager.cache
    cache.add_indexer(MCP, INDEX_SECRETS, index_secrets)
    cache.add_indexer(MCP, INDEX_MCP_REFS, index_mcp_refs)
    cache.add_indexer(MCP, INDEX_MCP_REF_NAMESPACES, index_mcp_ref_namespaces)
    grants = ReferenceGrants(manager)
    reconciler = WorkloadReconciler(
        manager,
        name="mcp",
        kind=MCP_KIND,
        plan=functools.partial(
            plan,
            cache,
            options.dataplane_image,
            grants=grants.in_namespace,
            network_policies=options.network_policies,
        ),
        digest_key=options.digest_key,
    )

    def every_mcp() -> list[Request]:
        return [Request.of(m) for m in cache.list(MCP)]

    def concerned_by(grant: dict[str, Any]) -> list[Request]:
        namespace = grant["metadata"].get("namespace") or ""
        found = cache.list(MCP, namespace) + cache.list(MCP, index=(INDEX_MCP_REF_NAMESPACES, namespace))
        return [Request.of(m) for m in found]

    builder = reconciler.controller(manager, secrets_index=INDEX_SECRETS).watches(
        MCP, map_to=referencing(cache, MCP, INDEX_MCP_REFS)
    )
    controller = grants.register(builder, every_mcp).complete(reconciler)
    grants.bind(controller, concerned_by)
