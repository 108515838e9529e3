"""The operator running in the test process, and what its tests share.

``running_operator(kubeconfig, namespace=..., controllers=...)`` starts a ``Manager`` on a
``RecordingClient`` (the real client, which also notes every write it sends and every request RBAC
refused) with the controllers given registered (``WORKLOAD_CONTROLLERS``, the default: MCP and
LLMGateway; ``TOOL_CONTROLLERS``: ToolGatewayClass, ToolGateway and ToolServer), and stops it on exit.
There is no kube-controller-manager: Deployments get no status unless a test patches it
(``set_available``), and nothing garbage-collects (``World`` deletes what a test applied).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from agentkube.controllers import OperatorOptions, llmgateway, mcp, toolgateway, toolgatewayclass, toolserver
from agentkube.controllers.kinds import DEPLOYMENT
from agentkube.controllers.secrets import load_digest_key
from agentkube.runtime import metrics
from agentkube.runtime.client import Client
from agentkube.runtime.errors import AlreadyExists, Forbidden, NotFound
from agentkube.runtime.gvk import GVK
from agentkube.runtime.manager import LeaderElectionLost, Manager, ManagerOptions
from agentkube.runtime.reconcile import Request
from agentkube.testing import polling

__all__ = [
    "DEADLINE",
    "IMAGE",
    "TOOL_CONTROLLERS",
    "WORKLOAD_CONTROLLERS",
    "RecordingClient",
    "RunningOperator",
    "World",
    "condition",
    "eventually",
    "eventually_allowed",
    "get_or_none",
    "mcp_object",
    "running_operator",
    "secret_object",
    "set_available",
]

IMAGE = "ghcr.io/agentkube/agentkube:integration"
DEADLINE = 60.0
WORKLOAD_CONTROLLERS: tuple[ModuleType, ...] = (mcp, llmgateway)
TOOL_CONTROLLERS: tuple[ModuleType, ...] = (toolgatewayclass, toolgateway, toolserver)
TEST_MANAGER = "agentkube-test"


@dataclass(frozen=True)
class Write:
    verb: str
    kind: str
    name: str
    subresource: str | None = None


class RecordingClient(Client):
    """The real client, noting each write request (by verb and kind) and each RBAC denial."""

    writes: list[Write]
    denied: list[str]
    dry_runs: list[Write]
    """Dry-run applies: requests that persist nothing, kept apart from ``writes``."""

    def _note(self) -> None:
        if not hasattr(self, "writes"):
            self.writes, self.denied, self.dry_runs = [], [], []

    def _denied(self, what: str, error: Forbidden) -> None:
        self._note()
        # "namespace ... is being terminated" is also a 403; only "cannot <verb>" is RBAC saying no.
        if "cannot" in error.message:
            self.denied.append(f"{what}: {error.message}")

    async def _record(self, write: Write, call: Awaitable[Any]) -> Any:
        self._note()
        self.writes.append(write)
        try:
            return await call
        except Forbidden as e:
            self._denied(f"{write.verb} {write.kind} {write.name}", e)
            raise

    async def apply(self, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
        write = Write("apply", obj["kind"], obj["metadata"]["name"], kw.get("subresource"))
        if kw.get("dry_run"):
            self._note()
            self.dry_runs.append(write)
            dry: dict[str, Any] = await super().apply(obj, **kw)
            return dry
        result: dict[str, Any] = await self._record(write, super().apply(obj, **kw))
        return result

    async def create(self, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._record(
            Write("create", obj["kind"], obj["metadata"].get("name", "")), super().create(obj, **kw)
        )
        return result

    async def patch(
        self, gvk: GVK, name: str, namespace: str | None, patch: Any, **kw: Any
    ) -> dict[str, Any]:
        write = Write("patch", gvk.kind, name, kw.get("subresource"))
        result: dict[str, Any] = await self._record(write, super().patch(gvk, name, namespace, patch, **kw))
        return result

    async def replace(self, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
        write = Write("replace", obj["kind"], obj["metadata"]["name"], kw.get("subresource"))
        result: dict[str, Any] = await self._record(write, super().replace(obj, **kw))
        return result

    async def delete(self, gvk: GVK, name: str, namespace: str | None = None, **kw: Any) -> None:
        await self._record(Write("delete", gvk.kind, name), super().delete(gvk, name, namespace, **kw))

    async def get(self, gvk: GVK, name: str, namespace: str | None = None) -> dict[str, Any]:
        try:
            return await super().get(gvk, name, namespace)
        except Forbidden as e:
            self._denied(f"get {gvk.kind} {name}", e)
            raise

    async def list(self, gvk: GVK, namespace: str | None = None, **kw: Any) -> Any:
        try:
            return await super().list(gvk, namespace, **kw)
        except Forbidden as e:
            self._denied(f"list {gvk.kind} in {namespace or 'all namespaces'}", e)
            raise

    async def watch(self, gvk: GVK, namespace: str | None = None, **kw: Any) -> AsyncIterator[dict[str, Any]]:  # type: ignore[override]
        try:
            async with contextlib.aclosing(super().watch(gvk, namespace, **kw)) as events:
                async for event in events:
                    yield event
        except Forbidden as e:
            self._denied(f"watch {gvk.kind} in {namespace or 'all namespaces'}", e)
            raise

    def writes_of(self, verb: str | None = None, kind: str | None = None) -> list[Write]:
        self._note()
        return [
            w for w in self.writes if (verb is None or w.verb == verb) and (kind is None or w.kind == kind)
        ]


@dataclass
class RunningOperator:
    client: RecordingClient
    manager: Manager
    task: asyncio.Task[None]
    namespace: str | None
    requeued: dict[str, int] = field(default_factory=dict)

    def requeue_everything(self) -> int:
        """Put every cached MCP and LLMGateway back on its controller's queue; how many were added."""
        added = 0
        queues = {c.name: c.queue for c in self.manager.controllers}
        for name, gvk in (("mcp", mcp.MCP), ("llmgateway", llmgateway.LLM_GATEWAY)):
            for obj in self.manager.cache.list(gvk, self.namespace):
                queues[name].add(Request.of(obj))
                added += 1
        return added

    async def flush_events(self) -> None:
        """Wait until every Event the controllers recorded so far has been written."""
        for controller in self.manager.controllers:
            recorder = getattr(controller.reconciler, "recorder", None)
            if recorder is not None:
                await recorder.flush()

    def reconciles(self) -> float:
        """Reconciles finished so far by this process's mcp and llmgateway controllers (any result)."""
        total = 0.0
        for name in ("mcp", "llmgateway"):
            for result in ("success", "error", "requeue", "requeue_after"):
                value = metrics.REGISTRY.get_sample_value(
                    "controller_runtime_reconcile_total", {"controller": name, "result": result}
                )
                total += value or 0.0
        return total

    def idle(self) -> bool:
        """No request queued or being reconciled by any controller."""
        return all(len(c.queue) == 0 and not c.queue.processing for c in self.manager.controllers)


