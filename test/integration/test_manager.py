"""The manager against a real kube-apiserver: endpoints, readiness, shutdown, outages, leader election."""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentkube.runtime import (
    GVK,
    Client,
    LeaderElectionLost,
    Manager,
    ManagerOptions,
    Request,
)
from agentkube.runtime.leaderelection import LEASE
from agentkube.testing.controlplane import ControlPlane
from test.integration.runtime_helpers import (
    CM,
    DEADLINE,
    configmap,
    eventually,
    installed_crd,
    manager_options,
    running,
    schemaless_crd,
)

pytestmark = pytest.mark.integration

_names = itertools.count()


def unique(prefix: str) -> str:
    return f"it-mgr-{prefix}-{next(_names)}"


async def http_get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


class Seen:
    """A reconciler that records every request it is given."""

    def __init__(self) -> None:
        self.requests: list[Request] = []

    async def reconcile(self, request: Request) -> None:
        self.requests.append(request)

    def names(self) -> set[str]:
        return {r.name for r in self.requests}


# -- endpoints -------------------------------------------------------------------------------------

# Every metric of the contract, as exposed (sample names), with the labels each must carry.
CONTRACT = {
    "controller_runtime_reconcile_total": {"controller", "result"},
    "controller_runtime_reconcile_errors_total": {"controller"},
    "controller_runtime_terminal_reconcile_errors_total": {"controller"},
    "controller_runtime_reconcile_panics_total": {"controller"},
    "controller_runtime_reconcile_time_seconds_bucket": {"controller", "le"},
    "controller_runtime_reconcile_time_seconds_sum": {"controller"},
    "controller_runtime_reconcile_time_seconds_count": {"controller"},
    "controller_runtime_max_concurrent_reconciles": {"controller"},
    "controller_runtime_active_workers": {"controller"},
    "workqueue_depth": {"name", "controller"},
    "workqueue_adds_total": {"name", "controller"},
    "workqueue_queue_duration_seconds_bucket": {"name", "controller", "le"},
    "workqueue_queue_duration_seconds_count": {"name", "controller"},
    "workqueue_work_duration_seconds_bucket": {"name", "controller", "le"},
    "workqueue_work_duration_seconds_count": {"name", "controller"},
    "workqueue_unfinished_work_seconds": {"name", "controller"},
    "workqueue_longest_running_processor_seconds": {"name", "controller"},
    "workqueue_retries_total": {"name", "controller"},
    "leader_election_master_status": {"name"},
    "rest_client_requests_total": {"code", "method", "host"},
    "agentkube_cache_objects": {"kind"},
    "agentkube_event_loop_lag_seconds": set(),
}


async def test_metrics_endpoint_exposes_every_contract_metric_with_its_labels(
    client: Client, namespace: str
) -> None:
    name = unique("metrics")
    lease = unique("lease")
    seen = Seen()
    manager = Manager(
        client,
        manager_options(
            namespace,
            metrics_bind_address="127.0.0.1:0",
            leader_election=True,
            leader_election_id=lease,
            lease_duration=4,
            renew_deadline=3,
            retry_period=0.5,
        ),
    )
    manager.controller(name).for_kind(CM).complete(seen)
    async with running(manager):
        await client.create(configmap("scraped", namespace))
        await eventually(lambda: "scraped" in seen.names(), "the ConfigMap is reconciled")
        assert manager.metrics_port is not None
        status, text = await http_get(manager.metrics_port, "/metrics")
    assert status == 200

    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    by_name: dict[str, list[dict[str, str]]] = {}
    for s in samples:
        by_name.setdefault(s.name, []).append(s.labels)
    missing = sorted(set(CONTRACT) - set(by_name))
    assert not missing, f"/metrics lacks {missing}"
    for metric, labels in CONTRACT.items():
        for got in by_name[metric]:
            assert set(got) == labels, f"{metric} has labels {sorted(got)}, want {sorted(labels)}"

    ours = {s.labels["result"]: s.value for s in samples if s.name == "controller_runtime_reconcile_total"
            and s.labels["controller"] == name}  # fmt: skip
    assert set(ours) == {"success", "error", "requeue", "requeue_after"}
    assert ours["success"] >= 1
    queue = [s for s in samples if s.name == "workqueue_adds_total" and s.labels["controller"] == name]
    assert queue and queue[0].labels["name"] == name and queue[0].value >= 1
    assert any(s.labels == {"kind": "v1/ConfigMap"} for s in samples if s.name == "agentkube_cache_objects")
    assert any(
        s.labels == {"name": lease} and s.value == 1
        for s in samples
        if s.name == "leader_election_master_status"
    )


