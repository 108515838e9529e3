"""Losing the lease stops every writer of the term, event recorders included."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from agentkube.runtime import Manager, Request
from agentkube.runtime.client import Client
from agentkube.runtime.gvk import GVK
from agentkube.runtime.leaderelection import LEASE
from agentkube.runtime.manager import LeaderElectionLost
from test.integration.runtime_helpers import CM, DEADLINE, configmap, manager_options

EVENT = GVK("events.k8s.io", "v1", "Event")


async def reasons(client: Client, namespace: str) -> set[str]:
    events, _ = await client.list(EVENT, namespace)
    return {str(e.get("reason")) for e in events}


async def test_events_recorded_as_the_lease_is_lost_are_never_written(client: Client, namespace: str) -> None:
    lease = f"lease-{secrets.token_hex(3)}"
    entered = asyncio.Event()
    manager = Manager(
        client,
        manager_options(
            namespace,
            leader_election=True,
            leader_election_id=lease,
            lease_duration=4,
            renew_deadline=3,
            retry_period=0.5,
        ),
    )
    recorder = manager.event_recorder("lease-loss-test")

    async def reconcile(request: Request) -> None:
        obj = await client.get(CM, request.name, request.namespace)
        recorder.normal(obj, "Started", "reconcile began")
        entered.set()
        try:
            await asyncio.Event().wait()
        finally:
            # A reconcile cut short records why: a write of a term that has ended.
            recorder.warning(obj, "WrittenAfterLeaseLost", "this event must never reach the API server")
            recorder.warning(obj, "WrittenAfterLeaseLost", "nor this repeat")

    manager.controller(f"lease-loss-{secrets.token_hex(3)}").for_kind(CM).complete(reconcile)
    await client.create(configmap("busy", namespace))
    task = asyncio.create_task(manager.run())
    try:
        await asyncio.wait_for(entered.wait(), DEADLINE)
        await recorder.flush()
        assert "Started" in await reasons(client, namespace), "events are written while leading"
        current = await client.get(LEASE, lease, namespace)
        current["spec"]["holderIdentity"] = "someone-else"
        await client.replace(current)
        with pytest.raises(LeaderElectionLost):
            await asyncio.wait_for(task, DEADLINE)
        # The manager has returned: anything it would still write is written by now.
        assert "WrittenAfterLeaseLost" not in await reasons(client, namespace)
    finally:
        manager.stop()
        await asyncio.gather(task, return_exceptions=True)