@contextlib.asynccontextmanager
async def running_operator(
    kubeconfig: str,
    *,
    namespace: str | None = None,
    controllers: Sequence[ModuleType] = WORKLOAD_CONTROLLERS,
    **options: Any,
) -> AsyncIterator[RunningOperator]:
    """The manager with ``controllers`` (modules with ``setup``), watching ``namespace`` (None: every
    namespace); ``options`` are further ``ManagerOptions``, and ``operator_namespace`` where the digest
    key Secret is read or made, as ``agentkube manager`` does (default: the leader election
    namespace, else ``namespace``, else ``default``)."""
    client = await RecordingClient.from_kubeconfig(kubeconfig)
    assert isinstance(client, RecordingClient)
    client._note()
    home = options.pop("operator_namespace", None) or options.get("leader_election_namespace") or namespace
    digest_key = await load_digest_key(client, home or "default")
    del client.writes[:]  # the key Secret is the operator's own, not a write of the controllers
    settings: dict[str, Any] = {
        "metrics_bind_address": "0",
        "health_probe_bind_address": "0",
        "namespace": namespace,
        "install_signal_handlers": False,
        "graceful_shutdown_timeout": 10.0,
    }
    settings.update(options)
    manager = Manager(client, ManagerOptions(**settings))
    operator_options = OperatorOptions(dataplane_image=IMAGE, digest_key=digest_key)
    for module in controllers:
        module.setup(manager, operator_options)
    task = asyncio.create_task(manager.run())
    try:
        yield RunningOperator(client, manager, task, namespace)
    finally:
        manager.stop()
        with contextlib.suppress(LeaderElectionLost):
            await asyncio.wait_for(task, DEADLINE)
        await client.close()


