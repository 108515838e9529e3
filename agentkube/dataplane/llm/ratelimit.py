"""Rate limits: ``rateLimit.requestsPerMinute`` per key (the whole gateway, a client, or a model).

The gateway turns ``rateLimit.scope`` into a key with ``scope_key`` and asks a ``Limiter`` with
``acquire(key)``; the ``Decision`` says whether the request may go on and carries everything the
429 answer and the OpenAI-style headers need (``Decision.headers()``).

The algorithm is GCRA (the generic cell rate algorithm, a token bucket that keeps one timestamp per
key instead of a counter and a refill time). For ``requestsPerMinute: L``:

- a key that was idle for a minute may send ``L`` requests at once; after that one request every
  ``60 / L`` seconds is let through, so over time ``L`` a minute (the interval is rounded down to
  the microsecond, which adds less than one request a minute for any ``L`` below 7,700); over any
  one window of 60 s, a full burst followed by the steady refill can add up to ``2L - 1``, as with
  any token bucket of size ``L`` refilled over a minute;
- a refused request costs nothing: it does not push the next allowed time further out;
- ``Decision.remaining`` is how many more requests would be let through right now,
  ``reset_seconds`` how long until the key has its whole budget back, and ``retry_after`` (only
  when refused) how long until one request would be let through.

Two limiters:

- ``LocalLimiter(L, replicas=n)`` keeps the state in the replica's memory and gives each replica
  its share, ``max(1, L // n)``. That holds the gateway as a whole to about ``L`` only when the
  Service spreads requests evenly over ``n`` running replicas; kept-alive connections that pin a
  busy client to one replica get it refused sooner, and a changed replica count (scaling, a
  rollout's extra pod) makes the sum differ from ``L`` until the operator renders the new ``n``.
  Approximate, and said so in the field docs.
- ``SharedLimiter(client, L, fallback=LocalLimiter(L, replicas=n))`` keeps the state in the shared
  store, in one Lua script that reads and writes the key atomically and takes the time from the
  store's own clock (``TIME``), so every replica draws on one budget exactly and their clocks need
  not agree. Each key expires once it has its whole budget back.

When the store is unreachable (refused, reset, no reply within ``timeout``, an error answer such
as a wrong password or a replica that is read-only during a failover), the request is decided by
``fallback``, the replica's local share: the gateway goes on serving with the approximate limit
instead of refusing everything (fail closed would turn a store outage into a gateway outage) or
letting everything through (fail open would lift the limit exactly when nobody watches). The first
failure logs one warning, the store is probed again at most once a second (``store.Outage``), and
``store_errors`` / ``fallback_decisions`` count what happened for the metrics. The local share
starts with a full budget when the outage starts, and the store's keys are used again as they are
once it answers.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from redis.asyncio import Redis

from agentkube.dataplane.llm.store import DEFAULT_TIMEOUT_SECONDS, STORE_ERRORS, Outage

__all__ = [
    "MAX_REQUESTS_PER_MINUTE",
    "Decision",
    "Limiter",
    "LocalLimiter",
    "Scope",
    "SharedLimiter",
    "scope_key",
]

Scope = Literal["global", "perClient", "perModel"]

_PERIOD_US: Final = 60_000_000
# One request per microsecond is where the integer emission interval reaches 1.
MAX_REQUESTS_PER_MINUTE: Final = _PERIOD_US


@dataclass(frozen=True, slots=True)
class Decision:
    """One answer of a limiter. ``limit`` is the budget of the limiter that decided (the local share
    when no store is used or the store is down)."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: float
    retry_after: float

    def headers(self) -> dict[str, str]:
        """``x-ratelimit-{limit,remaining,reset}-requests`` as OpenAI sends them (reset as a duration
        such as ``1s``, ``6m0s`` or ``20ms``); when refused, also ``Retry-After`` in whole seconds
        (at least 1, rounded up) and ``retry-after-ms``, which the OpenAI and Anthropic SDKs prefer."""
        headers = {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.remaining),
            "x-ratelimit-reset-requests": _duration(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
            headers["retry-after-ms"] = str(max(1, math.ceil(self.retry_after * 1000)))
        return headers


class Limiter(Protocol):
    async def acquire(self, key: str) -> Decision:
        """Decide one request of ``key``, counting it when allowed."""
        ...


def scope_key(scope: Scope, *, client: str | None, model: str) -> str:
    """The limiter key of one request: ``global``, ``client:<id>`` or ``model:<name>``.

    ``client`` is the authenticated client id (``perClient`` needs one; the config guarantees auth
    mode apikey); ``model`` is the model the client asked for, before alias resolution, so an alias
    and the model it maps to are separate budgets.
    """
    if scope == "global":
        return "global"
    if scope == "perClient":
        if client is None:
            raise ValueError("rateLimit.scope: perClient needs an authenticated client id")
        return f"client:{client}"
    return f"model:{model}"


def _duration(seconds: float) -> str:
    """Go's duration format, as OpenAI's reset headers use it: ``20ms``, ``1s``, ``1.5s``, ``6m0s``."""
    ms = math.ceil(max(seconds, 0.0) * 1000)
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest = divmod(ms, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _check(requests_per_minute: int) -> None:
    if not 1 <= requests_per_minute <= MAX_REQUESTS_PER_MINUTE:
        raise ValueError(
            f"rateLimit.requestsPerMinute: {requests_per_minute} is outside 1..{MAX_REQUESTS_PER_MINUTE}"
        )


class _Gcra:
    """The arithmetic both limiters share, in integer microseconds so that a burst of exactly
    ``limit`` requests fits whatever the limit (no float drift over the burst)."""

    __slots__ = ("interval", "limit", "window")

    def __init__(self, limit: int) -> None:
        _check(limit)
        self.limit = limit
        self.interval = _PERIOD_US // limit
        self.window = self.interval * limit

    def decide(self, tat: int, now: int) -> tuple[Decision, int | None]:
        """The decision for a request at ``now`` given the key's theoretical arrival time ``tat``
        (``now`` or earlier for a key with its whole budget), and the new ``tat`` if allowed."""
        ahead = max(tat - now, 0) + self.interval
        if ahead > self.window:
            held = ahead - self.interval
            return Decision(False, self.limit, 0, held / 1e6, (ahead - self.window) / 1e6), None
        remaining = (self.window - ahead) // self.interval
        return Decision(True, self.limit, remaining, ahead / 1e6, 0.0), now + ahead


class LocalLimiter:
    """GCRA in this replica's memory, with the budget ``max(1, requests_per_minute // replicas)``.

    ``clock`` (seconds, monotonic) is for tests. Keys whose budget is whole again are forgotten
    whenever the table has doubled since the last sweep (and past 1024 keys), so it holds at most
    about twice the keys that were active within the last minute.
    """

    def __init__(
        self, requests_per_minute: int, *, replicas: int = 1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if replicas < 1:
            raise ValueError(f"rateLimit.replicas: {replicas} must be at least 1")
        _check(requests_per_minute)
        self._gcra = _Gcra(max(1, requests_per_minute // replicas))
        self._clock = clock
        self._tat: dict[str, int] = {}
        self._prune_above = 1024

    @property
    def limit(self) -> int:
        return self._gcra.limit

    def decide(self, key: str) -> Decision:
        """``acquire`` without the coroutine: the local limiter never waits."""
        now = int(self._clock() * 1e6)
        decision, tat = self._gcra.decide(self._tat.get(key, now), now)
        if tat is not None:
            self._tat[key] = tat
            if len(self._tat) > self._prune_above:
                self._prune(now)
        return decision

    async def acquire(self, key: str) -> Decision:
        return self.decide(key)

    def _prune(self, now: int) -> None:
        self._tat = {k: t for k, t in self._tat.items() if t > now}
        self._prune_above = max(1024, 2 * len(self._tat))


# KEYS[1] the key; ARGV[1] the emission interval, ARGV[2] the window (both in microseconds).
# Returns {allowed, remaining, reset_us, retry_after_us}. Integer arithmetic in Lua's doubles is
# exact below 2^53 us (some 285 years of epoch time). Setting the key with PX makes it vanish once
# its budget is whole again, so idle keys cost the store nothing.
_GCRA_LUA: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
local ahead = math.max(tat - now, 0) + interval
if ahead > window then
  return {0, 0, ahead - interval, ahead - window}
end
redis.call('SET', KEYS[1], string.format('%.0f', now + ahead), 'PX', math.ceil(ahead / 1000))
return {1, math.floor((window - ahead) / interval), ahead, 0}
"""


class SharedLimiter:
    """GCRA in the shared store: one budget of ``requests_per_minute`` per key for all replicas.

    ``prefix`` (``store.key_prefix(gateway)``) keeps gateways sharing a store apart; the store key
    is ``<prefix>ratelimit:<key>``. ``timeout`` bounds one decision's wait for the store whatever
    the client's own settings. See the module docstring for what happens when the store is down.
    """

    def __init__(
        self,
        client: Redis,
        requests_per_minute: int,
        *,
        fallback: LocalLimiter,
        prefix: str,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        outage: Outage | None = None,
    ) -> None:
        self._gcra = _Gcra(requests_per_minute)
        self._script = client.register_script(_GCRA_LUA)
        self._args = (self._gcra.interval, self._gcra.window)
        self._prefix = f"{prefix}ratelimit:"
        self._timeout = timeout
        self.fallback = fallback
        self.outage = outage or Outage("ratelimit")
        self.fallback_decisions = 0

    @property
    def store_errors(self) -> int:
        return self.outage.errors

    async def acquire(self, key: str) -> Decision:
        if self.outage.should_try():
            try:
                async with asyncio.timeout(self._timeout):
                    reply = await self._script(keys=[self._prefix + key], args=self._args)
                allowed, remaining, reset_us, retry_us = (int(v) for v in reply)
            except STORE_ERRORS as error:
                self.outage.failed(error)
            else:
                self.outage.succeeded()
                return Decision(bool(allowed), self._gcra.limit, remaining, reset_us / 1e6, retry_us / 1e6)
        self.fallback_decisions += 1
        return self.fallback.decide(key)