async def test_readyz_answers_503_naming_the_unsynced_kind_until_it_syncs(
    client: Client, namespace: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    group = f"ready{secrets.token_hex(4)}.example.com"
    widget = GVK(group, "v1", "Widget")
    manager = Manager(client, manager_options(namespace, health_probe_bind_address="127.0.0.1:0"))
    manager.cache.informer(CM)
    manager.cache.informer(widget)  # the CRD does not exist yet: this informer cannot sync
    async with running(manager):
        await eventually(lambda: manager.health_probe_port is not None, "the probe endpoint listens")
        port = manager.health_probe_port
        assert port is not None
        await eventually(lambda: manager.cache.informer(CM).synced, "ConfigMaps are synced")
        status, body = await http_get(port, "/readyz")
        assert status == 503
        assert "Widget" in body and "ConfigMap" not in body
        assert await http_get(port, "/healthz") == (200, "ok\n")
        # Liveness under the name the API server and controller-runtime use too: alive while not ready.
        assert await http_get(port, "/livez") == (200, "ok\n")

        async with installed_crd(control_plane, schemaless_crd(widget, "widgets"), tmp_path):

            async def ready() -> bool:
                return (await http_get(port, "/readyz")) == (200, "ok\n")

            await eventually(ready, "/readyz answers 200 once the Widget informer synced")


# -- shutdown --------------------------------------------------------------------------------------


async def test_graceful_shutdown_finishes_the_reconcile_in_flight(client: Client, namespace: str) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def reconcile(request: Request) -> None:
        entered.set()
        await release.wait()
        # The client still works while the manager drains: the reconcile's last write lands.
        await client.patch(CM, request.name, request.namespace, {"metadata": {"labels": {"done": "yes"}}})

    manager = Manager(client, manager_options(namespace))
    manager.controller(unique("graceful")).for_kind(CM).complete(reconcile)
    await client.create(configmap("slow", namespace))
    task = asyncio.create_task(manager.run())
    await asyncio.wait_for(entered.wait(), DEADLINE)
    manager.stop()
    await asyncio.sleep(0.2)
    assert not task.done(), "the manager must wait for the reconcile in flight"
    release.set()
    await asyncio.wait_for(task, DEADLINE)
    cm = await client.get(CM, "slow", namespace)
    assert cm["metadata"]["labels"] == {"done": "yes"}


async def test_events_queued_while_shutting_down_are_written_before_run_returns(
    client: Client, namespace: str
) -> None:
    name = unique("events")
    manager = Manager(client, manager_options(namespace))
    recorder = manager.event_recorder(name)
    assert manager.event_recorder(name) is recorder
    entered = asyncio.Event()
    release = asyncio.Event()
    recorded: list[Request] = []

    async def reconcile(request: Request) -> None:
        entered.set()
        await release.wait()
        cm = manager.cache.get(CM, request.name, request.namespace)
        assert cm is not None
        # Queued after shutdown began: only the manager's flush can write these now.
        for reason in ("Reconciled", "Drained", "Finished"):
            recorder.normal(cm, reason, f"{reason.lower()} {request}")
        recorded.append(request)

    manager.controller(name).for_kind(CM).complete(reconcile)
    await client.create(configmap("noted", namespace))
    task = asyncio.create_task(manager.run())
    await asyncio.wait_for(entered.wait(), DEADLINE)
    manager.stop()
    release.set()
    await asyncio.wait_for(task, DEADLINE)
    assert recorded == [Request(namespace, "noted")]
    # run() has returned: every queued Event must be in the API server now, without polling.
    events, _ = await client.list(GVK("events.k8s.io", "v1", "Event"), namespace)
    notes = [e.get("note") for e in events if e.get("regarding", {}).get("name") == "noted"]
    assert any(note and "reconciled" in note for note in notes), notes
    assert sorted(e["reason"] for e in events if e.get("regarding", {}).get("name") == "noted") == [
        "Drained",
        "Finished",
        "Reconciled",
    ]


async def test_shutdown_cancels_a_reconcile_that_outlives_the_graceful_timeout(
    client: Client, namespace: str
) -> None:
    cancelled = asyncio.Event()
    entered = asyncio.Event()

    async def reconcile(request: Request) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()  # never finishes on its own
        except asyncio.CancelledError:
            cancelled.set()
            raise

    manager = Manager(client, manager_options(namespace, graceful_shutdown_timeout=0.5))
    manager.controller(unique("stuck")).for_kind(CM).complete(reconcile)
    await client.create(configmap("stuck", namespace))
    task = asyncio.create_task(manager.run())
    await asyncio.wait_for(entered.wait(), DEADLINE)
    manager.stop()
    await asyncio.wait_for(task, 10)
    assert cancelled.is_set()


async def test_sigterm_shuts_the_manager_down_gracefully(client: Client, namespace: str) -> None:
    seen = Seen()
    manager = Manager(client, manager_options(namespace, install_signal_handlers=True))
    manager.controller(unique("sigterm")).for_kind(CM).complete(seen)
    await client.create(configmap("a", namespace))
    task = asyncio.create_task(manager.run())
    await eventually(lambda: "a" in seen.names(), "the manager reconciles")
    # Only signal ourselves when the manager's handler (not the default: death) is in place.
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        manager.stop()
        await task
        pytest.skip("signal handlers cannot be installed in this event loop")
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, DEADLINE)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is removed again