async def eventually(check: Callable[[], Any], what: str, within: float = DEADLINE) -> Any:
    """Poll ``check`` until it returns something truthy, and return that; an object that is not there
    yet (NotFound, a missing key) counts as not yet."""
    return await polling.eventually(check, what, within, ignoring=(LookupError, TypeError, NotFound))


async def eventually_allowed(operator: RunningOperator, check: Callable[[], Any], what: str) -> Any:
    """``eventually``, except that a request RBAC refused the operator fails the test at once, naming
    the request, rather than as a timeout later."""

    async def refused_nothing_and() -> Any:
        assert operator.client.denied == []
        result = check()
        return await result if hasattr(result, "__await__") else result

    return await eventually(refused_nothing_and, what)


def condition(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or ():
        if c.get("type") == ctype:
            return dict(c)
    return None


async def set_available(
    client: Client, namespace: str, name: str, available: bool, replicas: int = 1
) -> None:
    """Play kube-controller-manager: report the Deployment (un)available through its status."""
    deployment = await client.get(DEPLOYMENT, name, namespace)
    ready = replicas if available else 0
    status = {
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": replicas,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "updatedReplicas": replicas,
        "conditions": [
            {
                "type": "Available",
                "status": "True" if available else "False",
                "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                "message": "Deployment has minimum availability."
                if available
                else "Deployment does not have minimum availability.",
                "lastUpdateTime": "2026-01-01T00:00:00Z",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    await client.patch(DEPLOYMENT, name, namespace, {"status": status}, subresource="status")


HTTP_UPSTREAM: dict[str, Any] = {
    "name": "github",
    "kind": "http",
    "endpoint": "https://mcp.github.com",
    "auth": {"mode": "bearer", "secretRef": {"name": "pat", "key": "token"}},
}
"""An MCP's http upstream whose bearer token is key ``token`` of Secret ``pat`` (the tests' usual one)."""


def secret_object(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    """A Secret with ``data`` (values given in clear, sent base64)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def mcp_object(namespace: str, name: str, upstreams: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "agentkube.io/v1alpha1",
        "kind": "MCP",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"upstreams": upstreams, **spec},
    }


async def get_or_none(client: Client, gvk: GVK, name: str, namespace: str | None) -> dict[str, Any] | None:
    try:
        return await client.get(gvk, name, namespace)
    except NotFound:
        return None


class World:
    """Objects a test applies as a user would, deleted when the test ends (nothing garbage-collects)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.applied: dict[tuple[GVK, str | None, str], None] = {}

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        result = await self.client.apply(obj, field_manager=TEST_MANAGER)
        meta = result["metadata"]
        self.applied[(GVK.from_object(result), meta.get("namespace"), meta["name"])] = None
        return result

    async def get(self, gvk: GVK, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return await get_or_none(self.client, gvk, name, namespace)

    async def delete(self, gvk: GVK, name: str, namespace: str | None = None) -> None:
        with contextlib.suppress(NotFound):
            await self.client.delete(gvk, name, namespace)

    async def namespace(self, name: str) -> None:
        with contextlib.suppress(AlreadyExists):
            await self.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    async def cleanup(self) -> None:
        for gvk, namespace, name in reversed(list(self.applied)):
            await self.delete(gvk, name, namespace)
