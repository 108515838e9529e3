"""Grants: a namespace's consent, through Gateway API ReferenceGrants, to be referred to from another.

The ecosystem's own convention (``gateway.networking.k8s.io/v1beta1`` ReferenceGrant): an object may
refer to one in another namespace only when a ReferenceGrant in the *target's* namespace lets it,
naming the referring kind and namespace (``spec.from``) and the target kind, optionally by name
(``spec.to``). agentkube reads them for

- an MCP's cross-namespace ``mcpRef`` (from ``agentkube.io/MCP`` to ``agentkube.io/MCP``);
- a ToolServer's cross-namespace ``toolGatewayRef`` that the gateway's ``spec.allowedToolServers``
  does not admit (from ``runtime.agentic-layer.ai/ToolServer`` to ``runtime.agentic-layer.ai/ToolGateway``);
- whom a NetworkPolicy admits: the namespaces granted a reference to an MCP or an LLMGateway (any
  ``from`` kind: what the policy admits is a namespace's pods, whatever object made them call).

``permits`` and ``granted_namespaces`` are pure. ``ReferenceGrants`` is the cache side: the kind is
served only where the Gateway API CRDs are installed, so its informer starts once the CRD is served
(watched through the trimmed CRD cache the gateway controllers share) and, until then, nothing is
granted. What a caller may rely on: ``in_namespace`` never answers from a cache that has not synced
(it raises ``GrantsNotSynced``, a failure of the world the controller retries), so a restart never
flaps a granted reference to refused. Where the CRD is served at start, the grants are synced before
the controller's first reconcile (a startup hook); only a CRD installed later meets the retry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from agentkube.controllers.gatewayapi import RequiredCrd, crd_problem, trim_crd
from agentkube.controllers.kinds import CUSTOM_RESOURCE_DEFINITION, REFERENCE_GRANT
from agentkube.runtime.cache import NotCached
from agentkube.runtime.gvk import ObjectKey
from agentkube.runtime.handler import EnqueueRequestsFromMapFunc

if TYPE_CHECKING:
    from agentkube.runtime.controller import Controller
    from agentkube.runtime.informer import Informer
    from agentkube.runtime.manager import Manager
    from agentkube.runtime.reconcile import Request

__all__ = [
    "REFERENCE_GRANT_CRD",
    "GrantsNotSynced",
    "GroupKind",
    "ReferenceGrants",
    "granted_namespaces",
    "permits",
]

GroupKind = tuple[str, str]
"""``(group, kind)`` as a ReferenceGrant names a kind."""

REFERENCE_GRANT_CRD = RequiredCrd(REFERENCE_GRANT, "referencegrants", "GatewayAPINotInstalled")


def _entries(grant: Mapping[str, Any], side: str) -> list[Mapping[str, Any]]:
    spec = grant.get("spec")
    entries = spec.get(side) if isinstance(spec, Mapping) else None
    return [e for e in entries if isinstance(e, Mapping)] if isinstance(entries, list) else []


def _grants_to(grant: Mapping[str, Any], to: GroupKind, name: str | None) -> bool:
    for entry in _entries(grant, "to"):
        if (entry.get("group") or "", entry.get("kind")) != to:
            continue
        if not entry.get("name") or name is None or entry.get("name") == name:
            return True
    return False


def permits(
    grants: Iterable[Mapping[str, Any]],
    *,
    from_: GroupKind,
    from_namespace: str,
    to: GroupKind,
    to_name: str,
) -> bool:
    """Whether ``grants`` (the ReferenceGrants of the target's namespace) let a ``from_`` object of
    ``from_namespace`` refer to the ``to`` object named ``to_name``."""
    for grant in grants:
        if not _grants_to(grant, to, to_name):
            continue
        for entry in _entries(grant, "from"):
            kind = (entry.get("group") or "", entry.get("kind"))
            if kind == from_ and entry.get("namespace") == from_namespace:
                return True
    return False


def granted_namespaces(grants: Iterable[Mapping[str, Any]], *, to: GroupKind, to_name: str) -> list[str]:
    """The namespaces that ``grants`` (of the target's namespace) let refer to the ``to`` object named
    ``to_name``, from any kind; sorted, each once."""
    found: set[str] = set()
    for grant in grants:
        if _grants_to(grant, to, to_name):
            found.update(str(e["namespace"]) for e in _entries(grant, "from") if e.get("namespace"))
    return sorted(found)


class GrantsNotSynced(RuntimeError):
    """The ReferenceGrant cache has not synced yet: retry rather than refuse on half a picture."""


class ReferenceGrants:
    """The ReferenceGrants of the cluster, cached once their CRD is served; see the module docstring.

    Construct it in ``setup``; ``register`` declares the CRD watch on the builder (an event of the
    ReferenceGrant CRD enqueues ``on_crd()``), ``bind`` the controller and the mapping of a grant to
    the requests it affects. Several controllers may each hold one: they share the informers.
    """

    def __init__(self, manager: Manager) -> None:
        self._manager = manager
        self.crds: Informer = manager.cache.informer(CUSTOM_RESOURCE_DEFINITION, transform=trim_crd)
        self._informer: Informer | None = None
        self._controller: Controller | None = None
        self._map_to: Callable[[dict[str, Any]], list[Request]] | None = None

    def register(self, builder: Any, on_crd: Callable[[], list[Request]]) -> Any:
        """Declare the CRD watch on a controller ``Builder``."""

        def mapped(crd: dict[str, Any]) -> list[Request]:
            name = (crd.get("metadata") or {}).get("name")
            return on_crd() if name == REFERENCE_GRANT_CRD.name else []

        return builder.watches(CUSTOM_RESOURCE_DEFINITION, map_to=mapped, transform=trim_crd)

    def bind(self, controller: Controller, map_to: Callable[[dict[str, Any]], list[Request]]) -> None:
        """The controller that grant events wake, and which of its requests a grant affects (call
        once, after ``complete``; for an update the old grant is mapped too). Where the kind is served
        when the controller starts, the grants are cached before its first reconcile."""
        self._controller, self._map_to = controller, map_to

        async def cache_grants() -> None:
            # Runs once the CRD cache synced: no reconcile then meets a cache still listing grants.
            if self.served:
                self._start()
                assert self._informer is not None
                await self._informer.wait_for_sync(controller.cache_sync_timeout)

        controller.add_startup_hook(cache_grants)

    def _start(self) -> None:
        if self._informer is not None:
            return
        # Discovery may have cached the kind's absence before its CRD was installed.
        self._manager.client.forget_discovery(REFERENCE_GRANT)
        self._informer = self._manager.cache.informer(REFERENCE_GRANT)
        if self._controller is not None and self._map_to is not None:
            self._controller.watch(self._informer, EnqueueRequestsFromMapFunc(self._map_to))

    @property
    def served(self) -> bool:
        """Whether the cluster serves ReferenceGrants now."""
        crd = self.crds.store.get(ObjectKey(None, REFERENCE_GRANT_CRD.name))
        return crd_problem(crd, REFERENCE_GRANT_CRD) is None

    def in_namespace(self, namespace: str) -> list[dict[str, Any]]:
        """The ReferenceGrants of ``namespace``; none while the kind is not served. Starts the informer
        on first need; raises ``GrantsNotSynced`` until it has synced."""
        if not self.served:
            return []
        self._start()
        assert self._informer is not None
        if not self._informer.synced:
            raise GrantsNotSynced("the ReferenceGrant cache has not synced yet")
        try:
            return self._manager.cache.list(REFERENCE_GRANT, namespace)
        except NotCached:
            return []  # a namespace this manager does not watch grants it nothing
