"""Leader election on a coordination.k8s.io/v1 Lease, safe against clock skew and hung requests.

Use::

    elector = LeaderElector(client, "my-operator", "my-namespace")
    await elector.run(on_started=start_controllers, on_stopped=stop_controllers)

What a caller may rely on:

- ``run()`` campaigns until it holds the Lease, calls ``on_started()``, then renews every
  ``retry_period`` seconds. It never returns normally: it raises ``LeaderElectionLost`` when
  leadership is lost, or ``CancelledError`` when its task is cancelled (the graceful stop).
- **Stop before the lease can lapse.** The leader gives up as soon as ``renew_deadline`` seconds
  have passed since it *sent* its last successful renewal (each attempt is cut off at that deadline,
  so a hung request cannot stretch it), or at once when it sees another holder. A follower takes
  over only ``leaseDurationSeconds`` after it *observed* the last change of the record, by its own
  monotonic clock; since ``renew_deadline < lease_duration``, the old leader has stopped (and
  ``on_stopped`` has run) before anyone else can start. Wall-clock times in the record are written
  for humans and other tools, never trusted for expiry: clock skew between nodes cannot cause two
  leaders.
- On losing the lease: ``leader_election_master_status{name}`` drops to 0, one error line is
  logged, the ``on_started`` task (if it returned a coroutine) is cancelled, ``on_stopped()`` is
  called, and ``run()`` raises ``LeaderElectionLost``. The caller should exit the process (a
  restarted replica campaigns again as a follower).
- On cancellation while leading: the ``on_started`` task is cancelled, ``on_stopped()`` is called,
  and the lease is released (holder cleared, ``leaseDurationSeconds: 1``, as client-go does) so a
  peer takes over within one ``retry_period`` instead of waiting out the lease. Cancel only after
  your own writers have stopped.
- ``on_started`` / ``on_stopped`` may be plain functions or coroutine functions. A coroutine from
  ``on_started`` runs as its own task while leading (like client-go's OnStartedLeading goroutine);
  a coroutine from ``on_stopped`` is awaited. ``on_stopped`` is called only after ``on_started``.
- Defaults are client-go's: lease 15 s, renew deadline 10 s, retry 2 s, validated as client-go does
  (lease > renew deadline > 1.2 x retry, and a lease of at least 1 s). Identity defaults to
  ``<hostname>_<random>``, unique per process even with ``hostNetwork`` pods sharing a host name.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from agentkube.runtime import metrics
from agentkube.runtime.client import Client
from agentkube.runtime.errors import AlreadyExists, Conflict, NotFound
from agentkube.runtime.gvk import GVK
from agentkube.runtime.logging import get_logger

__all__ = ["LEASE", "LeaderElectionLost", "LeaderElector", "format_micro_time"]

LEASE = GVK("coordination.k8s.io", "v1", "Lease")

# client-go's JitterFactor. client-go validates renew_deadline against it and we keep that rule, but
# we jitter follower retries downward (retry/1.2 .. retry) so a takeover never waits longer than
# retry_period once the lease has run out.
_JITTER_FACTOR = 1.2

log = get_logger(__name__)

Callback = Callable[[], Awaitable[None] | None]


class LeaderElectionLost(RuntimeError):
    """This process held the lease and no longer does; whatever it led must stop now."""


def format_micro_time(moment: datetime) -> str:
    """``moment`` as metav1.MicroTime: UTC, six fractional digits, ``Z``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _default_identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4()}"


