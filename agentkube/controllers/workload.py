"""Workload: the ConfigMap, Deployment, Service and PodDisruptionBudget of a data-plane program.

MCP and LLMGateway both run one of our data-plane programs from the same image, configured by a
file in a ConfigMap; these pure functions build those children from the shared ``WorkloadSpec``
(port, replicas, resources, pod metadata, node selector, tolerations). The kind-specific part (the
config file, which Secret keys become which environment variables, which Secrets the operator
generates) is the caller's, passed in as a ``Workload``.

What the children look like:

- ConfigMap ``<name>-config`` with the config file under ``config.yaml``.
- Deployment ``<name>``: ``image`` with args ``<program> --config /etc/agentkube/config.yaml``, a port
  named ``http``, readiness ``/readyz`` and liveness ``/healthz`` on it, a port named ``metrics``
  (``metrics_port``: 9090, or 9091 when the program itself serves on 9090) where the program serves
  ``/metrics``, ``env`` (Secret values through ``secretKeyRef``), the ConfigMap mounted read-only at
  ``/etc/agentkube`` and an ``emptyDir`` at ``/tmp`` (the root filesystem is read-only), the
  restricted Pod Security profile (non-root, no privilege escalation, every capability dropped,
  RuntimeDefault seccomp), no service-account token (the data plane never calls the API server) and
  no service links (a namespace with many Services would otherwise flood the environment). The pod
  template carries ``agentkube.io/config-hash``, so a change to the config or to a referenced (or
  generated) Secret value rolls the pods. ``terminationMessagePolicy: FallbackToLogsOnError``: when the
  program exits with an error and writes no termination message, the kubelet puts the tail of its log
  into the Pod's ``lastState.terminated.message``, so why it failed reaches our ``Available``
  condition (``pods.pod_problem``) on any cluster; the program never logs a secret value.
- Service ``<name>`` (ClusterIP): ``spec.port`` to the ``http`` port, and the metrics port to
  ``metrics`` (a ServiceMonitor selects it by name).
- ``replicas`` only when the spec gives them: unset, they belong to whoever scales the Deployment (a
  HorizontalPodAutoscaler), and our apply leaves them alone.
- PodDisruptionBudget ``<name>`` with ``minAvailable: 1`` when replicas > 1 (with one replica it
  would block every node drain; with replicas unset there is none).
- NetworkPolicy ``<name>`` when the kind gives ``Workload.callers``: the ``http`` port admits the
  object's namespace and those callers, the ``metrics`` port anyone (``netpol``).
- Generated Secrets (``GeneratedSecret``, e.g. an MCP's session key): created once, before the
  Deployment that reads them, and never written again (see ``GeneratedSecrets``).

``WorkloadReconciler`` is the reconcile around them that both kinds share (parse, ``plan`` the
kind's references, make the generated Secrets, apply and prune the children, write status); a kind
module supplies its ``plan``. The docstring of ``WorkloadReconciler`` says what a user's mistakes
turn into.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentkube.api.kind import InvalidSpec, Kind
from agentkube.api.pod import DEFAULT_RESOURCES, WorkloadSpec
from agentkube.controllers import field_manager
from agentkube.controllers.children import (
    LABEL_INSTANCE,
    ChildConflict,
    Children,
    EventRecorder,
    child_metadata,
    controller_of,
    resource_version_number,
    selector_labels,
    standard_labels,
)
from agentkube.controllers.handover import HandingOver
from agentkube.controllers.kinds import (
    CONFIG_MAP,
    DEPLOYMENT,
    NETWORK_POLICY,
    POD,
    POD_DISRUPTION_BUDGET,
    SECRET,
    SERVICE,
    gvk_of,
)
from agentkube.controllers.netpol import network_policy
from agentkube.controllers.pods import POD_SELECTOR, PodChanged, pod_problem, pod_summary
from agentkube.controllers.secrets import process_key, secret_transform
from agentkube.controllers.status import (
    ACCEPTED,
    CHILD_ERRORS,
    Problem,
    StatusWriter,
    accepted_condition,
    available_condition,
    child_problem,
    ready_condition,
)
from agentkube.runtime.conditions import find_status_condition
from agentkube.runtime.errors import AlreadyExists
from agentkube.runtime.gvk import GVK, ObjectKey
from agentkube.runtime.predicate import GenerationChanged
from agentkube.runtime.reconcile import Request, Result
from agentkube.runtime.store import INDEX_NAMESPACE

__all__ = [
    "CONFIG_FILE",
    "CONFIG_HASH_ANNOTATION",
    "CONFIG_MOUNT",
    "MAX_CONCURRENT_RECONCILES",
    "METRICS_PORT",
    "OWNED",
    "STATUS_FIELDS",
    "GeneratedSecret",
    "GeneratedSecrets",
    "Plan",
    "PlanFunc",
    "Workload",
    "WorkloadReconciler",
    "config_hash",
    "config_map",
    "config_map_name",
    "deployment",
    "desired_children",
    "metrics_port",
    "pod_disruption_budget",
    "referencing",
    "service",
    "service_url",
]

CONFIG_HASH_ANNOTATION = "agentkube.io/config-hash"
CONFIG_MOUNT = "/etc/agentkube"
CONFIG_FILE = "config.yaml"
METRICS_PORT = 9090
"""Where the data-plane programs serve ``/metrics`` (their config's ``metrics.port`` default)."""


def metrics_port(port: int) -> int:
    """The metrics port of a program serving its API on ``port``: ``METRICS_PORT``, or the one after it
    when the API itself is on ``METRICS_PORT`` (a valid ``spec.port``; scrapers find the port by its
    name, ``metrics``, so the number may move)."""
    return METRICS_PORT + 1 if port == METRICS_PORT else METRICS_PORT


@dataclass(frozen=True)
class GeneratedSecret:
    """A Secret the program reads whose value the operator makes: once, when the Secret is missing.

    A random value cannot be part of a desired state applied again on every reconcile, and the user
    may replace it (to rotate a key); so it is created, never applied, patched or overwritten. Its
    digest joins the config hash like any referenced Secret's, so a rotation rolls the pods.
    """

    name: str
    key: str
    generate: Callable[[], str]
    """Makes the value of ``key``; called only when the Secret is created."""
    purpose: str
    """What it holds, for messages (``the session key``)."""


@dataclass(frozen=True)
class Workload:
    """One data-plane program to run for ``owner`` (the object, as the API server returns it)."""

    owner: Mapping[str, Any]
    spec: WorkloadSpec
    program: str
    """The program and its role: the first argument, the container name and ``app.kubernetes.io/name``
    (``mcp-proxy``, ``llm-gateway``)."""
    image: str
    config: str
    """The rendered config file."""
    secret_digests: Mapping[str, str] = field(default_factory=dict)
    """``<secret>/<key>`` -> digest of every Secret value the program reads."""
    env: Sequence[Mapping[str, Any]] = ()
    """Container environment, e.g. ``{"name": ..., "valueFrom": {"secretKeyRef": ...}}``."""
    generated: Sequence[GeneratedSecret] = ()
    callers: Sequence[str] | None = None
    """The other namespaces whose pods may call the program (``netpol``); None: no NetworkPolicy."""
    """Secrets the operator makes for the owner (their digests are added by ``GeneratedSecrets``)."""
    service_account_name: str | None = None
    """The pods' service account (``spec.serviceAccountName``); None: the namespace's default."""

    @property
    def name(self) -> str:
        return str(self.owner["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.owner["metadata"]["namespace"])

    @property
    def metrics_port(self) -> int:
        return metrics_port(self.spec.port)


def service_url(name: str, namespace: str, port: int) -> str:
    """The in-cluster URL of a workload's Service (what status.url shows)."""
    return f"http://{name}.{namespace}.svc.cluster.local:{port}"


def config_map_name(name: str) -> str:
    return f"{name}-config"


def config_hash(config: str, secret_digests: Mapping[str, str]) -> str:
    """Digest of the config file and the referenced Secret values' digests (sorted, so order is moot)."""
    h = hashlib.sha256(config.encode())
    for ref in sorted(secret_digests):
        h.update(f"\n{ref}={secret_digests[ref]}".encode())
    return h.hexdigest()


def config_map(w: Workload) -> dict[str, Any]:
    return {
        "apiVersion": CONFIG_MAP.api_version,
        "kind": CONFIG_MAP.kind,
        "metadata": child_metadata(w.owner, config_map_name(w.name), w.program),
        "data": {CONFIG_FILE: w.config},
    }


def _resources(spec: WorkloadSpec) -> dict[str, Any]:
    chosen = spec.resources if spec.resources is not None else DEFAULT_RESOURCES
    return {k: v for k, v in chosen.to_dict().items() if v}


_RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def deployment(w: Workload) -> dict[str, Any]:
    spec = w.spec
    pod_meta = spec.pod_metadata
    labels = {**(pod_meta.labels if pod_meta else {}), **standard_labels(w.program, w.name)}
    annotations = {
        **(pod_meta.annotations if pod_meta else {}),
        CONFIG_HASH_ANNOTATION: config_hash(w.config, w.secret_digests),
    }
    container: dict[str, Any] = {
        "name": w.program,
        "image": w.image,
        "args": [w.program, "--config", f"{CONFIG_MOUNT}/{CONFIG_FILE}"],
        "ports": [
            {"name": "http", "containerPort": spec.port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": w.metrics_port, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": _resources(spec),
        "securityContext": dict(_RESTRICTED_CONTAINER),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if w.env:
        container["env"] = [dict(e) for e in w.env]
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": config_map_name(w.name)}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = [t.to_dict() for t in spec.tolerations]
    if w.service_account_name:
        pod["serviceAccountName"] = w.service_account_name
    return {
        "apiVersion": DEPLOYMENT.api_version,
        "kind": DEPLOYMENT.kind,
        "metadata": child_metadata(w.owner, w.name, w.program),
        # Unset replicas are left out of our apply, so the field manager that scales the Deployment
        # (an autoscaler) keeps them: server-side apply only takes back the fields we send.
        "spec": {
            **({} if spec.replicas is None else {"replicas": spec.replicas}),
            "selector": {"matchLabels": selector_labels(w.program, w.name)},
            "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod},
        },
    }


def service(w: Workload) -> dict[str, Any]:
    return {
        "apiVersion": SERVICE.api_version,
        "kind": SERVICE.kind,
        "metadata": child_metadata(w.owner, w.name, w.program),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(w.program, w.name),
            "ports": [
                {"name": "http", "port": w.spec.port, "targetPort": "http", "protocol": "TCP"},
                {"name": "metrics", "port": w.metrics_port, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }


def pod_disruption_budget(w: Workload) -> dict[str, Any] | None:
    """The PodDisruptionBudget, or None with fewer than two replicas or none given (autoscaled)."""
    if w.spec.replicas is None or w.spec.replicas < 2:
        return None
    return {
        "apiVersion": POD_DISRUPTION_BUDGET.api_version,
        "kind": POD_DISRUPTION_BUDGET.kind,
        "metadata": child_metadata(w.owner, w.name, w.program),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": selector_labels(w.program, w.name)}},
    }


def desired_children(w: Workload) -> list[dict[str, Any]]:
    """Every child of the workload, in the order they are best created (config before its readers)."""
    children = [config_map(w), deployment(w), service(w)]
    pdb = pod_disruption_budget(w)
    if pdb is not None:
        children.append(pdb)
    if w.callers is not None:
        children.append(
            network_policy(
                child_metadata(w.owner, w.name, w.program),
                selector_labels(w.program, w.name),
                port="http",
                namespaces=w.callers,
                open_ports=["metrics"],
            )
        )
    return children


# ------------------------------------------------------------------------------------------ reconcile


@dataclass(frozen=True)
class Plan:
    """What a kind module makes of one valid object: the problems with its references, or the
    workload to run, and the kind's own status fields (e.g. an LLMGateway's served models)."""

    problems: Sequence[Problem] = ()
    workload: Workload | None = None
    status: Mapping[str, Any] = field(default_factory=dict)
    refused: Sequence[Problem] = ()
    """References refused for want of consent (``RefNotPermitted``). Unlike ``problems`` they do not
    hold the children back: ``workload`` (built without what was refused) is applied, or, when it is
    None, the children are deleted, so a revoked grant takes effect; they show in ``Accepted``."""


PlanFunc = Callable[[dict[str, Any], Any], Plan]
"""``plan(obj, spec)``: reads references from the cache only (no I/O), returns a ``Plan``."""

# A reconcile is mostly waiting on the API server; a few at once keep the event loop busy without
# letting one kind's backlog starve the other controllers of the same process.
MAX_CONCURRENT_RECONCILES = 4

# Seconds between looks at a child name taken by an object we do not own.
CONFLICT_RECHECK = 60.0

# Children of a workload and how they are cached: the Deployment in full (its status feeds ours),
# the others metadata-only (all ``Children`` reads of them is metadata).
OWNED = {
    CONFIG_MAP: True,
    DEPLOYMENT: False,
    SERVICE: True,
    POD_DISRUPTION_BUDGET: True,
    NETWORK_POLICY: True,
}

# The status fields of every workload kind; a kind adds its own (``WorkloadReconciler(status_fields=)``).
STATUS_FIELDS = ("observedGeneration", "url", "replicas", "readyReplicas", "ready", "conditions")


def generated_secret(w: Workload, g: GeneratedSecret) -> dict[str, Any]:
    """The Secret ``g`` of workload ``w`` as it is created: a new value, the owner's metadata."""
    value = base64.b64encode(g.generate().encode()).decode()
    return {
        "apiVersion": SECRET.api_version,
        "kind": SECRET.kind,
        "metadata": child_metadata(w.owner, g.name, w.program),
        "type": "Opaque",
        "data": {g.key: value},
    }


@dataclass(frozen=True, slots=True)
class _Known:
    """What the API server last told us of one generated Secret, beyond the cached copy (which keeps
    no owner references): its uid, its controller's uid, its resourceVersion and its digests."""

    uid: str
    controller: str | None
    resource_version: int | None
    digests: Mapping[str, str]

    @classmethod
    def of(cls, secret: Mapping[str, Any], transform: Callable[[dict[str, Any]], dict[str, Any]]) -> _Known:
        """From a Secret as the API server returns it (values and all: only digests, made by the Secret
        cache's ``transform``, are kept)."""
        return cls(
            str(secret["metadata"].get("uid")),
            controller_of(secret),
            resource_version_number(secret),
            transform(dict(secret))["digests"],
        )


class GeneratedSecrets:
    """Makes the generated Secrets of one controller's owners, each once, and reports their digests.

    Create-only (the operator may read Secrets and create them, nothing more): a Secret that exists is
    never written, whatever it holds, so a user's rotation stays. A missing one is created with the
    owner's controller reference and the standard labels (the garbage collector removes it with its
    owner), and created anew if someone deletes it (a new value, so the pods roll).

    Zero writes at rest. The cache's copy (``secrets.digest_secret``) says whether the Secret exists and gives
    its digests, but not who owns it: that is asked of the API server once per Secret uid (after a
    restart, or when someone replaced the Secret) and remembered. A Secret we created that the cache
    does not show yet is not created twice: the informer's position tells a lagging cache from a
    deletion, as in ``Children``.

    What a user's mistakes turn into: a name taken by a Secret the owner does not control (someone
    else's, or the one of a deleted namesake of the owner, until the garbage collector removes it) is
    a ``ChildConflict`` problem, never a takeover; a generated Secret stripped of its key is a
    ``SecretKeyNotFound`` problem (deleting the Secret has a new one made). The owner's Secret watch
    must map the generated names to it (its secrets index lists them), so either clears by itself.
    """

    def __init__(
        self,
        cache: Any,
        client: Any,
        recorder: EventRecorder | None,
        transform: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> None:
        """transform: the Secret cache's (``secrets.secret_transform(key)``)."""
        self._transform = transform
        self._informer = cache.informer(SECRET, transform=transform)
        self._client = client
        self._recorder = recorder
        self._known: dict[ObjectKey, dict[str, _Known]] = {}

    def forget(self, owner: ObjectKey) -> None:
        """Drop what we remember of an owner's Secrets (call it when the owner is gone)."""
        self._known.pop(owner, None)

    def _lags(self, known: _Known) -> bool:
        try:
            seen = int(self._informer.resource_version)
        except (TypeError, ValueError):
            return False
        return known.resource_version is not None and seen < known.resource_version

    async def _look_up(self, w: Workload, g: GeneratedSecret) -> _Known:
        secret: dict[str, Any] = await self._client.get(SECRET, g.name, w.namespace)
        return _Known.of(secret, self._transform)

    async def digests(
        self, label: str, w: Workload, made: list[str] | None = None
    ) -> tuple[dict[str, str], list[Problem]]:
        """``<secret>/<key>`` -> digest of each of ``w.generated``, creating those missing; and the
        problems that keep any of them from being used (``label`` names the owner in messages).
        The Secrets created are appended to ``made`` (``"Secret <name>"``) for the caller to report
        with the children's changes in one event; without ``made`` they get an event of their own.

        Raises what the API server raises: ``Invalid`` when it rejects a create (a ``CHILD_ERRORS``
        member, for the caller to report), anything else to be retried.
        """
        owner_uid = str(w.owner["metadata"]["uid"])
        memory = self._known.setdefault(ObjectKey(w.namespace, w.name), {})
        digests: dict[str, str] = {}
        problems: list[Problem] = []
        report = made is None
        made = [] if made is None else made
        for g in w.generated:
            key = ObjectKey(w.namespace, g.name)
            live = self._informer.store.get(key)
            known = memory.get(g.name)
            if live is not None and known is not None and known.uid == live["metadata"].get("uid"):
                found = live.get("digests") or {}
            elif live is None and known is not None and self._lags(known):
                found = known.digests  # the cache has not seen what the API server told us yet
            elif live is None:
                try:
                    known = _Known.of(await self._client.create(generated_secret(w, g)), self._transform)
                    made.append(f"Secret {g.name}")
                except AlreadyExists:
                    known = await self._look_up(w, g)  # made since the cache looked
                memory[g.name] = known
                found = known.digests
            else:
                known = await self._look_up(w, g)
                memory[g.name] = known
                # The cached digests while the cache shows this Secret: the hash then stays the
                # same when later reconciles read it from the cache.
                found = (
                    (live.get("digests") or {}) if known.uid == live["metadata"].get("uid") else known.digests
                )
            if known.controller != owner_uid:
                problems.append(child_problem(label, ChildConflict(SECRET, key, known.controller)))
                continue
            digest = found.get(g.key)
            if digest is None:
                problems.append(
                    Problem(
                        "SecretKeyNotFound",
                        f'{label}: Secret "{g.name}" ({g.purpose}, made by agentkube) has no key '
                        f'"{g.key}"; delete the Secret to have a new one made',
                    )
                )
                continue
            digests[f"{g.name}/{g.key}"] = digest
        if report and made and self._recorder is not None:
            self._recorder.event(dict(w.owner), "Normal", "Created", f"Created {', '.join(made)}")
        return digests, problems


def referencing(cache: Any, gvk: GVK, index: str) -> Callable[[dict[str, Any]], list[Request]]:
    """A watch's ``map_to``: the ``gvk`` objects whose cache ``index`` holds ``<namespace>/<name>`` of
    the object seen (the Secrets, or the other objects, they reference)."""

    def map_to(obj: dict[str, Any]) -> list[Request]:
        meta = obj["metadata"]
        value = f"{meta.get('namespace') or ''}/{meta['name']}"
        return [Request.of(o) for o in cache.list(gvk, index=(index, value))]

    return map_to


class WorkloadReconciler:
    """The reconcile every workload kind shares: parse, plan, apply children, report status.

    Reads only from the cache (but for who owns a generated Secret, see ``GeneratedSecrets``). A
    user's spec can make an object not Accepted, never make the reconcile raise: an invalid spec, a
    missing reference, a child name taken by someone else or a child the API server rejects all end
    as ``Accepted=False`` with a message naming the field, and the object is retried when something
    it depends on changes (its watches see to that), not on a timer (except a name conflict: the
    namesake is not watched, so it is looked at again every ``CONFLICT_RECHECK`` seconds; a
    generated Secret's namesake is watched). Only failures of the world (API errors, timeouts)
    raise, to be retried with backoff.

    While an object is not Accepted its existing children are left alone: a broken edit does not
    take down a proxy that is serving with the previous configuration.

    A program that cannot start (its Secret missing at the pod, a config it rejects, an image that
    cannot be pulled) shows in ``Available`` (and so ``Ready``): the reconciler watches the pods of
    every agentkube workload (``pods.POD_SELECTOR``, cached as ``pods.pod_summary`` copies), maps each
    to the object controlling the Deployment named by its ``app.kubernetes.io/instance`` label, and
    reports the first problem of the Deployment's pods (``pods.pod_problem``). Only changes of what
    that reads wake a reconcile, and the status is written only when the condition changes.
    """

    def __init__(
        self,
        manager: Any,
        *,
        name: str,
        kind: Kind[Any, Any],
        plan: PlanFunc,
        status_fields: Sequence[str] = (),
        digest_key: bytes | None = None,
    ) -> None:
        """status_fields: the kind's own status fields, those its ``plan`` sets in ``Plan.status``.
        digest_key: the key of the Secret value digests (``OperatorOptions.digest_key``; None: this
        process's random key, ``secrets.process_key``)."""
        self.gvk = gvk_of(kind)
        self.secret_transform = secret_transform(digest_key or process_key())
        self.kind = kind
        self.name = name
        self._cache = manager.cache
        self._plan = plan
        self.recorder = manager.event_recorder(f"agentkube.io/{name}-controller")
        self.children = Children(
            manager.cache,
            HandingOver(manager.client),
            self.recorder,
            OWNED,
            field_manager=field_manager(name),
        )
        self.generated = GeneratedSecrets(manager.cache, manager.client, self.recorder, self.secret_transform)
        self._pods = manager.cache.informer(POD, label_selector=POD_SELECTOR, transform=pod_summary)
        self.status = StatusWriter(
            HandingOver(manager.client),
            fields=(*STATUS_FIELDS, *status_fields),
            field_manager=field_manager(name),
        )
        # (reason, message) of the last Warning sent per object: reference problems are reported
        # once when they appear, not on every reconcile while they last.
        self._warned: dict[ObjectKey, tuple[str, str]] = {}

    def controller(self, manager: Any, *, secrets_index: str) -> Any:
        """The controller of this kind declared on ``manager``, for the caller to add its own watches
        to and ``complete`` with this reconciler: the kind itself (spec changes only: our status writes
        do not wake it), its children, and Secrets, each enqueueing the objects whose cache index
        ``secrets_index`` names it. Secrets are cached as ``digest_secret`` copies (no values, keyed
        digests)."""
        builder = manager.controller(self.name).for_kind(self.gvk, predicates=[GenerationChanged()])
        builder = self.children.register(builder)
        return (
            builder.watches(
                SECRET,
                map_to=referencing(self._cache, self.gvk, secrets_index),
                transform=self.secret_transform,
            )
            .watches(
                POD,
                map_to=self._owner_of_pod,
                label_selector=POD_SELECTOR,
                transform=pod_summary,
                predicates=[PodChanged()],
            )
            .with_options(max_concurrent_reconciles=MAX_CONCURRENT_RECONCILES)
        )

    def _owner_of_pod(self, pod: dict[str, Any]) -> list[Request]:
        # The instance label names the Deployment (and its owner); the Deployment's controller
        # reference says whether that owner is of this controller's kind. A pod seen before its
        # Deployment is cached maps to nothing: the Deployment's own event wakes the owner, which
        # then reads the pods.
        meta = pod["metadata"]
        instance = (meta.get("labels") or {}).get(LABEL_INSTANCE)
        if not instance:
            return []
        deployment = self.children.get(DEPLOYMENT, instance, meta.get("namespace"))
        for ref in (deployment or {}).get("metadata", {}).get("ownerReferences") or ():
            group = str(ref.get("apiVersion", "")).rpartition("/")[0]
            if ref.get("controller") and ref.get("kind") == self.gvk.kind and group == self.gvk.group:
                return [Request(meta.get("namespace") or None, str(ref["name"]))]
        return []

    async def reconcile(self, request: Request) -> Result | None:
        key = request.key
        obj = self._cache.get(self.gvk, request.name, request.namespace)
        if obj is None:
            self.children.forget(self.gvk, key)
            self.generated.forget(key)
            self.status.forget(self.gvk, key)
            self._warned.pop(key, None)
            return None
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return None  # the garbage collector removes the children through their owner references
        label = f"{self.kind.kind} {key}"
        generation = int(meta.get("generation") or 0)
        problems: list[Problem] = []
        extra: Mapping[str, Any] = {}
        url = (obj.get("status") or {}).get("url")
        applied: Mapping[tuple[GVK, ObjectKey], dict[str, Any]] = {}
        result: Result | None = None
        try:
            spec = self.kind.parse(obj)
        except InvalidSpec as e:
            problems.append(Problem("InvalidSpec", str(e)))
        else:
            url = service_url(meta["name"], meta["namespace"], spec.port)
            plan = self._plan(obj, spec)
            problems.extend(plan.problems)
            extra = plan.status
            if not problems and plan.workload is not None:
                try:
                    workload = plan.workload
                    made: list[str] = []
                    if workload.generated:
                        # Made before the children: the Deployment reads them, and their digests
                        # join the config hash.
                        digests, found = await self.generated.digests(label, workload, made)
                        problems.extend(found)
                        secret_digests = {**workload.secret_digests, **digests}
                        workload = dataclasses.replace(workload, secret_digests=secret_digests)
                    if not problems:
                        # One event for what this reconcile made: the Secrets and the children.
                        changes = await self.children.apply(obj, desired_children(workload), created=made)
                        applied = changes.applied
                    elif made:
                        self.recorder.event(obj, "Normal", "Created", f"Created {', '.join(made)}")
                except CHILD_ERRORS as e:
                    problems.append(child_problem(label, e))
                    if isinstance(e, ChildConflict):
                        # The namesake is not ours, so no watch of ours wakes us when it goes away.
                        result = Result(requeue_after=CONFLICT_RECHECK)
            elif plan.refused:
                # Everything it would run was refused, or a refused reference meets another problem
                # that keeps the new config from going out: the last one may still forward through
                # what was refused (a revoked grant), so nothing runs (the generated Secrets stay).
                await self.children.apply(obj, [])
            problems.extend(plan.refused)

        # A Deployment we just applied is reported from the API server's answer, not the lagging
        # cache: the status written now is then the one the next reconcile computes too.
        deployment = applied.get((DEPLOYMENT, ObjectKey(meta.get("namespace"), meta["name"])))
        if deployment is None:
            deployment = self.children.get(DEPLOYMENT, meta["name"], meta.get("namespace"))
        if deployment is not None and controller_of(deployment) != meta["uid"]:
            deployment = None  # a namesake we do not control says nothing about this object
        accepted = accepted_condition(problems, generation)
        problem = None
        if deployment is not None:
            pods = self._pods.store.by_index(INDEX_NAMESPACE, meta["namespace"])
            problem = pod_problem(deployment, pods)
        available = available_condition(deployment, generation, problem)
        ready = ready_condition(accepted, available, generation, problem)
        observed = (deployment or {}).get("status") or {}
        status: dict[str, Any] = {"observedGeneration": generation}
        if url:
            status["url"] = url
        status["replicas"] = int(observed.get("replicas") or 0)
        status["readyReplicas"] = int(observed.get("readyReplicas") or 0)
        if deployment is not None and not isinstance((obj.get("spec") or {}).get("replicas"), int):
            # Autoscaled (spec.replicas unset): the desired count is the Deployment's, as its scaler set it.
            scaled = int((deployment.get("spec") or {}).get("replicas") or 0)
            status["ready"] = f"{status['readyReplicas']}/{scaled}"
        status.update(extra)
        status["conditions"] = [accepted, available, ready]
        self._warn(obj, key, accepted)
        await self.status.apply(obj, status)
        return result

    def _warn(self, obj: dict[str, Any], key: ObjectKey, accepted: Mapping[str, Any]) -> None:
        if accepted["status"] == "True":
            self._warned.pop(key, None)
            return
        problem = (accepted["reason"], accepted["message"])
        if key not in self._warned:
            # After a restart: what the object already shows was reported by our predecessor.
            shown = find_status_condition((obj.get("status") or {}).get("conditions"), ACCEPTED)
            if shown is not None and (shown.get("reason"), shown.get("message")) == problem:
                self._warned[key] = problem
        if self._warned.get(key) == problem:
            return
        self._warned[key] = problem
        self.recorder.event(obj, "Warning", accepted["reason"], accepted["message"])
