"""Leader election on a real Lease: one leader, takeover after a crash or a release, no overlap."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from agentkube.runtime import metrics
from agentkube.runtime.client import Client
from agentkube.runtime.leaderelection import LEASE, LeaderElectionLost, LeaderElector
from agentkube.testing.controlplane import ControlPlane

pytestmark = pytest.mark.integration

# Short but valid timings (lease > renew > 1.2 x retry) so takeovers take seconds, not a minute.
LEASE_S, RENEW_S, RETRY_S = 3.0, 2.0, 0.5
MICRO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


@dataclass
class Board:
    """Overlap detector: who leads right now, and every moment two did at once."""

    leading: set[str] = field(default_factory=set)
    overlaps: list[tuple[str, set[str]]] = field(default_factory=list)
    started_at: dict[str, float] = field(default_factory=dict)
    stopped_at: dict[str, float] = field(default_factory=dict)

    def started(self, who: str) -> None:
        if self.leading:
            self.overlaps.append((who, set(self.leading)))
        self.leading.add(who)
        self.started_at[who] = time.monotonic()

    def stopped(self, who: str) -> None:
        self.leading.discard(who)
        self.stopped_at[who] = time.monotonic()


@dataclass
class Candidate:
    elector: LeaderElector
    task: asyncio.Task[None]


@pytest.fixture
async def clients(control_plane: ControlPlane) -> AsyncIterator[list[Client]]:
    """One client per candidate, as separate processes would have."""
    assert control_plane.kubeconfig is not None
    made = [await Client.from_kubeconfig(str(control_plane.kubeconfig), request_timeout=5) for _ in range(3)]
    yield made
    for c in made:
        await c.close()


@pytest.fixture
async def tasks() -> AsyncIterator[list[asyncio.Task[None]]]:
    started: list[asyncio.Task[None]] = []
    yield started
    for task in started:
        task.cancel()
    await asyncio.gather(*started, return_exceptions=True)


def campaign(
    client: Client,
    namespace: str,
    board: Board,
    tasks: list[asyncio.Task[None]],
    *,
    identity: str,
    release_on_cancel: bool = True,
    lease_name: str = "election",
) -> Candidate:
    elector = LeaderElector(
        client,
        lease_name,
        namespace,
        identity=identity,
        lease_duration=LEASE_S,
        renew_deadline=RENEW_S,
        retry_period=RETRY_S,
        release_on_cancel=release_on_cancel,
    )
    task = asyncio.create_task(
        elector.run(on_started=lambda: board.started(identity), on_stopped=lambda: board.stopped(identity))
    )
    tasks.append(task)
    return Candidate(elector, task)


async def wait_until(predicate: Callable[[], bool], within: float, what: str) -> float:
    """Poll ``predicate`` until true; return the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > within:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def hold_for(seconds: float, invariant: Callable[[], None]) -> None:
    """Check ``invariant`` continuously for ``seconds`` (an observation window, not a wait)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        invariant()
        await asyncio.sleep(0.02)


async def test_exactly_one_of_two_electors_leads(clients: list[Client], namespace: str, tasks: list) -> None:
    board = Board()
    a = campaign(clients[0], namespace, board, tasks, identity="a")
    b = campaign(clients[1], namespace, board, tasks, identity="b")
    await wait_until(lambda: len(board.leading) == 1, LEASE_S * 3, "a leader")
    (leader,) = board.leading

    def one_leader() -> None:
        assert board.leading == {leader}
        assert [c.elector.is_leader for c in (a, b)].count(True) == 1

    # Several renewals and follower polls go by; nothing may change hands.
    await hold_for(LEASE_S + 2 * RETRY_S, one_leader)
    lease = await clients[2].get(LEASE, "election", namespace)
    assert lease["spec"]["holderIdentity"] == leader
    assert board.overlaps == []
    follower = b if leader == "a" else a
    assert follower.elector.leader == leader


async def test_follower_takes_over_within_lease_plus_retry_when_the_leader_dies(
    clients: list[Client], namespace: str, tasks: list
) -> None:
    board = Board()
    candidates = {
        name: campaign(clients[i], namespace, board, tasks, identity=name, release_on_cancel=False)
        for i, name in enumerate(("a", "b"))
    }
    await wait_until(lambda: len(board.leading) == 1, LEASE_S * 3, "a leader")
    (leader,) = board.leading
    (other,) = set(candidates) - {leader}
    # A crash: the leader stops renewing and never releases (its on_stopped marks the moment it died).
    killed_at = time.monotonic()
    candidates[leader].task.cancel()
    await asyncio.gather(candidates[leader].task, return_exceptions=True)
    await wait_until(lambda: other in board.leading, LEASE_S * 3, "the follower to take over")
    took = board.started_at[other] - killed_at
    # The follower saw the last renewal at most one poll after it happened, and tries again the
    # moment the lease runs out by its own clock. The slack is for request latency on a busy host.
    assert took <= LEASE_S + RETRY_S + 1.0, took
    assert took >= LEASE_S - RETRY_S - 0.5, f"took over after {took:.2f}s, before the lease could run out"
    assert board.overlaps == []
    lease = await clients[2].get(LEASE, "election", namespace)
    assert lease["spec"]["holderIdentity"] == other
    assert lease["spec"]["leaseTransitions"] == 1


async def test_graceful_stop_releases_the_lease_for_a_near_immediate_takeover(
    clients: list[Client], namespace: str, tasks: list
) -> None:
    board = Board()
    led_work_cancelled: list[str] = []

    async def lead_forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            # The led work is stopped before on_stopped and before the release.
            led_work_cancelled.append(name)
            assert name in board.leading
            raise

    candidates: dict[str, Candidate] = {}
    for i, name in enumerate(("a", "b")):
        elector = LeaderElector(
            clients[i], "election", namespace, identity=name,
            lease_duration=LEASE_S, renew_deadline=RENEW_S, retry_period=RETRY_S,
        )  # fmt: skip

        def on_started(name: str = name) -> asyncio.Future[None]:
            board.started(name)
            return asyncio.ensure_future(lead_forever(name))

        task = asyncio.create_task(
            elector.run(on_started=on_started, on_stopped=lambda name=name: board.stopped(name))  # type: ignore[misc]
        )
        tasks.append(task)
        candidates[name] = Candidate(elector, task)

    await wait_until(lambda: len(board.leading) == 1, LEASE_S * 3, "a leader")
    (leader,) = board.leading
    (other,) = set(candidates) - {leader}
    stopped = time.monotonic()
    candidates[leader].task.cancel()
    await asyncio.gather(candidates[leader].task, return_exceptions=True)
    assert led_work_cancelled == [leader]
    released = await clients[2].get(LEASE, "election", namespace)
    assert released["spec"].get("holderIdentity") in (None, "", other)
    await wait_until(lambda: other in board.leading, LEASE_S, "the follower to take over")
    # One follower poll at most, far less than the lease duration a crash would cost.
    assert board.started_at[other] - stopped <= RETRY_S + 0.75
    assert board.overlaps == []


async def test_leader_that_cannot_renew_stops_before_anyone_else_starts(
    clients: list[Client], namespace: str, tasks: list
) -> None:
    board = Board()
    candidates = {
        name: campaign(clients[i], namespace, board, tasks, identity=name) for i, name in enumerate("ab")
    }
    await wait_until(lambda: len(board.leading) == 1, LEASE_S * 3, "a leader")
    (leader,) = board.leading
    (other,) = set(candidates) - {leader}
    # Cut the leader off from the API server: every renewal fails from now on.
    await clients["ab".index(leader)].close()
    with pytest.raises(LeaderElectionLost, match="renew_deadline"):
        async with asyncio.timeout(RENEW_S + 2 * RETRY_S + 1):
            await candidates[leader].task
    assert leader in board.stopped_at
    await wait_until(lambda: other in board.leading, LEASE_S * 3, "the follower to take over")
    assert board.overlaps == []
    assert board.started_at[other] > board.stopped_at[leader]


async def test_three_electors_never_overlap_through_crashes_and_releases(
    clients: list[Client], namespace: str, tasks: list
) -> None:
    board = Board()
    live: dict[str, Candidate] = {}
    slots: dict[str, int] = {}
    for slot in range(3):
        name = f"{'abc'[slot]}0"
        live[name] = campaign(
            clients[slot], namespace, board, tasks, identity=name, release_on_cancel=bool(slot % 2)
        )
        slots[name] = slot
    for generation in range(1, 4):
        await wait_until(lambda: len(board.leading) == 1, LEASE_S * 3, "a leader")
        (leader,) = board.leading
        slot = slots.pop(leader)
        gone = live.pop(leader).task
        gone.cancel()  # a crash or a graceful stop, depending on the replica
        await asyncio.gather(gone, return_exceptions=True)
        assert not board.leading
        # The replica comes back with a new identity, as a restarted pod would.
        name = f"{'abc'[slot]}{generation}"
        live[name] = campaign(
            clients[slot], namespace, board, tasks, identity=name, release_on_cancel=bool(generation % 2)
        )
        slots[name] = slot
    await wait_until(lambda: len(board.leading) == 1, LEASE_S * 3, "a last leader")
    assert board.overlaps == []
    assert len(board.started_at) == 4


async def test_lease_record_names_the_holder_in_micro_time_and_the_metric_follows(
    clients: list[Client], namespace: str, tasks: list
) -> None:
    board = Board()
    elector = LeaderElector(
        clients[0], "metered", namespace, lease_duration=LEASE_S, renew_deadline=RENEW_S, retry_period=RETRY_S
    )
    task = asyncio.create_task(
        elector.run(on_started=lambda: board.started("x"), on_stopped=lambda: board.stopped("x"))
    )
    tasks.append(task)
    await wait_until(lambda: elector.is_leader, LEASE_S * 3, "leadership")
    assert metrics.REGISTRY.get_sample_value("leader_election_master_status", {"name": "metered"}) == 1
    lease = await clients[1].get(LEASE, "metered", namespace)
    spec = lease["spec"]
    assert spec["holderIdentity"] == elector.identity
    assert elector.identity.startswith(socket.gethostname() + "_")
    assert spec["leaseDurationSeconds"] == 3
    assert MICRO_TIME.match(spec["acquireTime"]) and MICRO_TIME.match(spec["renewTime"])
    # Renewals move renewTime forward (MicroTime strings of one format sort by time).
    assert await _renew_time_after(clients[1], namespace, spec["renewTime"]) > spec["renewTime"]
    assert elector.is_leader and board.leading == {"x"}
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert metrics.REGISTRY.get_sample_value("leader_election_master_status", {"name": "metered"}) == 0
    released = (await clients[1].get(LEASE, "metered", namespace))["spec"]
    assert not released.get("holderIdentity")
    assert released["leaseDurationSeconds"] == 1


async def _renew_time_after(client: Client, namespace: str, previous: str) -> str:
    deadline = time.monotonic() + RETRY_S * 4
    while time.monotonic() < deadline:
        current = str((await client.get(LEASE, "metered", namespace))["spec"]["renewTime"])
        if current != previous:
            return current
        await asyncio.sleep(0.05)
    raise AssertionError("the leader did not renew within a few retry periods")


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"lease_duration": 10, "renew_deadline": 10}, "lease_duration"),
        ({"renew_deadline": 2.4, "retry_period": 2}, "renew_deadline"),
        ({"lease_duration": 0.5, "renew_deadline": 0.4, "retry_period": 0.1}, "lease_duration"),
        ({"retry_period": 0}, "retry_period"),
    ],
)
def test_invalid_timings_are_rejected_naming_the_option(kwargs: dict[str, float], names: str) -> None:
    with pytest.raises(ValueError, match=names):
        LeaderElector(object(), "x", "ns", **kwargs)  # type: ignore[arg-type]