# -- outages ---------------------------------------------------------------------------------------


async def test_manager_survives_an_apiserver_restart_and_reconciles_later_changes(
    client: Client, namespace: str, control_plane: ControlPlane
) -> None:
    seen = Seen()
    manager = Manager(client, manager_options(namespace))
    manager.controller(unique("restart")).for_kind(CM).complete(seen)
    async with running(manager) as task:
        await client.create(configmap("before", namespace))
        await eventually(lambda: "before" in seen.names(), "the ConfigMap created before the restart")
        await asyncio.to_thread(control_plane.restart_apiserver)
        assert not task.done()

        async def create_after() -> bool:
            try:
                await client.create(configmap("after", namespace))
            except Exception:
                return False  # the apiserver may still be settling
            return True

        await eventually(create_after, "the ConfigMap is created after the restart")
        await eventually(
            lambda: "after" in seen.names(), "the ConfigMap created after the restart is reconciled"
        )
        seen.requests.clear()
        await client.patch(CM, "before", namespace, {"data": {"key": "changed"}})
        await eventually(lambda: "before" in seen.names(), "an update after the restart is reconciled")
        assert not task.done(), "the manager must never exit because of an apiserver outage"


# -- leader election -------------------------------------------------------------------------------


def elected_options(namespace: str, lease: str, **overrides: Any) -> ManagerOptions:
    return manager_options(
        namespace,
        leader_election=True,
        leader_election_id=lease,
        lease_duration=4,
        renew_deadline=3,
        retry_period=0.5,
        **overrides,
    )


async def test_two_managers_with_leader_election_exactly_one_reconciles(
    client: Client, namespace: str, control_plane: ControlPlane
) -> None:
    lease = unique("lease")
    assert control_plane.kubeconfig is not None
    other_client = await Client.from_kubeconfig(str(control_plane.kubeconfig))
    seen = {"a": Seen(), "b": Seen()}
    managers = {
        "a": Manager(client, elected_options(namespace, lease)),
        "b": Manager(other_client, elected_options(namespace, lease)),
    }
    for key, manager in managers.items():
        manager.controller(unique(f"le-{key}")).for_kind(CM).complete(seen[key])
    tasks = {key: asyncio.create_task(m.run()) for key, m in managers.items()}
    try:
        await eventually(lambda: any(m.leading for m in managers.values()), "one manager leads")
        for i in range(5):
            await client.create(configmap(f"cm-{i}", namespace))
        expected = {f"cm-{i}" for i in range(5)}
        await eventually(
            lambda: any(s.names() >= expected for s in seen.values()), "the leader reconciles every ConfigMap"
        )
        leader = next(k for k, m in managers.items() if m.leading)
        follower = "b" if leader == "a" else "a"
        assert not managers[follower].leading
        assert seen[follower].requests == [], "the follower must not reconcile"

        # A graceful stop releases the lease: the follower takes over well before the lease expires.
        loop = asyncio.get_running_loop()
        stopped_at = loop.time()
        managers[leader].stop()
        await asyncio.wait_for(tasks[leader], DEADLINE)
        await eventually(lambda: managers[follower].leading, "the follower takes over")
        assert loop.time() - stopped_at < 4, "a released lease is taken over within about a retry period"
        await client.create(configmap("after-failover", namespace))
        await eventually(lambda: "after-failover" in seen[follower].names(), "the new leader reconciles")
        assert "after-failover" not in seen[leader].names()
    finally:
        for manager in managers.values():
            manager.stop()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        await other_client.close()


async def test_losing_the_lease_cancels_reconciles_and_run_raises(client: Client, namespace: str) -> None:
    lease = unique("lease")
    entered = asyncio.Event()
    cancelled = asyncio.Event()

    async def reconcile(request: Request) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    manager = Manager(client, elected_options(namespace, lease))
    manager.controller(unique("lose")).for_kind(CM).complete(reconcile)
    await client.create(configmap("busy", namespace))
    task = asyncio.create_task(manager.run())
    try:
        await asyncio.wait_for(entered.wait(), DEADLINE)
        # Someone else takes the lease (as a peer would after a long partition).
        current = await client.get(LEASE, lease, namespace)
        current["spec"]["holderIdentity"] = "someone-else"
        await client.replace(current)
        with pytest.raises(LeaderElectionLost):
            await asyncio.wait_for(task, DEADLINE)
        assert cancelled.is_set()
        assert not manager.leading
    finally:
        manager.stop()
        await asyncio.gather(task, return_exceptions=True)