class LeaderElector:
    """Campaign for, hold and release one Lease; see the module docstring for the guarantees."""

    def __init__(
        self,
        client: Client,
        name: str,
        namespace: str,
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        *,
        release_on_cancel: bool = True,
    ) -> None:
        if not name:
            raise ValueError("name: the Lease needs a name")
        if not namespace:
            raise ValueError("namespace: the Lease needs a namespace")
        if lease_duration < 1:
            raise ValueError(f"lease_duration must be at least 1 second, got {lease_duration}")
        if retry_period <= 0:
            raise ValueError(f"retry_period must be positive, got {retry_period}")
        if lease_duration <= renew_deadline:
            raise ValueError(
                f"lease_duration ({lease_duration}) must be greater than renew_deadline ({renew_deadline})"
            )
        if renew_deadline <= _JITTER_FACTOR * retry_period:
            raise ValueError(
                f"renew_deadline ({renew_deadline}) must be greater than "
                f"{_JITTER_FACTOR} x retry_period ({retry_period})"
            )
        self._client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity or _default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        # Whole seconds in the record; rounding up keeps followers waiting at least lease_duration.
        self._lease_seconds = math.ceil(lease_duration)
        self._observed_spec: dict[str, Any] | None = None
        self._observed_at = 0.0  # monotonic time the record was last seen to change
        self._lease: dict[str, Any] | None = None  # last Lease read or written (for resourceVersion)
        self._renewed_at = 0.0  # monotonic time the last successful write was *sent*
        self._leading = False

    # ------------------------------------------------------------------------------------- public

    @property
    def is_leader(self) -> bool:
        return self._leading

    @property
    def leader(self) -> str | None:
        """The holder identity last observed (ours while leading), or None."""
        spec = self._observed_spec or {}
        return spec.get("holderIdentity") or None

    async def run(self, on_started: Callback, on_stopped: Callback) -> None:
        """Campaign, lead, and raise ``LeaderElectionLost`` on losing the lease (see module docs)."""
        metrics.LEADER_ELECTION_STATUS.labels(name=self.name).set(0)
        leader_task: asyncio.Task[None] | None = None
        try:
            await self._acquire()
            self._leading = True
            metrics.LEADER_ELECTION_STATUS.labels(name=self.name).set(1)
            log.info("became leader", lease=self._lease_ref, identity=self.identity)
            started = on_started()
            if inspect.isawaitable(started):
                leader_task = asyncio.ensure_future(started)
            await self._renew_until_lost(leader_task)
        except LeaderElectionLost:
            await self._step_down(leader_task, on_stopped)
            raise
        except BaseException:
            # Cancelled (a graceful stop), or what we led failed: hand the lease over cleanly.
            if self._leading:
                self._leading = False
                await self._step_down(leader_task, on_stopped)
                if self.release_on_cancel:
                    await self._release()
            raise
        finally:
            self._leading = False
            metrics.LEADER_ELECTION_STATUS.labels(name=self.name).set(0)

    # ------------------------------------------------------------------------------------- phases

    @property
    def _lease_ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    async def _acquire(self) -> None:
        while True:
            wait = self.retry_period * random.uniform(1 / _JITTER_FACTOR, 1.0)
            try:
                async with asyncio.timeout(self._client.request_timeout):
                    if await self._try_acquire_or_renew():
                        return
            except Exception as exc:  # any failure is just a lost round; keep campaigning
                log.debug("could not acquire the lease", lease=self._lease_ref, error=str(exc))
            else:
                # Held by someone else: try again when their lease would run out, if that is sooner.
                expires_in = self._observed_at + self._observed_duration() - time.monotonic()
                wait = min(wait, max(expires_in, 0.0) + 0.01)
            await asyncio.sleep(wait)

    async def _renew_until_lost(self, leader_task: asyncio.Task[None] | None) -> None:
        while True:
            await asyncio.sleep(self.retry_period)
            if leader_task is not None and leader_task.done() and not leader_task.cancelled():
                # What we were leading finished; surface its error, otherwise keep the lease.
                leader_task.result()
            deadline = self._renewed_at + self.renew_deadline
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._lost(f"could not renew within renew_deadline={self.renew_deadline:g}s")
                try:
                    # Cut the attempt off at the deadline: a hung request must not keep us leading.
                    async with asyncio.timeout(remaining):
                        renewed = await self._try_acquire_or_renew()
                except Exception as exc:
                    log.warning("failed to renew the lease", lease=self._lease_ref, error=repr(exc))
                    renewed = False
                if renewed:
                    break
                holder = self.leader
                if holder and holder != self.identity:
                    self._lost(f"the lease is now held by {holder}")
                await asyncio.sleep(min(self.retry_period, max(deadline - time.monotonic(), 0.0)))

    def _lost(self, why: str) -> None:
        self._leading = False
        metrics.LEADER_ELECTION_STATUS.labels(name=self.name).set(0)
        log.error(
            "leader election lost; stopping everything this process leads",
            lease=self._lease_ref,
            identity=self.identity,
            reason=why,
        )
        raise LeaderElectionLost(f"lost the lease {self._lease_ref}: {why}")

    async def _step_down(self, leader_task: asyncio.Task[None] | None, on_stopped: Callback) -> None:
        if leader_task is not None and not leader_task.done():
            leader_task.cancel()
            # gather, not a bare await: its outcome is irrelevant, but our own cancellation is not.
            await asyncio.gather(leader_task, return_exceptions=True)
        stopped = on_stopped()
        if inspect.isawaitable(stopped):
            await stopped

    async def _release(self) -> None:
        """Clear the holder so a peer can take over at once (only while the record still names us)."""
        try:
            async with asyncio.timeout(min(self._client.request_timeout, self.renew_deadline)):
                for _ in range(2):
                    lease = self._lease
                    if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                        return
                    now = format_micro_time(datetime.now(UTC))
                    spec = dict(lease.get("spec") or {})
                    # As client-go: no holder, and a one-second lease for peers that still look at it.
                    spec.update(holderIdentity=None, leaseDurationSeconds=1, acquireTime=now, renewTime=now)
                    try:
                        self._lease = await self._client.replace(dict(lease, spec=spec))
                    except Conflict:
                        # A renewal cancelled mid-flight may have landed: re-read and try once more.
                        self._lease = await self._client.get(LEASE, self.name, self.namespace)
                        continue
                    log.info("released the lease", lease=self._lease_ref, identity=self.identity)
                    return
        except Exception as exc:
            # Not fatal: the lease simply runs out and a peer takes over after lease_duration.
            log.warning("could not release the lease", lease=self._lease_ref, error=repr(exc))

    # ------------------------------------------------------------------------------------- one round

    def _observed_duration(self) -> float:
        spec = self._observed_spec or {}
        seconds = spec.get("leaseDurationSeconds")
        return float(seconds) if isinstance(seconds, int | float) and seconds > 0 else self.lease_duration

    def _observe(self, lease: dict[str, Any]) -> None:
        spec = lease.get("spec") or {}
        if spec != self._observed_spec:
            self._observed_spec = dict(spec)
            self._observed_at = time.monotonic()
        self._lease = lease

    async def _try_acquire_or_renew(self) -> bool:
        """One round: take or renew the lease if we may. True when we hold it afterwards."""
        now = format_micro_time(datetime.now(UTC))
        try:
            current = await self._client.get(LEASE, self.name, self.namespace)
        except NotFound:
            sent_at = time.monotonic()
            lease = {
                "apiVersion": LEASE.api_version,
                "kind": LEASE.kind,
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": self._lease_seconds,
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": 0,
                },
            }
            try:
                created = await self._client.create(lease)
            except AlreadyExists:
                return False  # a peer created it first
            self._observe(created)
            self._renewed_at = sent_at
            return True

        self._observe(current)
        spec = current.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        ours = holder == self.identity
        if holder and not ours and time.monotonic() < self._observed_at + self._observed_duration():
            return False  # another holder whose lease has not run out by our clock
        transitions = int(spec.get("leaseTransitions") or 0)
        new_spec = dict(spec)
        new_spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=self._lease_seconds,
            renewTime=now,
        )
        if not ours:
            new_spec["acquireTime"] = now
            new_spec["leaseTransitions"] = transitions + 1
        # Replace with the resourceVersion just read: if anyone wrote in between, Conflict, and
        # this round is lost rather than overwriting their claim.
        sent_at = time.monotonic()
        try:
            written = await self._client.replace(dict(current, spec=new_spec))
        except Conflict:
            return False
        self._observe(written)
        self._renewed_at = sent_at
        return True
